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
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import time
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import numpy as np
import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import Route as HttpRoute

from serving import protocol as p
from serving.auth import check_key, key_from, require_admin
from serving.config import ServeSettings
from serving.metrics import CONTENT_TYPE_LATEST, ServingMetrics
from serving.models import LoadedModel, ModelCache, ModelLoadError
from serving.predlog import LogBatch, PredictionLogWriter
from serving.protocol import Batch, RequestError
from serving.runtimes import Prediction
from storage.errors import MlopsError, NotFoundError, ValidationError
from storage.monitoring.ground_truth import GroundTruthLog
from storage.monitoring.prediction_log import PredictionLog
from storage.registry.core import Registry
from storage.registry.model_format import ONNX_LABEL, ONNX_PROBABILITIES, ONNX_REGRESSION

try:  # the traffic router plugs in when present
    from serving.traffic import Route, Target, TrafficRouter
except ImportError:  # pragma: no cover - the data plane works alone
    TrafficRouter = None  # type: ignore[assignment,misc]
    Route = Target = None  # type: ignore[assignment,misc]

logger = logging.getLogger(__name__)

SERVER_NAME = "dwcp-mlops"
#: Batches above this many rows are predicted in a worker thread, not on the event loop.
INLINE_ROWS = 256
_NUMPY = orjson.OPT_SERIALIZE_NUMPY
MAX_REQUEST_ID = 256


