"""Health, metadata and metrics routes: is the server up, what does it serve, how is it doing.

``/v2/health/live`` and ``/v2/health/ready`` (503 until the registry answers and
the models to preload have loaded), the server's metadata at ``/v2``, a model's
(or endpoint's) metadata and readiness at ``/v2/models/{name}[/versions/{v}]``
and ``.../ready``, and the Prometheus text at ``/metrics``.

Example:
    >>> _label_datatype((0, 1)), _label_datatype(("no", "yes")), _label_datatype(())
    ('INT64', 'BYTES', 'INT64')
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from serving import protocol as p
from serving.metrics import CONTENT_TYPE_LATEST
from serving.models import LoadedModel, ModelLoadError
from serving.routes.common import error_doc, json_response
from serving.state import ServerState
from storage.registry.model_format import ONNX_LABEL, ONNX_PROBABILITIES, ONNX_REGRESSION

SERVER_NAME = "dwcp-mlops"
#: The protocol extensions this server speaks (reported in the server metadata).
EXTENSIONS = ("binary_tensor_data",)


def add_health_routes(app: FastAPI, state: ServerState) -> None:
    """Liveness, readiness, and server and model metadata."""
    errors = error_doc()

    @app.get("/v2/health/live", tags=["health"])
    async def live() -> Response:
        return json_response({"live": True})

    @app.get("/v2/health/ready", tags=["health"], responses={503: {"model": p.ErrorBody}})
    async def ready() -> Response:
        if state.ready:
            return json_response({"ready": True})
        return json_response({"ready": False, "error": f"not ready: {state.not_ready_reason}"}, 503)

    @app.get("/v2", tags=["metadata"])
    async def server_metadata() -> Response:
        return json_response({"name": SERVER_NAME, "version": app.version, "extensions": list(EXTENSIONS)})

    async def metadata_of(request: Request, name: str, version: str | None) -> Response:
        state.authorize(request)
        route = state.route(name, version, None)
        model, ref = (route.target.model, route.target.version) if route is not None else (name, version)
        loaded = await state.model(model, ref)
        versions = await run_in_threadpool(state.cache.versions, model)
        return json_response(model_metadata(loaded, name, versions))

    async def ready_of(request: Request, name: str, version: str | None) -> Response:
        state.authorize(request)
        route = state.route(name, version, None)
        model, ref = (route.target.model, route.target.version) if route is not None else (name, version)
        try:
            loaded = await state.model(model, ref)
        except ModelLoadError as exc:
            return json_response({"name": name, "ready": False, "error": str(exc)}, 503)
        return json_response({"name": name, "version": str(loaded.version), "ready": True})

    @app.get("/v2/models/{name}", tags=["metadata"], responses=errors)
    async def model_meta(request: Request, name: str) -> Response:
        return await metadata_of(request, name, None)

    @app.get("/v2/models/{name}/versions/{version}", tags=["metadata"], responses=errors)
    async def version_meta(request: Request, name: str, version: str) -> Response:
        return await metadata_of(request, name, version)

    @app.get("/v2/models/{name}/ready", tags=["health"], responses=errors)
    async def model_ready(request: Request, name: str) -> Response:
        return await ready_of(request, name, None)

    @app.get("/v2/models/{name}/versions/{version}/ready", tags=["health"], responses=errors)
    async def version_ready(request: Request, name: str, version: str) -> Response:
        return await ready_of(request, name, version)


def add_metrics_route(app: FastAPI, state: ServerState) -> None:
    """``/metrics``: the Prometheus text, and the prediction log writer's backlog, drops, longest write."""
    metrics = state.metrics

    @app.get("/metrics", tags=["metrics"])
    async def prometheus() -> Response:
        if state.writer is not None:
            metrics.log_dropped.set(state.writer.rows_dropped)
            metrics.log_waiting.set(state.writer.waiting)
            metrics.log_longest_write.set(state.writer.longest_write_s)
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)


def _label_datatype(classes: tuple[Any, ...]) -> str:
    if classes and all(isinstance(c, bool) for c in classes):
        return "BOOL"
    if classes and all(isinstance(c, int) and not isinstance(c, bool) for c in classes):
        return "INT64"
    return "BYTES" if classes else "INT64"


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
