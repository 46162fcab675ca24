"""The Open Inference Protocol over gRPC: KServe V2's ``inference.GRPCInferenceService``.

``mlops serve --grpc-port N`` (``MLOPS_SERVE_GRPC_PORT``) answers gRPC beside
HTTP, in the same process and on the same event loop, through the same
:class:`serving.state.ServerState`: the same API keys (call metadata
``authorization: Bearer <key>`` or ``x-api-key``), the same routing (an
endpoint's A/B split sticky by ``x-request-key`` metadata or the
``request_key`` parameter, canary, shadows), the same prediction log and the
same Prometheus metrics as REST.

The service and its messages are the ones generated from the KServe V2 /
Triton ``grpc_service.proto`` (package ``inference``) that ``tritonclient[grpc]``
ships, so tritonclient's and KServe's gRPC clients both work. Served calls:
``ServerLive``, ``ServerReady``, ``ServerMetadata``, ``ModelReady``,
``ModelMetadata``, ``ModelInfer`` and ``ModelStreamInfer``; Triton's own
extensions (model repository, shared memory, statistics, ...) answer
``UNIMPLEMENTED``. Inputs come as ``raw_input_contents`` (the binary layout of
:mod:`serving.binary`) or typed ``contents``; outputs go back as
``raw_output_contents``. Errors carry the REST reason with the matching status
code: 400 ``INVALID_ARGUMENT``, 401 ``UNAUTHENTICATED``, 403
``PERMISSION_DENIED``, 404 ``NOT_FOUND``, 413 ``RESOURCE_EXHAUSTED``, 503
``UNAVAILABLE``, 500 ``INTERNAL``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import grpc
import numpy as np
import orjson
from starlette.concurrency import run_in_threadpool
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc

from serving import protocol as p
from serving.binary import decode_raw, encode_raw
from serving.models import ModelLoadError
from serving.routes.common import error_status
from serving.routes.health import EXTENSIONS, SERVER_NAME, model_metadata
from serving.state import Served, ServerState

logger = logging.getLogger(__name__)

_CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    415: grpc.StatusCode.INVALID_ARGUMENT,
    503: grpc.StatusCode.UNAVAILABLE,
}
#: Which typed ``contents`` field holds each datatype's elements.
_CONTENTS = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}


class CallHeaders:
    """A gRPC call's metadata as the lower-case headers :class:`ServerState` reads."""

    def __init__(self, context: Any) -> None:
        found = context.invocation_metadata() or ()
        self.headers: Mapping[str, str] = {
            str(k).lower(): v if isinstance(v, str) else v.decode("latin-1") for k, v in found
        }


def grpc_code(status: int) -> grpc.StatusCode:
    """The gRPC status of an HTTP status.

    >>> grpc_code(404).name, grpc_code(500).name
    ('NOT_FOUND', 'INTERNAL')
    """
    return _CODES.get(status, grpc.StatusCode.INTERNAL)


def _parameter(value: Any) -> Any:
    which = value.WhichOneof("parameter_choice")
    return None if which is None else getattr(value, which)


def _set_parameter(target: Any, value: Any) -> None:
    if isinstance(value, bool):
        target.bool_param = value
    elif isinstance(value, int):
        target.int64_param = value
    elif isinstance(value, float):
        target.double_param = value
    else:
        target.string_param = str(value)


def _contents(tensor: Any, where: str) -> np.ndarray:
    datatype = tensor.datatype
    field = _CONTENTS.get(datatype)
    if field is None:
        raise p.RequestError(f"{where}: datatype {datatype!r} must be sent in raw_input_contents")
    values = list(getattr(tensor.contents, field))
    if datatype == "BYTES":
        try:
            values = [v.decode("utf-8") for v in values]
        except UnicodeDecodeError:
            raise p.RequestError(f"{where}: an element is not UTF-8 text") from None
        out = np.empty(len(values), dtype=object)
        out[:] = values
        return out
    return np.asarray(values)


def request_payload(request: Any) -> dict[str, Any]:
    """A ``ModelInferRequest`` as the OIP JSON request :mod:`serving.protocol` decodes (arrays as data)."""
    raw = list(request.raw_input_contents)
    if raw and len(raw) != len(request.inputs):
        raise p.RequestError(
            f"raw_input_contents holds {len(raw)} tensors for {len(request.inputs)} inputs: "
            "send one per input"
        )
    inputs = []
    for i, tensor in enumerate(request.inputs):
        where = f"input {tensor.name!r}"
        shape = [int(d) for d in tensor.shape]
        if raw:
            count = int(np.prod(shape)) if shape and min(shape) >= 0 else None
            data = decode_raw(raw[i], tensor.datatype, count, where)
        else:
            data = _contents(tensor, where)
        inputs.append({"name": tensor.name, "shape": shape, "datatype": tensor.datatype, "data": data})
    payload: dict[str, Any] = {"inputs": inputs}
    if request.id:
        payload["id"] = request.id
    params = {k: _parameter(v) for k, v in request.parameters.items()}
    if params:
        payload["parameters"] = params
    if request.outputs:
        payload["outputs"] = [{"name": o.name} for o in request.outputs]
    return payload


