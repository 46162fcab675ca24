"""The metadata database: engines, transactions and automatic migrations.

SQLite (the default) runs in WAL mode with a busy timeout and foreign keys on;
write transactions start with ``BEGIN IMMEDIATE`` so concurrent writers queue
for the lock instead of failing with "database is locked". The same code runs
on PostgreSQL when the URL says so.

A connection the server closed while it sat in the pool (a restart,
``pg_terminate_backend``, an idle timeout) is noticed when it is taken out
(``pool_pre_ping``) and replaced, so the next transaction just works. One lost
in the middle of a transaction cannot be replayed from here (the caller's code
ran in it): :meth:`Database.write` and :meth:`Database.read` raise an
:class:`~storage.errors.UnavailableError` that names the database and says
whether the loss came before the commit (nothing was written) or during it
(the outcome is unknown); the callers retry what is idempotent (registration
with its idempotency key, a reviewer's decision, Prefect task retries).

Example:
    >>> from storage.db import Database
    >>> db = Database("sqlite:///:memory:")
    >>> with db.read() as conn:
    ...     conn.exec_driver_sql("select 1").scalar()
    1
"""

from __future__ import annotations

import fcntl
import functools
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.pool import StaticPool
from sqlalchemy.sql.compiler import SQLCompiler

from storage.errors import UnavailableError

SQLITE_BUSY_TIMEOUT_MS = 60_000

_migrate_lock = threading.Lock()


def _first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    return str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__


def _sqlite_path(url: sa.URL) -> Path | None:
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database).expanduser().absolute()


