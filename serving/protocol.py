"""The Open Inference Protocol (KServe V2) request and response, and records requests.

A request's tensors are decoded against the version's signature (see
:mod:`storage.registry.model_format`) in one of two layouts:

- one tensor per input column, named as the column, shape ``[N]`` or ``[N, 1]``;
- a single tensor of shape ``[N, k]`` (any name that is not a column) whose
  ``k`` columns follow the signature's order.

Datatypes a column accepts: ``float`` columns ``FP16/FP32/FP64`` and the integer
types; ``int`` columns the integer types; ``bool`` columns ``BOOL``; ``string``
columns ``BYTES``. A missing value (JSON ``null``) is allowed only in a
``float`` or ``string`` input the signature marks ``"nullable": true``.
Everything wrong is a :class:`RequestError` (HTTP 400) naming the input and the
problem. This module checks what a request holds (its layout, shapes, row limit,
which datatypes fit which column); :mod:`serving.codec` converts each tensor's
values and encodes the outputs, and its names are importable from here too.

Example:
    >>> sig = {"inputs": [{"name": "amount", "type": "float"}, {"name": "country", "type": "string"}],
    ...        "task": "classification", "classes": [0, 1]}
    >>> batch = decode_infer_request({"inputs": [
    ...     {"name": "amount", "shape": [2, 1], "datatype": "FP64", "data": [1.5, 2.0]},
    ...     {"name": "country", "shape": [2], "datatype": "BYTES", "data": ["NL", "DE"]}]}, sig)
    >>> batch.rows, batch.frame()["country"].tolist()
    (2, ['NL', 'DE'])
    >>> decode_infer_request({"inputs": [{"name": "amount", "shape": [1], "datatype": "FP64",
    ...                                   "data": [1.0]}]}, sig)
    Traceback (most recent call last):
    ...
    serving.codec.RequestError: missing input 'country' (the model's inputs are: amount, country)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field

from serving.codec import (
    ACCEPTED,
    DATATYPES,
    FLOAT_DATATYPES,
    INT_DATATYPES,
    METADATA_DATATYPE,
    RequestError,
    convert_column,
    datatype_of,
    flat_array,
    json_values,
    output_tensor,
)

__all__ = [
    "ACCEPTED",
    "DATATYPES",
    "FLOAT_DATATYPES",
    "INT_DATATYPES",
    "METADATA_DATATYPE",
    "Batch",
    "ErrorBody",
    "FeedbackItem",
    "InferInput",
    "InferOutput",
    "InferRequest",
    "InferResponse",
    "InputSpec",
    "PredictRequest",
    "RequestError",
    "RequestedOutput",
    "convert_column",
    "datatype_of",
    "decode_infer_request",
    "decode_records",
    "json_values",
    "output_tensor",
    "requested_outputs",
]


# ------------------------------------------------------------------ OpenAPI documentation models
class InferInput(BaseModel):
    """One input tensor of an inference request."""

    name: str
    shape: list[int]
    datatype: str = Field(description="BOOL, INT8..INT64, UINT8..UINT64, FP16, FP32, FP64 or BYTES")
    parameters: dict[str, Any] | None = None
    data: list[Any] = Field(description="the tensor's elements, flat or nested, row-major")


class RequestedOutput(BaseModel):
    """An output the caller asks for (all outputs when none are named)."""

    name: str
    parameters: dict[str, Any] | None = None


class InferRequest(BaseModel):
    """An Open Inference Protocol inference request."""

    id: str | None = None
    parameters: dict[str, Any] | None = Field(
        default=None, description="``request_key`` routes sticky A/B assignment (e.g. a user id)"
    )
    inputs: list[InferInput]
    outputs: list[RequestedOutput] | None = None


class InferOutput(BaseModel):
    """One output tensor of an inference response."""

    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] | None = None
    data: list[Any]


class InferResponse(BaseModel):
    """An Open Inference Protocol inference response."""

    model_name: str
    model_version: str | None = None
    id: str
    parameters: dict[str, Any] | None = None
    outputs: list[InferOutput]


class PredictRequest(BaseModel):
    """A records request: one object of feature values per row."""

    instances: list[dict[str, Any]]


class FeedbackItem(BaseModel):
    """The true label of an earlier prediction, by its request id."""

    request_id: str
    label: Any
    ts: str | None = None


class ErrorBody(BaseModel):
    """Every error response."""

    error: str


# ------------------------------------------------------------------ decoded inputs
@dataclass
class Batch:
    """Decoded input columns, in signature order, each a 1-D array of ``rows`` values."""

    columns: dict[str, np.ndarray]
    rows: int
    _frame: pd.DataFrame | None = field(default=None, repr=False)

    def frame(self) -> pd.DataFrame:
        """The columns as a DataFrame (built once)."""
        if self._frame is None:
            self._frame = pd.DataFrame(self.columns, copy=False)
        return self._frame


@dataclass(frozen=True)
class InputSpec:
    """What a version accepts: its input columns, their types and which may be missing."""

    names: tuple[str, ...]
    types: dict[str, str]
    nullable: frozenset[str]
    #: Inputs a request may leave out (features the server fills from the online store).
    optional: frozenset[str] = frozenset()
    #: Longest string value in UTF-8 bytes (None: no limit); longer is a 413.
    max_string_bytes: int | None = None
    #: Most values in one input tensor (None: no limit); more is a 413.
    max_elements: int | None = None

    @classmethod
    def from_signature(cls, signature: Mapping[str, Any] | None) -> InputSpec:
        """The spec of a signature (see :mod:`storage.registry.model_format`)."""
        fields = list((signature or {}).get("inputs", []))
        if not fields:
            raise RequestError("the model version has no input signature: it cannot be served", 503)
        names = tuple(str(f["name"]) for f in fields)
        types = {str(f["name"]): str(f.get("type", "float")) for f in fields}
        nullable = frozenset(str(f["name"]) for f in fields if f.get("nullable"))
        return cls(names, types, nullable)


# ------------------------------------------------------------------ request checks and decoding
def _shape(tensor: Mapping[str, Any], where: str) -> list[int]:
    shape = tensor.get("shape")
    if not isinstance(shape, list) or not shape:
        raise RequestError(f"{where}: 'shape' must be a non-empty list of whole numbers")
    for dim in shape:
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 0:
            raise RequestError(f"{where}: shape {shape} must hold non-negative whole numbers")
    return shape


def _datatype(tensor: Mapping[str, Any], where: str) -> str:
    datatype = tensor.get("datatype")
    if datatype not in DATATYPES:
        raise RequestError(f"{where}: datatype {datatype!r} is not one of {', '.join(DATATYPES)}")
    return str(datatype)


def _check_rows(rows: int, max_rows: int, where: str) -> None:
    if rows == 0:
        raise RequestError(f"{where}: the request has no rows")
    if rows > max_rows:
        raise RequestError(f"{where}: too many rows: {rows} (this server accepts at most {max_rows})")


def _check_elements(shape: Sequence[int], spec: InputSpec, where: str) -> None:
    count = math.prod(shape)
    if spec.max_elements is not None and count > spec.max_elements:
        raise RequestError(
            f"{where}: shape {shape} holds {count} values (this server accepts at most "
            f"{spec.max_elements} per tensor)",
            413,
        )


def _check_strings(values: Sequence[Any] | np.ndarray, spec: InputSpec, where: str, row: str = "row") -> None:
    """A 413 for the first string longer than ``spec.max_string_bytes`` (named, never echoed)."""
    limit = spec.max_string_bytes
    if limit is None or (isinstance(values, np.ndarray) and values.dtype.kind not in "OSU"):
        return
    short = limit // 4  # a string of at most this many characters fits in ``limit`` UTF-8 bytes
    for i, value in enumerate(values):
        if isinstance(value, str | bytes) and len(value) > short:
            size = len(value) if isinstance(value, bytes) else len(value.encode("utf-8", "surrogatepass"))
            if size > limit:
                raise RequestError(
                    f"{where}: {row} {i} holds a string of {size} bytes (this server accepts at most "
                    f"{limit} per value)",
                    413,
                )


def _check_accepts(spec: InputSpec, column: str, datatype: str, where: str) -> None:
    ctype = spec.types[column]
    if datatype not in ACCEPTED[ctype]:
        raise RequestError(
            f"{where}: datatype {datatype} does not fit the {ctype} column {column!r} "
            f"(use {' or '.join(ACCEPTED[ctype][:3])}{'...' if len(ACCEPTED[ctype]) > 3 else ''})"
        )


def _tensors(payload: Any) -> list[Mapping[str, Any]]:
    if not isinstance(payload, Mapping):
        raise RequestError("the request body must be a JSON object with an 'inputs' list")
    inputs = payload.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise RequestError("the request needs a non-empty 'inputs' list")
    for i, tensor in enumerate(inputs):
        if not isinstance(tensor, Mapping) or not isinstance(tensor.get("name"), str):
            raise RequestError(f"inputs[{i}] must be an object with a string 'name'")
        if "data" not in tensor:
            raise RequestError(f"input {tensor['name']!r} has no 'data'")
    return inputs


def _single_tensor(tensor: Mapping[str, Any], spec: InputSpec, max_rows: int) -> Batch:
    where = f"input {tensor['name']!r}"
    shape, datatype = _shape(tensor, where), _datatype(tensor, where)
    k = len(spec.names)
    if len(shape) != 2 or shape[1] != k:
        raise RequestError(
            f"{where}: a single input tensor must have shape [N, {k}] with the columns "
            f"{', '.join(spec.names)} in this order, got {shape}"
        )
    mixed = "string" in spec.types.values()
    for column in spec.names:
        ctype = spec.types[column]
        # one tensor has one datatype: numbers fit int and float columns (whole numbers checked
        # per value), and a table with strings comes as BYTES holding JSON numbers and strings
        if datatype in ACCEPTED["float"] and ctype in ("float", "int"):
            continue
        if datatype == "BYTES" and mixed:
            continue
        _check_accepts(spec, column, datatype, f"{where} (column {column!r})")
    _check_rows(shape[0], max_rows, where)
    _check_elements(shape, spec, where)
    arr = flat_array(tensor["data"], where)
    if arr.size != shape[0] * k:
        raise RequestError(f"{where}: shape {shape} needs {shape[0] * k} values, the data holds {arr.size}")
    _check_strings(arr, spec, where, "value")
    matrix = arr.reshape(shape[0], k)
    columns = {
        name: convert_column(
            np.ascontiguousarray(matrix[:, j]),
            spec.types[name],
            f"{where} column {name!r}",
            nullable=name in spec.nullable,
        )
        for j, name in enumerate(spec.names)
    }
    return Batch(columns, shape[0])


def decode_infer_request(
    payload: Any, signature: Mapping[str, Any] | InputSpec | None, *, max_rows: int = 100_000
) -> Batch:
    """Decode an OIP request's ``inputs`` into columns in signature order.

    Raises:
        RequestError: anything malformed or not matching the signature (400).
    """
    spec = signature if isinstance(signature, InputSpec) else InputSpec.from_signature(signature)
    tensors = _tensors(payload)
    names = [str(t["name"]) for t in tensors]
    if len(tensors) == 1 and names[0] not in spec.types:
        return _single_tensor(tensors[0], spec, max_rows)
    unknown = [n for n in names if n not in spec.types]
    if unknown:
        raise RequestError(f"unknown input {unknown[0]!r} (the model's inputs are: {', '.join(spec.names)})")
    seen: dict[str, Mapping[str, Any]] = {}
    for name, tensor in zip(names, tensors, strict=True):
        if name in seen:
            raise RequestError(f"input {name!r} is given more than once")
        seen[name] = tensor
    missing = [n for n in spec.names if n not in seen and n not in spec.optional]
    if missing:
        raise RequestError(f"missing input {missing[0]!r} (the model's inputs are: {', '.join(spec.names)})")
    rows: int | None = None
    columns: dict[str, np.ndarray] = {}
    for name in spec.names:
        if name not in seen:
            continue
        tensor, where = seen[name], f"input {name!r}"
        shape, datatype = _shape(tensor, where), _datatype(tensor, where)
        if len(shape) > 2 or (len(shape) == 2 and shape[1] != 1):
            raise RequestError(f"{where}: shape must be [N] or [N, 1], got {shape}")
        if rows is None:
            rows = shape[0]
            _check_rows(rows, max_rows, where)
        elif shape[0] != rows:
            raise RequestError(f"{where}: has {shape[0]} rows, the other inputs have {rows}")
        _check_accepts(spec, name, datatype, where)
        _check_elements(shape, spec, where)
        arr = flat_array(tensor["data"], where)
        if arr.size != shape[0]:
            raise RequestError(f"{where}: shape {shape} needs {shape[0]} values, the data holds {arr.size}")
        _check_strings(arr, spec, where)
        if name in spec.optional:  # the server fills its missing values, then converts it
            columns[name] = arr
            continue
        columns[name] = convert_column(arr, spec.types[name], where, nullable=name in spec.nullable)
    assert rows is not None
    return Batch(columns, rows)


def decode_records(
    payload: Any, signature: Mapping[str, Any] | InputSpec | None, *, max_rows: int = 100_000
) -> Batch:
    """Decode ``{"instances": [{feature: value}, ...]}`` (or a bare list of objects).

    Example:
        >>> sig = {"inputs": [{"name": "x", "type": "float"}]}
        >>> decode_records([{"x": 1}, {"x": 2.5}], sig).columns["x"].tolist()
        [1.0, 2.5]
        >>> decode_records({"instances": [{"y": 1}]}, sig)
        Traceback (most recent call last):
        ...
        serving.codec.RequestError: instance 0 lacks feature 'x'
    """
    spec = signature if isinstance(signature, InputSpec) else InputSpec.from_signature(signature)
    instances = payload.get("instances") if isinstance(payload, Mapping) else payload
    if not isinstance(instances, list) or not instances:
        raise RequestError('the request body must be {"instances": [{feature: value, ...}, ...]}')
    _check_rows(len(instances), max_rows, "instances")
    known = set(spec.names)
    values: dict[str, list[Any]] = {name: [] for name in spec.names}
    for i, row in enumerate(instances):
        if not isinstance(row, Mapping):
            raise RequestError(f"instance {i} must be an object of feature values, got {type(row).__name__}")
        for name in spec.names:
            try:
                values[name].append(row[name])
            except KeyError:
                if name not in spec.optional:
                    raise RequestError(f"instance {i} lacks feature {name!r}") from None
                values[name].append(None)
        if len(row) != len(spec.names) and any(k not in known for k in row):
            extra = sorted(str(k) for k in row if k not in known)
            raise RequestError(
                f"instance {i} has unknown feature(s) {', '.join(map(repr, extra[:5]))} "
                f"(the model's inputs are: {', '.join(spec.names)})"
            )
    columns = {}
    for name in spec.names:
        _check_strings(values[name], spec, f"feature {name!r}", "instance")
        if name in spec.optional:  # kept as given (None where absent): the server fills and converts them
            column = np.empty(len(instances), dtype=object)
            column[:] = values[name]
            columns[name] = column
            continue
        try:
            with np.errstate(all="ignore"):
                arr = np.asarray(values[name])
        except (ValueError, OverflowError, TypeError):
            arr = np.empty(0)
        if arr.ndim != 1 or arr.dtype.kind in "UO" or len(arr) != len(values[name]):
            arr = np.empty(len(values[name]), dtype=object)  # each value keeps its own type
            for i, value in enumerate(values[name]):
                arr[i] = value
        where = f"feature {name!r}"
        try:
            columns[name] = convert_column(arr, spec.types[name], where, nullable=name in spec.nullable)
        except RequestError as exc:
            raise RequestError(exc.message.replace(": row ", ": instance ", 1)) from None
    return Batch(columns, len(instances))


# ------------------------------------------------------------------ requested outputs
def requested_outputs(payload: Mapping[str, Any], available: Sequence[str]) -> list[str]:
    """The outputs a request names (all when it names none); unknown names are a 400."""
    wanted = payload.get("outputs")
    if wanted is None:
        return list(available)
    if not isinstance(wanted, list):
        raise RequestError("'outputs' must be a list of {\"name\": ...} objects")
    names = []
    for item in wanted:
        name = item.get("name") if isinstance(item, Mapping) else None
        if name not in available:
            raise RequestError(f"unknown output {name!r} (the model's outputs are: {', '.join(available)})")
        names.append(str(name))
    return names or list(available)
