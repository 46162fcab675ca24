"""DWCP MLOps: the machine-learning lifecycle as Prefect flows.

The curated public API. Everything else lives in the layout's packages
(``flows``, ``tasks``, ``blocks``, ``serving``, ``storage``) and may change.

Example:
    >>> import tempfile, mlops
    >>> home = tempfile.mkdtemp()
    >>> registry = mlops.Registry.from_settings(mlops.MlopsSettings(home=home))
    >>> registry.create_model("iris").name
    'iris'
"""

from importlib.metadata import PackageNotFoundError, version

from blocks.settings import MlopsSettings, get_settings
from storage.artifacts import ArtifactStore
from storage.audit import AuditEntry, AuditLog, AuditReport
from storage.db import Database
from storage.errors import (
    AlreadyExistsError,
    IntegrityError,
    MlopsError,
    NotFoundError,
    TransitionError,
    ValidationError,
)
from storage.registry.compare import Comparison
from storage.registry.core import Registry
from storage.registry.records import (
    STAGES,
    AliasMove,
    Artifact,
    Model,
    ModelVersion,
    Page,
    StageMove,
    VerifyReport,
)
from storage.registry.semver import SemVer

_LAZY = {
    "RegistryBlock": "blocks.registry",
    "FeatureStore": "storage.features.store",
    "Client": "mlops.client",
}


def __getattr__(name: str) -> object:
    """Names whose modules import Prefect or DuckDB load on first use (a fast CLI start)."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mlops' has no attribute {name!r}")


try:
    __version__ = version("dwcp-mlops")
except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
    __version__ = "0.0.0"

__all__ = [
    "STAGES",
    "AliasMove",
    "AlreadyExistsError",
    "Artifact",
    "ArtifactStore",
    "AuditEntry",
    "AuditLog",
    "AuditReport",
    "Client",
    "Comparison",
    "Database",
    "FeatureStore",
    "IntegrityError",
    "MlopsError",
    "MlopsSettings",
    "Model",
    "ModelVersion",
    "NotFoundError",
    "Page",
    "Registry",
    "RegistryBlock",
    "SemVer",
    "StageMove",
    "TransitionError",
    "ValidationError",
    "VerifyReport",
    "__version__",
    "get_settings",
]