def _plain(value: Any) -> Any:
    """What orjson cannot write itself: non-contiguous or object arrays, numpy scalars."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


_IDS = random.Random(os.urandom(32))  # reading the OS entropy source per request is slow on some hosts


def new_request_id() -> str:
    """A new random 128-bit request id (32 hex digits), unique across processes.

    >>> len(new_request_id()), new_request_id() != new_request_id()
    (32, True)
    """
    return f"{_IDS.getrandbits(128):032x}"


def _json(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    content = orjson.dumps(body, default=_plain, option=_NUMPY)
    return Response(content, status, headers, media_type="application/json")


def error_status(exc: BaseException) -> tuple[int, str]:
    """The HTTP status and message an exception answers with.

    >>> error_status(NotFoundError("model 'x' does not exist"))
    (404, "model 'x' does not exist")
    """
    if isinstance(exc, RequestError):
        return exc.status_code, exc.message
    if isinstance(exc, NotFoundError):
        return 404, str(exc)
    if isinstance(exc, ModelLoadError):
        return 503, str(exc)
    if isinstance(exc, ValidationError | MlopsError):
        return 400, str(exc)
    return 500, f"internal error: {type(exc).__name__}"


def _error(exc: BaseException, headers: Mapping[str, str] | None = None) -> Response:
    status, message = error_status(exc)
    return _json({"error": message}, status, headers)


@dataclass
class Served:
    """The outcome of one inference: what answered, for which rows, how fast."""

    loaded: LoadedModel
    batch: Batch
    prediction: Prediction
    request_id: str
    latency_ms: float
    endpoint: str
    variant: str
    route: Any = None


@dataclass
class ServerState:
    """Everything one app holds: settings, registry, loaded models, router, log writer, metrics."""

    settings: ServeSettings
    registry: Registry
    cache: ModelCache
    metrics: ServingMetrics
    writer: PredictionLogWriter | None
    router: Any = None
    ground_truth: GroundTruthLog | None = None
    ready: bool = False
    not_ready_reason: str = "starting"
    shadow_pool: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(max_workers=1, thread_name_prefix="shadow")
    )
    shadow_waiting: int = 0

    # ------------------------------------------------------------ requests
    async def read_body(self, request: Request) -> bytes:
        """The request body, refused with 413 beyond ``max_body_bytes``."""
        limit = self.settings.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise RequestError(f"payload too large: {declared} bytes (this server accepts {limit})", 413)
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise RequestError(f"payload too large: over {limit} bytes", 413)
            chunks.append(chunk)
        return b"".join(chunks)

    async def payload(self, request: Request) -> Any:
        """The parsed JSON body."""
        body = await self.read_body(request)
        if not body:
            raise RequestError("the request has no body: send a JSON object")
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise RequestError(f"malformed JSON: {exc}") from None

    def authorize(self, request: Request) -> None:
        """Refuse a request without a valid API key (when keys are configured)."""
        if self.settings.api_keys:
            error = check_key(self.settings, key_from(request))
            if error is not None:
                raise error

    @staticmethod
    def request_id(request: Request, payload: Any) -> str:
        """The OIP ``id``, else the ``X-Request-Id`` header, else a new id."""
        found = payload.get("id") if isinstance(payload, Mapping) else None
        if found is None:
            found = request.headers.get("x-request-id")
        if found is None or found == "":
            return new_request_id()
        if isinstance(found, bool) or not isinstance(found, str | int):
            raise RequestError(f"request id {found!r} must be a string")
        text = str(found)
        if len(text) > MAX_REQUEST_ID or not (text.isascii() and text.isprintable()):
            # it is echoed in the X-Request-Id header, which only carries ASCII safely
            raise RequestError(f"request id must be at most {MAX_REQUEST_ID} printable ASCII characters")
        return text

    @staticmethod
    def request_key(request: Request, payload: Any) -> str | None:
        """The sticky-routing key: ``X-Request-Key`` or ``parameters.request_key``."""
        key = request.headers.get("x-request-key")
        if key is None and isinstance(payload, Mapping):
            params = payload.get("parameters")
            if isinstance(params, Mapping) and params.get("request_key") is not None:
                key = params["request_key"]
        if key is None:
            return None
        if isinstance(key, bool) or not isinstance(key, str | int):
            raise RequestError(f"request_key {key!r} must be a string")
        return str(key)

    async def model(self, model: str, ref: str | None) -> LoadedModel:
        """A loaded version: from memory when possible, else loaded in a worker thread."""
        found = self.cache.peek(model, ref)
        if found is not None:
            return found
        return await run_in_threadpool(self.cache.get, model, ref)

    def route(self, name: str, version: str | None, key: str | None) -> Any:
        """The router's route for an endpoint (None: ``name`` is a model)."""
        if self.router is None or version is not None:
            return None
        return self.router.route(name, key)

    async def serve(
        self,
        request: Request,
        name: str,
        version: str | None,
        payload: Any,
        decode: Callable[[Any, Any, int], Batch],
        request_id: str,
    ) -> Served:
        """Route, load, decode, predict, log; the caller answers and counts."""
        route = self.route(name, version, self.request_key(request, payload))
        if route is not None:
            model, ref, endpoint, variant = (
                route.target.model,
                route.target.version,
                route.endpoint,
                route.variant,
            )
        else:
            model, ref, endpoint, variant = name, version, name, ""
        loaded = await self.model(model, ref)
        batch = decode(payload, loaded.spec, self.settings.max_batch_rows)
        start = time.perf_counter()
        try:
            if batch.rows > INLINE_ROWS:
                prediction = await run_in_threadpool(loaded.runtime.predict, batch)
            else:
                prediction = loaded.runtime.predict(batch)
        except Exception as exc:
            latency = (time.perf_counter() - start) * 1000
            self.log(LogBatch(request_id, model, loaded.version, batch.columns, None, latency,
                              endpoint if route else None, variant if route else None, "error"))  # fmt: skip
            if route is not None:
                self.router.observe(route.endpoint, route.variant, route.target, latency, False)
            failure = RequestError(
                f"{model} version {loaded.version} failed to predict: {type(exc).__name__}: {exc}", 500
            )
            failure.labels = (endpoint, variant, model, str(loaded.version))
            raise failure from None
        latency = (time.perf_counter() - start) * 1000
        self.log(LogBatch(request_id, model, loaded.version, batch.columns, prediction, latency,
                          endpoint if route else None, variant if route else None))  # fmt: skip
        served = Served(loaded, batch, prediction, request_id, latency, endpoint, variant, route)
        if route is not None and route.shadows:
            for target in route.shadows:
                self.shadow(route.endpoint, target, request_id, batch)
        return served

    def log(self, item: LogBatch) -> None:
        """Hand a batch to the prediction log writer (never blocks)."""
        if self.writer is not None:
            self.writer.submit(item)

    def after(self, served: Served) -> BackgroundTask | None:
        """What runs once the response is sent: the router's observation."""
        route = served.route
        if route is None:
            return None
        return BackgroundTask(
            self.router.observe, route.endpoint, route.variant, route.target, served.latency_ms, True
        )

    # ------------------------------------------------------------- shadows
    def shadow(self, endpoint: str, target: Any, request_id: str, batch: Batch) -> None:
        """Mirror a batch to a shadow version in the background; never affects the live answer."""
        if self.shadow_waiting >= self.settings.shadow_queue:
            self.metrics.shadow.labels(endpoint, target.model, "dropped").inc()
            return
        self.shadow_waiting += 1
        try:
            self.shadow_pool.submit(self._run_shadow, endpoint, target, request_id, batch)
        except RuntimeError:  # shutting down
            self.shadow_waiting -= 1

    def _run_shadow(self, endpoint: str, target: Any, request_id: str, batch: Batch) -> None:
        variant = f"shadow:{target.model}:{target.version}"
        try:
            loaded = self.cache.get(target.model, target.version)
        except Exception as exc:
            self.metrics.shadow.labels(endpoint, target.model, "error").inc()
            logger.warning("shadow %s of %s cannot load: %s", variant, endpoint, exc)
            self.shadow_waiting -= 1
            return
        start = time.perf_counter()
        try:
            prediction: Prediction | None = loaded.runtime.predict(batch)
            status, outcome = "ok", "ok"
        except Exception as exc:
            prediction, status, outcome = None, "error", "error"
            logger.warning("shadow %s of %s failed: %s", variant, endpoint, exc)
        latency = (time.perf_counter() - start) * 1000
        self.metrics.shadow.labels(endpoint, target.model, outcome).inc()
        self.log(LogBatch(request_id, target.model, loaded.version, batch.columns, prediction, latency,
                          endpoint, variant, status))  # fmt: skip
        self.shadow_waiting -= 1

    # ------------------------------------------------------------ lifecycle
    def record_serving_config(self, loaded: LoadedModel) -> None:
        """Store the ``serving_config`` report of a version this server serves."""
        from storage.governance.reports import ReportStore

        required = self.settings.keys_required
        ReportStore(self.registry).save(
            "serving_config",
            loaded.model,
            loaded.version,
            passed=required,
            summary=f"served by {loaded.platform}; API keys {'required' if required else 'not required'}",
            payload={"api_keys_required": required, "runtime": loaded.platform},
        )

    def start(self) -> None:
        """Check the registry answers and load the models to preload; then ready."""
        try:
            self.registry.list_models(page_size=1)
            for name in self.settings.models:
                self.cache.get(name)
        except Exception as exc:
            self.not_ready_reason = f"{type(exc).__name__}: {exc}"
            logger.error("model server not ready: %s", self.not_ready_reason)
            return
        self.ready, self.not_ready_reason = True, ""

    def close(self) -> None:
        """Finish shadows, flush the prediction log, stop the router."""
        self.shadow_pool.shutdown(wait=True, cancel_futures=False)
        if self.writer is not None:
            self.writer.close()
        if self.router is not None:
            with contextlib.suppress(Exception):
                self.router.close()