def _make_sqlite_engine(url: sa.URL, *, immediate: bool) -> Engine:
    path = _sqlite_path(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    kwargs: dict[str, Any] = {
        "connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False}
    }
    if path is None:
        kwargs["poolclass"] = StaticPool
    engine = sa.create_engine(url, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's events issue BEGIN, so we can choose IMMEDIATE.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        if path is not None:
            cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def make_engine(url: str, *, immediate: bool = False) -> Engine:
    """Create an engine for ``url`` with the platform's connection settings.

    Args:
        url: SQLAlchemy URL (``sqlite:///...`` or ``postgresql+psycopg://...``).
        immediate: For SQLite, start every transaction with ``BEGIN IMMEDIATE``
            (the write engine); ignored elsewhere.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _make_sqlite_engine(parsed, immediate=immediate)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return sa.create_engine(parsed, pool_pre_ping=True)


def inserted_id(conn: Connection, statement: sa.Insert, values: dict[str, Any] | None = None) -> int:
    """Execute an INSERT (with ``values`` as parameters) and return the new integer primary key."""
    key = conn.execute(statement, values).inserted_primary_key
    if key is None:  # pragma: no cover - every table here has an integer key
        raise RuntimeError("the insert returned no primary key")
    return int(key[0])


class Prepared:
    """A statement compiled once per dialect and run on the DB-API cursor directly.

    For the hot write paths (creating a version, appending an audit entry),
    where SQLAlchemy's per-execution work costs more than the database. Bind
    processors (timestamps, JSON) still apply; every parameter must be given.

    Args:
        statement: The statement, with ``bindparam`` placeholders.
        column_keys: For an INSERT, the columns that get values.
    """

    def __init__(self, statement: sa.ClauseElement, column_keys: Sequence[str] | None = None) -> None:
        self.statement = statement
        self.column_keys = list(column_keys) if column_keys is not None else None
        self._compiled: dict[str, tuple[str, list[str] | None, dict[str, Any], dict[str, Any]]] = {}

    def _for(self, dialect: sa.Dialect) -> tuple[str, list[str] | None, dict[str, Any], dict[str, Any]]:
        found = self._compiled.get(dialect.name)
        if found is None:
            compiled = cast(
                SQLCompiler, self.statement.compile(dialect=dialect, column_keys=self.column_keys)
            )
            positional = list(compiled.positiontup) if compiled.positiontup is not None else None
            literals = {
                name: bind.effective_value for bind, name in compiled.bind_names.items() if not bind.required
            }
            found = (str(compiled), positional, dict(compiled._bind_processors), literals)
            self._compiled[dialect.name] = found
        return found

    def _args(self, conn: Connection, params: Mapping[str, Any]) -> tuple[str, Any]:
        sql, positional, processors, literals = self._for(conn.dialect)
        merged = {**literals, **params} if literals else params
        values = {k: (processors[k](v) if k in processors else v) for k, v in merged.items()}
        return sql, tuple(values[n] for n in positional) if positional is not None else values

    def execute(self, conn: Connection, params: Mapping[str, Any] | None = None) -> Any:
        """Run once inside ``conn``'s transaction; returns the DB-API cursor."""
        sql, args = self._args(conn, params or {})
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        cursor.execute(sql, args)
        return cursor

    def execute_many(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        """Run once per row inside ``conn``'s transaction."""
        if not rows:
            return
        sql = self._for(conn.dialect)[0]
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        cursor.executemany(sql, [self._args(conn, row)[1] for row in rows])


class Database:
    """One metadata database: a read engine, a write engine, migrations.

    Args:
        url: SQLAlchemy URL of the database.
        migrate: Apply pending migrations on first use (default True).
    """

    def __init__(self, url: str, *, migrate: bool = True) -> None:
        self.url = url
        self.dialect = make_url(url).get_backend_name()
        self._write_engine = make_engine(url, immediate=True)
        if self.dialect == "sqlite" and _sqlite_path(make_url(url)) is None:
            # An in-memory database exists once per engine: share it.
            self._read_engine = self._write_engine
        else:
            self._read_engine = make_engine(url)
        if migrate:
            ensure_schema(self)

    @property
    def engine(self) -> Engine:
        """The engine used for writes (and for migrations)."""
        return self._write_engine

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction: committed on success, rolled back on error.

        Raises:
            UnavailableError: the connection was lost (see the module docs).
        """
        committing = False
        try:
            with self._write_engine.begin() as conn:
                yield conn
                committing = True
        except sa.exc.DBAPIError as exc:
            if not exc.connection_invalidated:
                raise
            outcome = (
                "while committing: the transaction may or may not have been committed"
                if committing
                else "before the commit: nothing of the transaction was written"
            )
            raise UnavailableError(f"the metadata database {self._where} lost the connection {outcome} "
                                   f"({_first_line(exc)})") from exc  # fmt: skip

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read-only transaction that never blocks writers (UnavailableError: the connection was lost)."""
        try:
            with self._read_engine.connect() as conn:
                yield conn
                conn.rollback()
        except sa.exc.DBAPIError as exc:
            if not exc.connection_invalidated:
                raise
            raise UnavailableError(
                f"the metadata database {self._where} lost the connection during a read ({_first_line(exc)})"
            ) from exc

    @functools.cached_property
    def _where(self) -> str:
        return make_url(self.url).render_as_string(hide_password=True)

    def dispose(self) -> None:
        """Close every pooled connection."""
        self._write_engine.dispose()
        self._read_engine.dispose()


@contextmanager
def _migration_lock(db: Database, conn: Connection) -> Iterator[None]:
    """Serialise migrations across processes (file lock or advisory lock)."""
    if db.dialect == "postgresql":
        conn.exec_driver_sql("SELECT pg_advisory_lock(7262101)")
        try:
            yield
        finally:
            conn.exec_driver_sql("SELECT pg_advisory_unlock(7262101)")
        return
    path = _sqlite_path(make_url(db.url)) if db.dialect == "sqlite" else None
    if path is None:
        yield
        return
    with open(f"{path}.migrate.lock", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _alembic_config(conn: Connection) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", "storage:migrations")
    config.attributes["connection"] = conn
    return config


def current_revision(db: Database) -> str | None:
    """The schema revision the database is at (None when empty)."""
    from alembic.runtime.migration import MigrationContext

    with db.engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


@functools.cache
def head_revision() -> str | None:
    """The newest schema revision this code knows."""
    from alembic.script import ScriptDirectory

    config = _alembic_config(None)  # type: ignore[arg-type]
    return ScriptDirectory.from_config(config).get_current_head()


def ensure_schema(db: Database) -> None:
    """Bring the schema to the newest revision (a no-op when it is there)."""
    head = head_revision()
    if current_revision(db) == head:
        return
    from alembic import command

    with _migrate_lock, db.engine.connect() as lock_conn, _migration_lock(db, lock_conn):
        if current_revision(db) == head:
            return
        with db.engine.connect() as conn:
            command.upgrade(_alembic_config(conn), "head")
            conn.commit()
