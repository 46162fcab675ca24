"""What one model server holds and how it serves one inference: :class:`ServerState` and :class:`Served`.

The routes (:mod:`serving.routes`) share one :class:`ServerState` per app, built
by :func:`serving.app.create_app`: the settings, registry, model cache, traffic
router, prediction log writer, ground-truth log and metrics. It reads and checks
requests (body size, JSON, API key, request id, sticky-routing key), routes a
name to an endpoint variant or a registry model, predicts and logs
(:meth:`ServerState.serve`), mirrors batches to shadows, and starts and closes
the server's parts.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import time
import zlib
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields, replace
from typing import Any

import numpy as np
import orjson
from fastapi import Request
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from serving.auth import HasHeaders, check_key, key_from
from serving.binary import HEADER, header_length, parse_binary_request
from serving.config import ServeSettings
from serving.features import FeatureFiller, Filled, Plan
from serving.metrics import ServingMetrics
from serving.models import LoadedModel, ModelCache
from serving.predlog import LogBatch, PredictionLogWriter
from serving.protocol import Batch, RequestError
from serving.runtimes import Prediction
from storage.monitoring.ground_truth import GroundTruthLog
from storage.monitoring.prediction_log import canonical_entity_key
from storage.registry.core import Registry

logger = logging.getLogger(__name__)

#: Batches above this many rows are predicted in a worker thread, not on the event loop.
INLINE_ROWS = 256
MAX_REQUEST_ID = 256

_IDS = random.Random(os.urandom(32))  # reading the OS entropy source per request is slow on some hosts
#: How far past the limit a refused request body is still read (and dropped) before the 413.
DRAIN_BYTES = 64 << 20


def decompress(body: bytes, encoding: str, limit: int) -> bytes:
    """A gzip or deflate body, decompressed; 413 beyond ``limit`` bytes, 400 when it is not that encoding.

    >>> import gzip
    >>> decompress(gzip.compress(b"{}"), "gzip", 100)
    b'{}'
    """
    kind = encoding.strip().lower()
    if kind in ("", "identity"):
        return body
    if kind not in ("gzip", "deflate"):
        raise RequestError(f"Content-Encoding {encoding!r} is not gzip, deflate or identity", 415)
    inflater = zlib.decompressobj(wbits=31 if kind == "gzip" else 15)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise RequestError(f"the body is not valid {kind} data: {exc}") from None
    if len(out) > limit:
        raise RequestError(f"payload too large: over {limit} bytes once decompressed", 413)
    return out


def new_request_id() -> str:
    """A new random 128-bit request id (32 hex digits), unique across processes.

    >>> len(new_request_id()), new_request_id() != new_request_id()
    (32, True)
    """
    return f"{_IDS.getrandbits(128):032x}"


def _row_of(prediction: Prediction, i: int) -> Prediction:
    """Row ``i`` of a batch's prediction (every array field sliced)."""
    arrays = {
        f.name: value[i : i + 1]
        for f in fields(prediction)
        if isinstance(value := getattr(prediction, f.name), np.ndarray)
    }
    return replace(prediction, **arrays)


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
    #: With features filled from the online store: the versions read and the flagged rows.
    features: dict[str, Any] | None = None


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
    grpc_port: int | None = None
    features: FeatureFiller | None = None

    # ------------------------------------------------------------ requests
    async def read_body(self, request: Request) -> bytes:
        """The request body, refused with 413 beyond ``max_body_bytes``.

        A refused body is still read (and dropped) up to ``DRAIN_BYTES`` past the
        limit before the answer: a connection closed with bytes unread is reset,
        and a client still sending would get the reset instead of the 413.
        """
        limit = self.settings.max_body_bytes
        declared = request.headers.get("content-length")
        refused = None
        if declared is not None and declared.isascii() and declared.isdigit() and int(declared) > limit:
            refused = f"payload too large: {declared} bytes (this server accepts {limit})"
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if refused is None and size > limit:
                refused, chunks = f"payload too large: over {limit} bytes", []
            if refused is None:
                chunks.append(chunk)
            elif size > limit + DRAIN_BYTES:
                break  # the rest stays unread: the connection closes under it
        if refused is not None:
            raise RequestError(refused, 413)
        return b"".join(chunks)

    async def payload(self, request: Request) -> Any:
        """The parsed JSON body; with ``Inference-Header-Content-Length``, JSON then binary tensors.

        A gzip or deflate ``Content-Encoding`` is decompressed first (within ``max_body_bytes``).
        """
        body = await self.read_body(request)
        encoding = request.headers.get("content-encoding")
        if encoding is not None and body:
            body = decompress(body, encoding, self.settings.max_body_bytes)
        if not body:
            raise RequestError("the request has no body: send a JSON object")
        length = header_length(request.headers.get(HEADER), len(body))
        if length is not None:
            return parse_binary_request(body, length)
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise RequestError(f"malformed JSON: {exc}") from None

    def authorize(self, request: HasHeaders) -> None:
        """Refuse a request without a valid API key (when keys are configured)."""
        if self.settings.api_keys:
            error = check_key(self.settings, key_from(request))
            if error is not None:
                raise error

    @staticmethod
    def request_id(request: HasHeaders, payload: Any) -> str:
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
    def request_key(request: HasHeaders, payload: Any) -> str | None:
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
        request: HasHeaders,
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
        plan = await self.feature_plan(loaded)
        filled = None
        if plan is None:
            batch = decode(payload, loaded.spec, self.settings.max_batch_rows)
        else:
            given = decode(payload, plan.request_spec, self.settings.max_batch_rows)
            assert self.features is not None  # a plan comes from it
            filled = await self._maybe_threaded(given.rows, self.features.fill, plan, given)
            batch = filled.batch
        start = time.perf_counter()
        try:
            if batch.rows > INLINE_ROWS:
                prediction = await run_in_threadpool(loaded.runtime.predict, batch)
            else:
                prediction = loaded.runtime.predict(batch)
        except Exception as exc:
            latency = (time.perf_counter() - start) * 1000
            self.log_served(LogBatch(request_id, model, loaded.version, batch.columns, None, latency,
                                     endpoint if route else None, variant if route else None, "error"),
                            filled)  # fmt: skip
            if route is not None:
                self.router.observe(route.endpoint, route.variant, route.target, latency, False)
            failure = RequestError(
                f"{model} version {loaded.version} failed to predict: {type(exc).__name__}: {exc}", 500
            )
            failure.labels = (endpoint, variant, model, str(loaded.version))
            raise failure from None
        latency = (time.perf_counter() - start) * 1000
        item = LogBatch(request_id, model, loaded.version, batch.columns, prediction, latency,
                        endpoint if route else None, variant if route else None)  # fmt: skip
        self.log_served(item, filled)
        served = Served(loaded, batch, prediction, request_id, latency, endpoint, variant, route)
        if filled is not None:
            served.features = filled.summary()
        if route is not None and route.shadows:
            for target in route.shadows:
                self.shadow(route.endpoint, target, request_id, batch)
        return served

    async def feature_plan(self, loaded: LoadedModel) -> Plan | None:
        """How the version's declared online features are filled (None: it declares none)."""
        if self.features is None:
            return None
        known, plan = self.features.cached_plan(loaded.model, loaded.version)
        if known:
            return plan
        return await run_in_threadpool(self.features.plan, loaded.model, loaded.version, loaded.spec)

    async def _maybe_threaded(self, rows: int, fn: Callable[..., Any], *args: Any) -> Any:
        if rows > INLINE_ROWS:
            return await run_in_threadpool(fn, *args)
        return fn(*args)

    def log_served(self, item: LogBatch, filled: Filled | None) -> None:
        """Log a batch; rows filled from the feature store are logged one by one with their entity key."""
        if filled is None:
            self.log(item)
            return
        if item.rows == 1:
            item.entity_key = canonical_entity_key(filled.entity_keys[0])
            self.log(item)
            return
        for i, keys in enumerate(filled.entity_keys):
            prediction = None if item.prediction is None else _row_of(item.prediction, i)
            self.log(replace(
                item, request_id=f"{item.request_id}:{i}", prediction=prediction,
                columns={k: v[i : i + 1] for k, v in item.columns.items()},
                entity_key=canonical_entity_key(keys),
            ))  # fmt: skip

    def log(self, item: LogBatch) -> None:
        """Hand a batch to the prediction log writer (never blocks)."""
        if self.writer is not None:
            self.writer.submit(item)

    def observe(self, served: Served) -> None:
        """Tell the router how a routed request went (what :meth:`after` does once a response is sent)."""
        route = served.route
        if route is not None:
            self.router.observe(route.endpoint, route.variant, route.target, served.latency_ms, True)

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
        if self.features is not None:
            with contextlib.suppress(Exception):
                self.features.close()