# ------------------------------------------------------------------ responses
def _label_datatype(classes: tuple[Any, ...]) -> str:
    if classes and all(isinstance(c, bool) for c in classes):
        return "BOOL"
    if classes and all(isinstance(c, int) and not isinstance(c, bool) for c in classes):
        return "INT64"
    return "BYTES" if classes else "INT64"


def _tensor(name: str, arr: np.ndarray) -> dict[str, Any]:
    if arr.dtype.kind in "biuf":
        return {
            "name": name,
            "shape": list(arr.shape),
            "datatype": p.datatype_of(arr),
            "data": arr.reshape(-1),
        }
    return p.output_tensor(name, arr)


def infer_response(served: Served, payload: Any, name: str) -> dict[str, Any]:
    """The OIP response body of one inference."""
    outputs = served.prediction.outputs()
    wanted = p.requested_outputs(payload if isinstance(payload, Mapping) else {}, list(outputs))
    return {
        "model_name": name,
        "model_version": str(served.loaded.version),
        "id": served.request_id,
        "parameters": {"model": served.loaded.model, "endpoint": served.endpoint, "variant": served.variant},
        "outputs": [_tensor(n, outputs[n]) for n in wanted],
    }


def predict_response(served: Served) -> dict[str, Any]:
    """The records response: predictions, and probabilities with their classes for classifiers."""
    pred = served.prediction
    body: dict[str, Any] = {
        "model": served.loaded.model,
        "model_version": str(served.loaded.version),
        "request_id": served.request_id,
    }
    if pred.values is not None:
        body["predictions"] = pred.values
    else:
        labels = pred.labels if pred.labels is not None else np.empty(0)
        body["predictions"] = labels if labels.dtype.kind in "biuf" else p.json_values(labels)
        if pred.probabilities is not None:
            body["probabilities"] = pred.probabilities
            body["classes"] = list(served.loaded.runtime.classes)
    if served.endpoint != served.loaded.model or served.variant:
        body["endpoint"], body["variant"] = served.endpoint, served.variant
    return body