def infer_response(served: Served, payload: Mapping[str, Any], name: str) -> Any:
    """The ``ModelInferResponse`` of one inference, outputs as raw contents."""
    outputs = served.prediction.outputs()
    response = pb.ModelInferResponse(
        model_name=name, model_version=str(served.loaded.version), id=served.request_id
    )
    for key, value in (
        ("model", served.loaded.model),
        ("endpoint", served.endpoint),
        ("variant", served.variant),
    ):
        _set_parameter(response.parameters[key], value)
    if served.features is not None:  # features filled from the online store: a JSON summary
        _set_parameter(response.parameters["features"], orjson.dumps(served.features).decode())
    for out_name in p.requested_outputs(payload, list(outputs)):
        arr = np.asarray(outputs[out_name])
        datatype = p.datatype_of(arr)
        tensor = response.outputs.add()
        tensor.name, tensor.datatype = out_name, datatype
        tensor.shape.extend(arr.shape)
        response.raw_output_contents.append(encode_raw(arr, datatype))
    return response


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    """``inference.GRPCInferenceService`` over one :class:`ServerState` (see the module docs)."""

    def __init__(self, state: ServerState, version: str = "0") -> None:
        self.state = state
        self.version = version

    async def _fail(self, context: Any, exc: BaseException) -> None:
        status, message = error_status(exc)
        if status >= 500 and not isinstance(exc, p.RequestError | ModelLoadError):
            logger.exception("unexpected gRPC error")
        await context.abort(grpc_code(status), message)

    async def ServerLive(self, request: Any, context: Any) -> Any:
        """Always live while it answers."""
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request: Any, context: Any) -> Any:
        """Ready once the registry answers and the models to preload have loaded."""
        return pb.ServerReadyResponse(ready=self.state.ready)

    async def ServerMetadata(self, request: Any, context: Any) -> Any:
        """The server's name, version and protocol extensions."""
        return pb.ServerMetadataResponse(name=SERVER_NAME, version=self.version, extensions=list(EXTENSIONS))

    async def _loaded(self, context: Any, name: str, version: str) -> Any:
        state = self.state
        state.authorize(CallHeaders(context))
        route = state.route(name, version or None, None)
        model, ref = (
            (route.target.model, route.target.version) if route is not None else (name, version or None)
        )
        return model, await state.model(model, ref)

    async def ModelReady(self, request: Any, context: Any) -> Any:
        """Whether the model (or endpoint) at that version loads; unknown ones are not ready."""
        try:
            await self._loaded(context, request.name, request.version)
        except ModelLoadError:
            return pb.ModelReadyResponse(ready=False)
        except Exception as exc:
            status, _ = error_status(exc)
            if status == 404:
                return pb.ModelReadyResponse(ready=False)
            await self._fail(context, exc)
        return pb.ModelReadyResponse(ready=True)

    async def ModelMetadata(self, request: Any, context: Any) -> Any:
        """Inputs and outputs with datatypes, versions and platform, as ``GET /v2/models/{name}``."""
        try:
            model, loaded = await self._loaded(context, request.name, request.version)
            versions = await run_in_threadpool(self.state.cache.versions, model)
        except Exception as exc:
            await self._fail(context, exc)
            raise
        meta = model_metadata(loaded, request.name, versions)
        out = pb.ModelMetadataResponse(
            name=meta["name"], versions=meta["versions"], platform=meta["platform"]
        )
        for kind in ("inputs", "outputs"):
            for item in meta[kind]:
                getattr(out, kind).add(name=item["name"], datatype=item["datatype"], shape=item["shape"])
        return out

    async def _infer(self, request: Any, headers: CallHeaders) -> Any:
        state, metrics = self.state, self.state.metrics
        start = time.perf_counter()
        name, version = request.model_name, request.model_version or None
        metrics.in_flight.inc()
        try:
            state.authorize(headers)
            payload = request_payload(request)
            request_id = state.request_id(headers, payload)
            served = await state.serve(headers, name, version, payload, _decode, request_id)
            response = infer_response(served, payload, name)
            state.observe(served)
            metrics.observe(
                served.endpoint, served.variant, served.loaded.model, str(served.loaded.version),
                time.perf_counter() - start, rows=served.batch.rows,
            )  # fmt: skip
            return response
        except Exception as exc:
            status, _ = error_status(exc)
            endpoint, variant, model, version_label = getattr(exc, "labels", None) or (name, "", name, "")
            metrics.error(endpoint, variant, model, status, version_label)
            raise
        finally:
            metrics.in_flight.dec()

    async def ModelInfer(self, request: Any, context: Any) -> Any:
        """One inference, through the same path as ``POST /v2/models/{name}/infer``."""
        try:
            return await self._infer(request, CallHeaders(context))
        except Exception as exc:
            await self._fail(context, exc)
            raise

    async def ModelStreamInfer(
        self, request_iterator: AsyncIterator[Any], context: Any
    ) -> AsyncIterator[Any]:
        """Inferences on one stream; a failed one answers its ``error_message`` and the stream goes on."""
        headers = CallHeaders(context)
        async for request in request_iterator:
            try:
                yield pb.ModelStreamInferResponse(infer_response=await self._infer(request, headers))
            except Exception as exc:
                yield pb.ModelStreamInferResponse(error_message=error_status(exc)[1])


def _decode(payload: Any, spec: Any, max_rows: int) -> p.Batch:
    return p.decode_infer_request(payload, spec, max_rows=max_rows)


async def start_grpc_server(state: ServerState, host: str, port: int, version: str = "0") -> tuple[Any, int]:
    """Start the gRPC server on the running event loop; returns it and the port it bound."""
    limit = state.settings.max_body_bytes
    server = grpc.aio.server(
        options=[("grpc.max_receive_message_length", limit), ("grpc.max_send_message_length", -1)]
    )
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(InferenceServicer(state, version), server)
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"cannot listen for gRPC on {host}:{port}")
    await server.start()
    return server, bound
