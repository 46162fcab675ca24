"""Platform settings read from ``MLOPS_*`` environment variables.

Every part of the platform finds its state through these settings, so one
``MLOPS_HOME`` folder holds a whole local installation and a URL moves a part
to a real server.

Example:
    >>> import os
    >>> from blocks.settings import MlopsSettings
    >>> s = MlopsSettings(home="/tmp/mlops-example")
    >>> s.resolved_database_url()
    'sqlite:////tmp/mlops-example/mlops.db'
    >>> s.resolved_artifact_root()
    '/tmp/mlops-example/artifacts'
"""

from __future__ import annotations

import getpass
import os
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class MlopsSettings(BaseSettings):
    """Where the platform keeps its state.

    Attributes:
        home: Folder for all local state (``MLOPS_HOME``, default ``./.mlops``).
        database_url: SQLAlchemy URL of the metadata database
            (``MLOPS_DATABASE_URL``); SQLite under ``home`` when unset.
        artifact_root: Folder or fsspec URL for artifacts
            (``MLOPS_ARTIFACT_ROOT``); ``home/artifacts`` when unset.
        user: Name recorded as the actor of changes (``MLOPS_USER``); the
            login name when unset.
        feature_root: Folder of the offline feature store's Parquet files
            (``MLOPS_FEATURE_ROOT``); ``home/features`` when unset.
        online_store_url: Online feature store (``MLOPS_ONLINE_STORE_URL``):
            ``sqlite:///path`` or ``redis://host:port/db``; SQLite at
            ``home/online.db`` when unset.
        prediction_log_root: Folder of the prediction log's Parquet files
            (``MLOPS_PREDICTION_LOG_ROOT``); ``home/predictions`` when unset.
        storage_url: Where every file the platform writes goes
            (``MLOPS_STORAGE_URL``): a folder or an object store URL such as
            ``s3://bucket/prefix``. When set, artifacts, features,
            predictions, ground truth, reports and the training stage cache
            live under it (``<url>/artifacts``, ``<url>/features``, ...), so
            processes on different machines share them; a setting for one
            part still wins for that part.
        console_url: Base URL of the platform service's console
            (``MLOPS_CONSOLE_URL``, e.g. ``https://mlops.example.com``); when
            set, the Markdown artifacts flows publish link to the matching
            console page.
    """

    model_config = SettingsConfigDict(env_prefix="MLOPS_", extra="ignore")

    home: Path = Field(default=Path(".mlops"))
    database_url: str | None = None
    artifact_root: str | None = None
    user: str | None = None
    feature_root: str | None = None
    online_store_url: str | None = None
    prediction_log_root: str | None = None
    console_url: str | None = None
    storage_url: str | None = None
    ground_truth_root: str | None = None

    def resolved_home(self) -> Path:
        """The home folder as an absolute path (not created)."""
        return self.home.expanduser().absolute()

    def resolved_database_url(self) -> str:
        """The metadata database URL, defaulting to SQLite under ``home``."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.resolved_home() / 'mlops.db'}"

    def shared_path(self, part: str) -> str:
        """Where ``part`` (``artifacts``, ``reports``, ...) lives: under ``storage_url``, else ``home``.

        Example:
            >>> MlopsSettings(home="/h", storage_url="s3://b/p/").shared_path("reports")
            's3://b/p/reports'
            >>> MlopsSettings(home="/h").shared_path("reports")
            '/h/reports'
        """
        if self.storage_url:
            return f"{self.storage_url.rstrip('/')}/{part}"
        return str(self.resolved_home() / part)

    def resolved_artifact_root(self) -> str:
        """The artifact root, defaulting to ``artifacts`` under the storage URL or home."""
        return self.artifact_root or self.shared_path("artifacts")

    def resolved_feature_root(self) -> str:
        """The offline feature store, defaulting to ``features`` under the storage URL or home."""
        return self.feature_root or self.shared_path("features")

    def resolved_online_store_url(self) -> str:
        """The online feature store URL, defaulting to SQLite at ``home/online.db``."""
        if self.online_store_url:
            return self.online_store_url
        return f"sqlite:///{self.resolved_home() / 'online.db'}"

    def resolved_prediction_log_root(self) -> str:
        """The prediction log, defaulting to ``predictions`` under the storage URL or home."""
        return self.prediction_log_root or self.shared_path("predictions")

    def resolved_ground_truth_root(self) -> str:
        """The ground-truth log (``MLOPS_GROUND_TRUTH_ROOT``), else ``ground_truth`` under storage or home."""
        return self.ground_truth_root or self.shared_path("ground_truth")

    def resolved_report_root(self) -> str:
        """Where reports are written: ``reports`` under the storage URL or home."""
        return self.shared_path("reports")

    def is_shared(self) -> bool:
        """Whether files go to an object store, not to a folder of this machine."""
        return (
            bool(self.storage_url)
            and "://" in str(self.storage_url)
            and not str(self.storage_url).startswith("file://")
        )

    def resolved_user(self) -> str:
        """The actor name recorded in the audit log."""
        if self.user:
            return self.user
        try:
            return getpass.getuser()
        except (KeyError, OSError):
            return os.environ.get("USER", "unknown")


def get_settings() -> MlopsSettings:
    """Read the settings from the environment now (not cached)."""
    return MlopsSettings()
