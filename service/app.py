"""The platform service's FastAPI app: the REST API under ``/api/v1`` (and the console at ``/``).

The app owns the metadata database and the artifact store; every remote
client (the ``mlops`` command with ``MLOPS_API_URL``, :class:`mlops.Client`,
Prefect workers on other machines) goes through it. It never imports the
model server: endpoints are read from the metadata database.

Example:
    >>> import tempfile
    >>> from fastapi.testclient import TestClient
    >>> from blocks.settings import MlopsSettings
    >>> app = create_app(settings=MlopsSettings(home=tempfile.mkdtemp()))
    >>> TestClient(app).get("/api/v1/health").json()["status"]
    'ok'
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from blocks.settings import MlopsSettings, get_settings
from service.config import ServiceSettings
from service.console.setup import install_console
from service.errors import install_error_handlers
from service.metrics import install_metrics
from service.routes import approvals, artifacts, governance, keys, operations
from service.routes import registry as registry_routes
from storage.keys import ApiKeyStore
from storage.registry.core import Registry

API_PREFIX = "/api/v1"
ROUTERS = (registry_routes, artifacts, approvals, governance, operations, keys)


def create_app(
    service: ServiceSettings | None = None,
    *,
    settings: MlopsSettings | None = None,
    registry: Registry | None = None,
) -> FastAPI:
    """Build the service over the database and store that ``settings`` (``MLOPS_*``) name.

    Args:
        service: Listening and upload settings (``MLOPS_SERVER_*`` when None).
        settings: Where the state lives (``MLOPS_*`` when None).
        registry: An open registry to use instead of opening one from ``settings``.
    """
    from importlib.metadata import version

    mlops_settings = settings or get_settings()
    reg = registry or Registry.from_settings(mlops_settings)
    app = FastAPI(
        title="DWCP MLOps platform service",
        version=version("dwcp-mlops"),
        description="Registry, approvals, lineage, audit, endpoints, alerts, reports and features over REST. "
        "Send an API key as 'Authorization: Bearer <key>' (create one with `mlops keys create`).",
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=f"{API_PREFIX}/docs",
        redoc_url=None,
    )
    app.state.settings = service or ServiceSettings()
    app.state.mlops_settings = mlops_settings
    app.state.registry = reg
    app.state.keys = ApiKeyStore(reg.db)
    install_error_handlers(app)

    @app.get(f"{API_PREFIX}/health", tags=["service"])
    def health() -> dict[str, Any]:
        """Liveness without a key: the service answers and its database does too."""
        with reg.db.read() as conn:
            conn.exec_driver_sql("SELECT 1")
        return {"status": "ok", "version": app.version}

    for module in ROUTERS:
        app.include_router(module.router, prefix=API_PREFIX)
    install_console(app)
    install_metrics(app)
    return app
