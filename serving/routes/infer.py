"""Inference routes: Open Inference Protocol v2 tensors, v1 records, and one record's explanation.

``POST /v2/models/{name}[/versions/{v}]/infer`` takes OIP tensors and answers
OIP outputs (:func:`infer_response`); ``POST /v1/models/{name}/predict`` takes
``{"instances": [{feature: value}, ...]}`` and answers predictions, with
probabilities and classes for classifiers (:func:`predict_response`);
``POST /v1/models/{name}/explain`` answers the top factors of one record.
OIP requests and responses may use the binary tensor data extension
(:mod:`serving.binary`): the request's ``Inference-Header-Content-Length``
says where its JSON ends, and outputs asked for in binary follow the
response's JSON (:func:`oip_response`).

Every inference goes through one path (``answer``): key check, body, request id,
:meth:`serving.state.ServerState.serve`, then the response with its
``X-Request-Id`` and the metrics. Plain Starlette twins of the inference routes,
placed first among the app's routes, answer without FastAPI's per-request
parameter machinery; the FastAPI routes stay for the OpenAPI document.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response
from starlette.routing import Route as HttpRoute

from serving import protocol as p
from serving.binary import HEADER, binary_outputs, encode_binary_response
from serving.protocol import Batch, RequestError
from serving.routes.common import body_schema, error_doc, error_response, error_status, json_response
from serving.state import Served, ServerState
from storage.errors import MlopsError

logger = logging.getLogger(__name__)


def add_inference_routes(app: FastAPI, state: ServerState) -> None:
    """OIP infer (latest or a version), records predict, their fast twins, and explain."""
    metrics = state.metrics
    errors = error_doc()

    async def answer(
        request: Request,
        name: str,
        version: str | None,
        decode: Callable[[Any, Any, int], Batch],
        respond: Callable[[Served, Any], Response],
    ) -> Response:
        start = time.perf_counter()
        metrics.in_flight.inc()
        request_id = None
        try:
            state.authorize(request)
            payload = await state.payload(request)
            request_id = state.request_id(request, payload)
            served = await state.serve(request, name, version, payload, decode, request_id)
            response = respond(served, payload)
            response.headers["X-Request-Id"] = served.request_id
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
            return error_response(exc, {"X-Request-Id": request_id} if request_id else None)
        finally:
            metrics.in_flight.dec()

    def decode_tensors(payload: Any, spec: Any, max_rows: int) -> Batch:
        return p.decode_infer_request(payload, spec, max_rows=max_rows)

    def decode_records(payload: Any, spec: Any, max_rows: int) -> Batch:
        return p.decode_records(payload, spec, max_rows=max_rows)

    def oip(name: str) -> Callable[[Served, Any], Response]:
        return lambda served, payload: oip_response(served, payload, name)

    def records(served: Served, payload: Any) -> Response:
        return json_response(predict_response(served))

    @app.post(
        "/v2/models/{name}/infer", tags=["inference"], openapi_extra=body_schema(p.InferRequest),
        responses={200: {"model": p.InferResponse}, **errors},
    )  # fmt: skip
    async def infer(request: Request, name: str) -> Response:
        return await answer(request, name, None, decode_tensors, oip(name))

    @app.post(
        "/v2/models/{name}/versions/{version}/infer", tags=["inference"],
        openapi_extra=body_schema(p.InferRequest), responses={200: {"model": p.InferResponse}, **errors},
    )  # fmt: skip
    async def infer_version(request: Request, name: str, version: str) -> Response:
        return await answer(request, name, version, decode_tensors, oip(name))

    @app.post(
        "/v1/models/{name}/predict", tags=["inference"], openapi_extra=body_schema(p.PredictRequest),
        responses=errors,
    )  # fmt: skip
    async def predict(request: Request, name: str) -> Response:
        return await answer(request, name, None, decode_records, records)

    # The inference routes above document the API; these plain Starlette routes, matched first,
    # answer the same paths without FastAPI's per-request parameter machinery (a third of the
    # server's time on single rows).
    async def fast_infer(request: Request) -> Response:
        params = request.path_params
        name = params["name"]
        return await answer(request, name, params.get("version"), decode_tensors, oip(name))

    async def fast_predict(request: Request) -> Response:
        return await answer(request, request.path_params["name"], None, decode_records, records)

    fast = [
        HttpRoute("/v2/models/{name}/infer", fast_infer, methods=["POST"]),
        HttpRoute("/v2/models/{name}/versions/{version}/infer", fast_infer, methods=["POST"]),
        HttpRoute("/v1/models/{name}/predict", fast_predict, methods=["POST"]),
    ]
    app.router.routes[0:0] = fast

    @app.post(
        "/v1/models/{name}/explain", tags=["inference"], openapi_extra=body_schema(p.PredictRequest),
        responses=errors,
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
        return json_response(found)


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
    body: dict[str, Any] = {
        "model_name": name,
        "model_version": str(served.loaded.version),
        "id": served.request_id,
        "parameters": {"model": served.loaded.model, "endpoint": served.endpoint, "variant": served.variant},
        "outputs": [_tensor(n, outputs[n]) for n in wanted],
    }
    if served.features is not None:
        body["parameters"]["features"] = served.features
    return body


def oip_response(served: Served, payload: Any, name: str) -> Response:
    """The OIP response: JSON, or JSON then raw outputs when the request asks for binary outputs."""
    body = infer_response(served, payload, name)
    binary = binary_outputs(payload, [t["name"] for t in body["outputs"]])
    if not binary:
        return json_response(body)
    content, length = encode_binary_response(body, binary)
    return Response(content, 200, {HEADER: str(length)}, media_type="application/octet-stream")


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
    if served.features is not None:
        body["features"] = served.features
    return body
