"""The Prefect Block that carries the registry's configuration.

Register the type once with ``prefect block register -m blocks`` and save an
instance in the Prefect UI or in code; flows then load it by name. A block
names either the metadata database and artifact store themselves, or a
platform service (``api_url`` and ``api_key``): then the registry tasks of a
Prefect worker go through ``mlops server`` and need no database access.

Example:
    >>> from blocks.registry import RegistryBlock
    >>> block = RegistryBlock(home="/tmp/mlops-example")
    >>> block.to_settings().resolved_database_url()
    'sqlite:////tmp/mlops-example/mlops.db'
    >>> remote = RegistryBlock(api_url="https://mlops.example:8443", api_key="mlops_secret")
    >>> remote.api_key
    SecretStr('**********')
"""

from __future__ import annotations

from pathlib import Path

from prefect.blocks.core import Block
from pydantic import Field, SecretStr

from blocks.settings import MlopsSettings


class RegistryBlock(Block):
    """Metadata database and artifact store used by the model registry.

    Attributes:
        home: Folder for local state.
        database_url: SQLAlchemy URL of the metadata database (kept secret,
            as it may hold a password); empty for SQLite under ``home``.
        artifact_root: Folder or fsspec URL for artifacts; empty for
            ``home/artifacts``.
        api_url: Base URL of the platform service (``mlops server``); when
            set, the registry tasks talk to it instead of the database.
        api_key: The worker's API key for ``api_url`` (kept secret); a
            contributor key registers versions, stage and alias moves need
            an admin key.
    """

    _block_type_name = "MLOps Registry"
    _block_type_slug = "mlops-registry"
    _description = (
        "Metadata database and artifact store of the DWCP MLOps model registry, "
        "or the platform service that holds them."
    )

    home: str = Field(default=".mlops", description="Folder for local state.")
    database_url: SecretStr | None = Field(
        default=None, description="SQLAlchemy URL; SQLite under home when empty."
    )
    artifact_root: str | None = Field(
        default=None, description="Folder or fsspec URL; home/artifacts when empty."
    )
    api_url: str | None = Field(
        default=None,
        description="Platform service URL (mlops server); when set, registry tasks use it, not the database.",
    )
    api_key: SecretStr | None = Field(default=None, description="API key for the platform service.")

    def to_settings(self) -> MlopsSettings:
        """The same configuration as :class:`MlopsSettings`."""
        url = self.database_url.get_secret_value() if self.database_url else None
        return MlopsSettings(home=Path(self.home), database_url=url, artifact_root=self.artifact_root)
