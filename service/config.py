"""Settings of the platform service (``mlops server``), read from ``MLOPS_SERVER_*``.

Example:
    >>> ServiceSettings(port=8081).port
    8081
    >>> ServiceSettings().max_upload_bytes // 2**30
    8
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceSettings(BaseSettings):
    """Where the service listens and what it accepts.

    Attributes:
        host: Interface to bind (``MLOPS_SERVER_HOST``, default 127.0.0.1).
        port: TCP port (``MLOPS_SERVER_PORT``, default 8081, beside the model
            server's 8080, so both run on one machine as ``mlops up`` starts them).
        tls_cert: PEM certificate file; with ``tls_key`` the service speaks HTTPS.
        tls_key: PEM private key file.
        max_upload_bytes: Largest artifact accepted in one upload (413 above it).
        presign_downloads: Redirect downloads to a presigned URL when the
            artifact store can sign one (S3); otherwise stream through.
        log_level: uvicorn's log level.
    """

    model_config = SettingsConfigDict(env_prefix="MLOPS_SERVER_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(default=8081, ge=0, le=65535)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    max_upload_bytes: int = Field(default=8 << 30, ge=1)
    presign_downloads: bool = True
    log_level: str = "warning"

    def scheme(self) -> str:
        """``https`` when a certificate is configured, else ``http``."""
        return "https" if self.tls_cert else "http"
