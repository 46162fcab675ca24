"""Where Optuna studies live when the pipeline config names no ``tuning_storage``.

Every process that runs trials (the flow, each Dask worker) resolves the
default itself from its ``MLOPS_*`` settings, so they must all agree:

- **PostgreSQL metadata database** (``MLOPS_DATABASE_URL``): studies go to the
  same server, in their own schema. Optuna's RDB storage keeps its schema
  revision in an ``alembic_version`` table, as the platform's migrations do;
  sharing one schema would make each refuse the other's revision. So the
  study tables live in the schema ``optuna`` (or ``<schema>_optuna`` when the
  URL's ``options=-csearch_path=<schema>`` names one), created on first use
  and selected with ``search_path``.
- **SQLite metadata database**: ``MLOPS_HOME/optuna.db``, a file of this
  machine. With ``MLOPS_STORAGE_URL`` on an object store (files shared across
  machines), workers elsewhere would each open an empty study of their own,
  so the default refuses and says which setting to change.

Example:
    >>> from blocks.settings import MlopsSettings
    >>> default_study_storage(MlopsSettings(home="/tmp/h"))
    'sqlite:////tmp/h/optuna.db'
    >>> study_schema_url("postgresql+psycopg://u@db/mlops")
    ('postgresql+psycopg://u@db/mlops?options=-csearch_path%3Doptuna', 'optuna')
"""

from __future__ import annotations

import contextlib
import functools
import re

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from blocks.settings import MlopsSettings, get_settings
from storage.errors import ValidationError

__all__ = ["SCHEMA_SUFFIX", "default_study_storage", "ensure_schema", "study_schema_url"]

#: The study schema is the metadata schema's name plus this suffix (``optuna`` alone for the default).
SCHEMA_SUFFIX = "optuna"

_SEARCH_PATH = re.compile(r"-c\s*search_path\s*=\s*(\S+)")
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def default_study_storage(settings: MlopsSettings | None = None) -> str:
    """The study storage URL every process of an installation resolves alike (see the module).

    Raises:
        ValidationError: files are shared through an object store but the
            metadata database is SQLite, so studies would not be.
    """
    settings = settings or get_settings()
    database = settings.resolved_database_url()
    if make_url(database).get_backend_name() == "postgresql":
        url, schema = study_schema_url(database)
        ensure_schema(database, schema)
        return url
    if settings.is_shared():
        raise ValidationError(
            f"MLOPS_STORAGE_URL={settings.storage_url} shares files across machines, but the metadata "
            f"database is SQLite ({database}), so each machine would tune in an Optuna study of its own; "
            "set MLOPS_DATABASE_URL to PostgreSQL (studies then go to its 'optuna' schema) "
            "or give the pipeline config a tuning_storage every worker reaches"
        )
    home = settings.resolved_home()
    home.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{home / 'optuna.db'}"


def study_schema_url(database_url: str) -> tuple[str, str]:
    """The metadata database URL moved to its study schema, and that schema's name.

    Example:
        >>> study_schema_url("postgresql+psycopg://db/test?options=-csearch_path%3Dt_1")[1]
        't_1_optuna'
    """
    url = make_url(database_url)
    options = str(url.query.get("options") or "")
    found = _SEARCH_PATH.search(options)
    names = [n.strip().strip('"') for n in found.group(1).split(",")] if found else []
    base = next((n for n in names if n and not n.startswith("$")), None)
    schema = (f"{base}_{SCHEMA_SUFFIX}" if base else SCHEMA_SUFFIX).lower()
    if not _IDENTIFIER.match(schema):
        raise ValidationError(
            f"MLOPS_DATABASE_URL: the study schema {schema!r} derived from search_path is not a plain "
            "identifier (letters, digits, underscores, at most 63); use a plainer schema name"
        )
    setting = f"-csearch_path={schema}"
    options = _SEARCH_PATH.sub(setting, options) if found else f"{options} {setting}".strip()
    moved = url.update_query_dict({"options": options})
    return moved.render_as_string(hide_password=False), schema


@functools.lru_cache(maxsize=8)
def ensure_schema(database_url: str, schema: str) -> None:
    """Create ``schema`` in the database unless it exists (once per process and URL)."""
    engine = sa.create_engine(database_url, isolation_level="AUTOCOMMIT")
    try:
        # IntegrityError: another process created it at the same moment
        with engine.connect() as conn, contextlib.suppress(sa.exc.IntegrityError):
            conn.exec_driver_sql(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    finally:
        engine.dispose()
