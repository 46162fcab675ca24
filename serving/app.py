"""The model server: Open Inference Protocol (KServe V2) REST API, records API, feedback, metrics.

Routes (inference and model routes need an API key when keys are configured;
``/admin`` always needs the admin key):

=======================================================  ==========================================
route                                                    does
=======================================================  ==========================================
``GET /v2/health/live``, ``/v2/health/ready``            ``{"live": true}``; ``{"ready": true}``
                                                         (503 until the registry answers and the
                                                         models to preload have loaded)
``GET /v2``                                              server metadata
``GET /v2/models/{name}[/versions/{v}]``                 model metadata: versions, platform, inputs
                                                         and outputs with datatypes
``GET /v2/models/{name}[/versions/{v}]/ready``           whether that version loads
``POST /v2/models/{name}[/versions/{v}]/infer``          OIP inference
``POST /v1/models/{name}/predict``                       ``{"instances": [{feature: value}, ...]}``
``POST /v1/models/{name}/explain``                       top factors of one record
``POST /v1/feedback``, ``/v2/models/{name}/feedback``    ground truth ``{"request_id", "label"}``
                                                         (or a list)
``GET /metrics``                                         Prometheus metrics
``/admin/...``                                           traffic administration (endpoints)
=======================================================  ==========================================

With ``grpc_port`` set, the same inference is served over gRPC
(:mod:`serving.grpc_server`), started and stopped with the app.

``name`` is an endpoint when the traffic router knows one by that name and the
URL names no version: the router picks the variant (sticky by the
``X-Request-Key`` header or ``parameters.request_key``) and mirrors shadows.
Otherwise ``name`` is a registry model, served at the URL's version or else
its ``champion`` alias, ``production`` stage or newest version.

Errors are ``{"error": "..."}``: 400 bad request, 401/403 keys, 404 unknown
model or version, 413 payload too large, 503 not ready or a version that cannot
be loaded; a model that fails while predicting is a 500 naming the model.
Every inference response carries ``X-Request-Id`` (from the OIP ``id``, the
``X-Request-Id`` header, or generated).

The routes live in :mod:`serving.routes` by area (health, metadata and metrics;
inference; feedback) and share one :class:`serving.state.ServerState`; this
module assembles them: :func:`create_app` builds the state, the lifespan, the
error handlers, the OpenAPI document and the admin API.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from importlib import metadata
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from serving import protocol as p
from serving.auth import require_admin
from serving.config import ServeSettings
from serving.features import FeatureFiller
from serving.metrics import ServingMetrics
from serving.models import ModelCache
from serving.predlog import PredictionLogWriter
from serving.protocol import RequestError
from serving.routes.common import error_response, json_response
from serving.routes.feedback import add_feedback_routes
from serving.routes.health import add_health_routes, add_metrics_route
from serving.routes.infer import add_inference_routes
from serving.state import ServerState
from storage.errors import MlopsError
from storage.features.store import FeatureStore
from storage.monitoring.ground_truth import GroundTruthLog
from storage.monitoring.prediction_log import PredictionLog
from storage.registry.core import Registry

try:  # the traffic router plugs in when present
    from serving.traffic import Route, Target, TrafficRouter
except ImportError:  # pragma: no cover - the data plane works alone
    TrafficRouter = None  # type: ignore[assignment,misc]
    Route = Target = None  # type: ignore[assignment,misc]

logger = logging.getLogger(__name__)


_DOC_MODELS: tuple[type[Any], ...] = (
    p.InferRequest,
    p.InferResponse,
    p.PredictRequest,
    p.FeedbackItem,
    p.ErrorBody,
)


def _openapi(app: FastAPI) -> Callable[[], dict[str, Any]]:
    def build() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for model in _DOC_MODELS:
                found = model.model_json_schema(ref_template="#/components/schemas/{model}")
                components.update(found.pop("$defs", {}))
                components[model.__name__] = found
            app.openapi_schema = schema
        return app.openapi_schema

    return build


def create_app(settings: ServeSettings | None = None, *, registry: Registry | None = None) -> FastAPI:
    """The model server application.

    Args:
        settings: Server settings (``MLOPS_SERVE_*`` when None).
        registry: The registry to serve from (``MLOPS_*`` settings when None).

    Example:
        >>> import tempfile, httpx
        >>> from serving.server import running_server
        >>> home = tempfile.mkdtemp()
        >>> reg = Registry.open(f"sqlite:///{home}/m.db", f"{home}/a")
        >>> with running_server(create_app(ServeSettings(log_predictions=False), registry=reg)) as url:
        ...     httpx.get(f"{url}/v2/health/live").json(), httpx.get(f"{url}/v2/models/nope").status_code
        ({'live': True}, 404)
    """
    settings = settings or ServeSettings()
    registry = registry or Registry.from_settings()
    metrics = ServingMetrics()
    writer = None
    if settings.log_predictions:
        writer = PredictionLogWriter(
            PredictionLog.from_settings(),
            flush_rows=settings.log_flush_rows,
            flush_s=settings.log_flush_s,
            max_rows=settings.log_queue_rows,
        )
    state = ServerState(settings, registry, ModelCache(registry), metrics, writer)
    state.ground_truth = GroundTruthLog.from_settings()
    state.cache = ModelCache(
        registry,
        trust_pickle=settings.trust_pickle,
        trusted_types=settings.trusted_types,
        refresh_s=settings.refresh_s,
        on_load=state.record_serving_config,
        max_string_bytes=settings.max_string_bytes,
        max_tensor_elements=settings.max_tensor_elements,
        max_memory_bytes=settings.max_model_memory,
    )
    metrics.watch_models(lambda: state.cache.stats())
    if TrafficRouter is not None:
        state.router = TrafficRouter(registry.db, refresh_s=settings.refresh_s)
    state.features = FeatureFiller(registry, FeatureStore.from_settings, refresh_s=settings.refresh_s)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if writer is not None:
            writer.start()
        # The registry check is quick: done before serving; models to preload load in the background.
        task = asyncio.get_running_loop().run_in_executor(None, state.start)
        if not settings.models:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(task), timeout=30)
        grpc_server = None
        if settings.grpc_port is not None:
            from serving.grpc_server import start_grpc_server

            grpc_server, state.grpc_port = await start_grpc_server(
                state, settings.host, settings.grpc_port, app.version
            )
        try:
            yield
        finally:
            if grpc_server is not None:
                await grpc_server.stop(grace=5)
            with contextlib.suppress(Exception):
                await task
            await run_in_threadpool(state.close)

    app = FastAPI(
        title="DWCP MLOps model server",
        version=_package_version(),
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.serving = state
    app.openapi = _openapi(app)  # type: ignore[method-assign]
    _add_handlers(app)
    add_health_routes(app, state)
    add_inference_routes(app, state)
    add_feedback_routes(app, state)
    add_metrics_route(app, state)
    _mount_admin(app, state)
    return app


def _package_version() -> str:
    try:
        return metadata.version("dwcp-mlops")
    except metadata.PackageNotFoundError:
        return "0"


def _add_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestError)
    async def _request_error(request: Request, exc: RequestError) -> Response:
        return error_response(exc)

    @app.exception_handler(MlopsError)
    async def _mlops_error(request: Request, exc: MlopsError) -> Response:
        return error_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        return json_response({"error": str(exc.detail)}, exc.status_code, getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", ()))
        return json_response({"error": f"{where}: {first.get('msg', 'invalid request')}"}, 400)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        logger.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_response(exc)


def _mount_admin(app: FastAPI, state: ServerState) -> None:
    """Mount the traffic admin API under ``/admin`` (admin key required), when it exists."""
    if state.router is None:
        return
    try:
        from serving.admin import admin_router
    except ImportError:
        return
    from fastapi import Depends

    app.include_router(
        admin_router(state.router, state.registry.db, state.settings),
        prefix="/admin",
        dependencies=[Depends(require_admin)],
    )