def model_metadata(loaded: LoadedModel, name: str, versions: list[int]) -> dict[str, Any]:
    """The OIP model metadata of a version."""
    inputs = [
        {"name": n, "datatype": p.METADATA_DATATYPE.get(loaded.spec.types[n], "BYTES"), "shape": [-1, 1]}
        for n in loaded.spec.names
    ]
    if loaded.task == "regression":
        outputs = [{"name": ONNX_REGRESSION, "datatype": "FP64", "shape": [-1]}]
    else:
        classes = loaded.runtime.classes
        outputs = [
            {"name": ONNX_LABEL, "datatype": _label_datatype(classes), "shape": [-1]},
            {"name": ONNX_PROBABILITIES, "datatype": "FP64", "shape": [-1, len(classes) or -1]},
        ]
    return {
        "name": name,
        "versions": [str(v) for v in versions],
        "platform": loaded.platform,
        "inputs": inputs,
        "outputs": outputs,
        "parameters": {
            "model": loaded.model,
            "version": str(loaded.version),
            "semver": loaded.semver,
            "stage": loaded.stage,
            "task": loaded.task,
            "classes": list(loaded.runtime.classes),
        },
    }


# ------------------------------------------------------------------ the app
def _body_schema(model: type[Any]) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}},
        }
    }


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
    )
    if TrafficRouter is not None:
        state.router = TrafficRouter(registry.db, refresh_s=settings.refresh_s)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if writer is not None:
            writer.start()
        # The registry check is quick: done before serving; models to preload load in the background.
        task = asyncio.get_running_loop().run_in_executor(None, state.start)
        if not settings.models:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(task), timeout=30)
        try:
            yield
        finally:
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
    _add_routes(app, state)
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
        return _error(exc)

    @app.exception_handler(MlopsError)
    async def _mlops_error(request: Request, exc: MlopsError) -> Response:
        return _error(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        return _json({"error": str(exc.detail)}, exc.status_code, getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", ()))
        return _json({"error": f"{where}: {first.get('msg', 'invalid request')}"}, 400)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        logger.exception("unexpected error on %s %s", request.method, request.url.path)
        return _error(exc)


def _add_routes(app: FastAPI, state: ServerState) -> None:
    metrics = state.metrics
    error_doc: dict[int | str, dict[str, Any]] = {
        code: {"model": p.ErrorBody} for code in (400, 401, 403, 404, 413, 503)
    }

    @app.get("/v2/health/live", tags=["health"])
    async def live() -> Response:
        return _json({"live": True})

    @app.get("/v2/health/ready", tags=["health"], responses={503: {"model": p.ErrorBody}})
    async def ready() -> Response:
        if state.ready:
            return _json({"ready": True})
        return _json({"ready": False, "error": f"not ready: {state.not_ready_reason}"}, 503)

    @app.get("/v2", tags=["metadata"])
    async def server_metadata() -> Response:
        return _json({"name": SERVER_NAME, "version": app.version, "extensions": []})

    async def metadata_of(request: Request, name: str, version: str | None) -> Response:
        state.authorize(request)
        route = state.route(name, version, None)
        model, ref = (route.target.model, route.target.version) if route is not None else (name, version)
        loaded = await state.model(model, ref)
        versions = await run_in_threadpool(state.cache.versions, model)
        return _json(model_metadata(loaded, name, versions))

    async def ready_of(request: Request, name: str, version: str | None) -> Response:
        state.authorize(request)
        route = state.route(name, version, None)
        model, ref = (route.target.model, route.target.version) if route is not None else (name, version)
        try:
            loaded = await state.model(model, ref)
        except ModelLoadError as exc:
            return _json({"name": name, "ready": False, "error": str(exc)}, 503)
        return _json({"name": name, "version": str(loaded.version), "ready": True})

    @app.get("/v2/models/{name}", tags=["metadata"], responses=error_doc)
    async def model_meta(request: Request, name: str) -> Response:
        return await metadata_of(request, name, None)

    @app.get("/v2/models/{name}/versions/{version}", tags=["metadata"], responses=error_doc)
    async def version_meta(request: Request, name: str, version: str) -> Response:
        return await metadata_of(request, name, version)

    @app.get("/v2/models/{name}/ready", tags=["health"], responses=error_doc)
    async def model_ready(request: Request, name: str) -> Response:
        return await ready_of(request, name, None)

    @app.get("/v2/models/{name}/versions/{version}/ready", tags=["health"], responses=error_doc)
    async def version_ready(request: Request, name: str, version: str) -> Response:
        return await ready_of(request, name, version)

    async def answer(
        request: Request,
        name: str,
        version: str | None,
        decode: Callable[[Any, Any, int], Batch],
        respond: Callable[[Served, Any], dict[str, Any]],
    ) -> Response:
        start = time.perf_counter()
        metrics.in_flight.inc()
        request_id = None
        try:
            state.authorize(request)
            payload = await state.payload(request)
            request_id = state.request_id(request, payload)
            served = await state.serve(request, name, version, payload, decode, request_id)
            body = respond(served, payload)
            response = _json(body, headers={"X-Request-Id": served.request_id})
            response.background = state.after(served)
            metrics.observe(
                served.endpoint, served.variant, served.loaded.model, str(served.loaded.version),
                time.perf_counter() - start, rows=served.batch.rows,
            )  # fmt: skip
            return response
        except Exception as exc:
            status, _ = error_status(exc)
            endpoint, variant, model, version_label = getattr(exc, "labels", None) or (name, "", name, "")
            metrics.error(endpoint, variant, model, status, version_label)
            if status >= 500 and not isinstance(exc, RequestError | MlopsError):
                logger.exception("unexpected error serving %s", name)
            return _error(exc, {"X-Request-Id": request_id} if request_id else None)
        finally:
            metrics.in_flight.dec()

    def decode_tensors(payload: Any, spec: Any, max_rows: int) -> Batch:
        return p.decode_infer_request(payload, spec, max_rows=max_rows)

    def decode_records(payload: Any, spec: Any, max_rows: int) -> Batch:
        return p.decode_records(payload, spec, max_rows=max_rows)

    def oip(name: str) -> Callable[[Served, Any], dict[str, Any]]:
        return lambda served, payload: infer_response(served, payload, name)

    @app.post(
        "/v2/models/{name}/infer", tags=["inference"], openapi_extra=_body_schema(p.InferRequest),
        responses={200: {"model": p.InferResponse}, **error_doc},
    )  # fmt: skip
    async def infer(request: Request, name: str) -> Response:
        return await answer(request, name, None, decode_tensors, oip(name))

    @app.post(
        "/v2/models/{name}/versions/{version}/infer", tags=["inference"],
        openapi_extra=_body_schema(p.InferRequest), responses={200: {"model": p.InferResponse}, **error_doc},
    )  # fmt: skip
    async def infer_version(request: Request, name: str, version: str) -> Response:
        return await answer(request, name, version, decode_tensors, oip(name))

    @app.post(
        "/v1/models/{name}/predict", tags=["inference"], openapi_extra=_body_schema(p.PredictRequest),
        responses=error_doc,
    )  # fmt: skip
    async def predict(request: Request, name: str) -> Response:
        return await answer(request, name, None, decode_records, lambda s, _: predict_response(s))

    # The inference routes above document the API; these plain Starlette routes, matched first,
    # answer the same paths without FastAPI's per-request parameter machinery (a third of the
    # server's time on single rows).
    async def fast_infer(request: Request) -> Response:
        params = request.path_params
        name = params["name"]
        return await answer(request, name, params.get("version"), decode_tensors, oip(name))

    async def fast_predict(request: Request) -> Response:
        return await answer(
            request, request.path_params["name"], None, decode_records, lambda s, _: predict_response(s)
        )

    fast = [
        HttpRoute("/v2/models/{name}/infer", fast_infer, methods=["POST"]),
        HttpRoute("/v2/models/{name}/versions/{version}/infer", fast_infer, methods=["POST"]),
        HttpRoute("/v1/models/{name}/predict", fast_predict, methods=["POST"]),
    ]
    app.router.routes[0:0] = fast

    @app.post(
        "/v1/models/{name}/explain", tags=["inference"], openapi_extra=_body_schema(p.PredictRequest),
        responses=error_doc,
    )  # fmt: skip
    async def explain(request: Request, name: str) -> Response:
        from serving.explain import explain_record

        state.authorize(request)
        payload = await state.payload(request)
        route = state.route(name, None, state.request_key(request, payload))
        model, ref = (route.target.model, route.target.version) if route is not None else (name, None)
        loaded = await state.model(model, ref)
        batch = p.decode_records(payload, loaded.spec, max_rows=1)
        found = await run_in_threadpool(explain_record, state.cache, loaded, batch)
        return _json(found)

    async def feedback(request: Request) -> Response:
        state.authorize(request)
        payload = await state.payload(request)
        items = payload if isinstance(payload, list) else [payload]
        if isinstance(payload, Mapping) and isinstance(payload.get("labels"), list):
            items = payload["labels"]
        if len(items) > state.settings.max_batch_rows:
            raise RequestError(f"too many labels: {len(items)} (at most {state.settings.max_batch_rows})")
        truth = state.ground_truth or GroundTruthLog.from_settings()
        path = await run_in_threadpool(truth.append, items)
        return _json({"stored": len(items), "file": path.name})

    @app.post(
        "/v1/feedback", tags=["feedback"], openapi_extra=_body_schema(p.FeedbackItem), responses=error_doc
    )
    async def feedback_v1(request: Request) -> Response:
        return await feedback(request)

    @app.post(
        "/v2/models/{name}/feedback", tags=["feedback"], openapi_extra=_body_schema(p.FeedbackItem),
        responses=error_doc,
    )  # fmt: skip
    async def feedback_v2(request: Request, name: str) -> Response:
        return await feedback(request)

    @app.get("/metrics", tags=["metrics"])
    async def prometheus() -> Response:
        if state.writer is not None:
            metrics.log_dropped.set(state.writer.rows_dropped)
            metrics.log_waiting.set(state.writer.waiting)
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)


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
