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
problem.

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
    serving.protocol.RequestError: missing input 'country' (the model's inputs are: amount, country)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field

INT_DATATYPES = ("INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64")
FLOAT_DATATYPES = ("FP16", "FP32", "FP64")
DATATYPES = ("BOOL", *INT_DATATYPES, *FLOAT_DATATYPES, "BYTES")
#: Which tensor datatypes a signature column type accepts.
ACCEPTED: dict[str, tuple[str, ...]] = {
    "float": FLOAT_DATATYPES + INT_DATATYPES,
    "int": INT_DATATYPES,
    "bool": ("BOOL",),
    "string": ("BYTES",),
}
#: The datatype a column type is described with in model metadata.
METADATA_DATATYPE = {"float": "FP64", "int": "INT64", "bool": "BOOL", "string": "BYTES"}
_INT64_MAX = 2**63 - 1
_INT64_MIN = -(2**63)


class RequestError(Exception):
    """A request the server refuses, with the HTTP status and a reason for the caller."""

    def __init__(self, message: str, status_code: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        #: (endpoint, variant, model, version) of a failure after routing, for the error metrics.
        self.labels: tuple[str, str, str, str] | None = None


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


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _flatten(data: Any) -> list[Any]:
    out: list[Any] = []
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(reversed(item))
        else:
            out.append(item)
    return out


def _array(data: Any, where: str) -> np.ndarray:
    """A 1-D array of a (possibly nested) JSON list."""
    if not isinstance(data, list):
        raise RequestError(f"{where}: 'data' must be a list, got {type(data).__name__}")
    try:
        arr = np.asarray(data)
    except (ValueError, OverflowError, TypeError):
        arr = np.asarray(_flatten(data) if data else [], dtype=object)
    if arr.dtype.kind == "U" or (arr.dtype.kind == "O" and arr.ndim != 1):
        # numpy turns [1, "a"] into strings: keep each element's own type
        flat = _flatten(data)
        arr = np.empty(len(flat), dtype=object)
        arr[:] = flat
    return arr.reshape(-1)


def _bad(where: str, index: int, value: Any, why: str) -> RequestError:
    shown = repr(value)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return RequestError(f"{where}: row {index} holds {shown}: {why}")


def _floats(arr: np.ndarray, where: str, nullable: bool) -> np.ndarray:
    kind = arr.dtype.kind
    if kind in "iuf":
        out = arr.astype(np.float64, copy=False)
    elif kind == "O":
        out = np.empty(arr.size, dtype=np.float64)
        for i, v in enumerate(arr.tolist()):
            if v is None:
                out[i] = math.nan
            elif _is_number(v):
                try:
                    out[i] = float(v)
                except OverflowError:
                    raise _bad(where, i, v, "the number is out of range") from None
            else:
                raise _bad(where, i, v, "expected a number")
    else:
        i = 0
        raise _bad(where, i, arr.tolist()[i], "expected a number")
    finite = np.isfinite(out)
    if not finite.all():
        i = int(np.flatnonzero(~finite)[0])
        if not math.isnan(out[i]):
            raise _bad(where, i, out[i], "infinite values are not allowed")
        if not nullable:
            raise RequestError(f"{where}: row {i} is missing (null/NaN), which this input does not allow")
    return out


def _ints(arr: np.ndarray, where: str) -> np.ndarray:
    kind = arr.dtype.kind
    if kind == "i":
        return arr.astype(np.int64, copy=False)
    if kind == "u":
        if arr.size and arr.max() > _INT64_MAX:
            i = int(np.argmax(arr))
            raise _bad(where, i, int(arr[i]), "the number is out of range")
        return arr.astype(np.int64)
    if kind == "f":
        bad = ~np.isfinite(arr) | (arr != np.round(arr)) | (arr > _INT64_MAX) | (arr < _INT64_MIN)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            value = arr[i]
            why = "missing (null/NaN)" if math.isnan(value) else "expected a whole number"
            raise _bad(where, i, float(value), why)
        return arr.astype(np.int64)
    if kind == "O":
        out = np.empty(arr.size, dtype=np.int64)
        for i, v in enumerate(arr.tolist()):
            if isinstance(v, bool) or not _is_number(v):
                why = "missing values are not allowed" if v is None else "expected a whole number"
                raise _bad(where, i, v, why)
            if isinstance(v, float) and not (math.isfinite(v) and v == int(v)):
                raise _bad(where, i, v, "expected a whole number")
            if not _INT64_MIN <= int(v) <= _INT64_MAX:
                raise _bad(where, i, v, "the number is out of range")
            out[i] = int(v)
        return out
    raise _bad(where, 0, arr.tolist()[0], "expected a whole number")


def _bools(arr: np.ndarray, where: str) -> np.ndarray:
    if arr.dtype.kind == "b":
        return arr
    values = arr.tolist()
    for i, v in enumerate(values):
        if not isinstance(v, bool):
            raise _bad(where, i, v, "expected true or false")
    return np.asarray(values, dtype=bool)


def _strings(arr: np.ndarray, where: str, nullable: bool) -> np.ndarray:
    if arr.dtype.kind == "U":
        return arr.astype(object)
    values = arr.tolist()
    for i, v in enumerate(values):
        if isinstance(v, str):
            continue
        if v is None:
            if nullable:
                continue
            raise RequestError(f"{where}: row {i} is missing (null), which this input does not allow")
        raise _bad(where, i, v, "expected a string")
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def convert_column(arr: np.ndarray, ctype: str, where: str, *, nullable: bool = False) -> np.ndarray:
    """Check and convert a 1-D array of JSON values to a signature column type.

    Example:
        >>> convert_column(np.asarray([1, 2]), "float", "input 'x'").dtype
        dtype('float64')
        >>> convert_column(np.asarray([1.5]), "int", "input 'n'")
        Traceback (most recent call last):
        ...
        serving.protocol.RequestError: input 'n': row 0 holds 1.5: expected a whole number
    """
    if ctype == "float":
        return _floats(arr, where, nullable)
    if ctype == "int":
        return _ints(arr, where)
    if ctype == "bool":
        return _bools(arr, where)
    return _strings(arr, where, nullable)


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
    arr = _array(tensor["data"], where)
    if arr.size != shape[0] * k:
        raise RequestError(f"{where}: shape {shape} needs {shape[0] * k} values, the data holds {arr.size}")
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
    missing = [n for n in spec.names if n not in seen]
    if missing:
        raise RequestError(f"missing input {missing[0]!r} (the model's inputs are: {', '.join(spec.names)})")
    rows: int | None = None
    columns: dict[str, np.ndarray] = {}
    for name in spec.names:
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
        arr = _array(tensor["data"], where)
        if arr.size != shape[0]:
            raise RequestError(f"{where}: shape {shape} needs {shape[0]} values, the data holds {arr.size}")
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
        serving.protocol.RequestError: instance 0 lacks feature 'x'
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
                raise RequestError(f"instance {i} lacks feature {name!r}") from None
        if len(row) != len(spec.names):
            extra = sorted(str(k) for k in row if k not in known)
            raise RequestError(
                f"instance {i} has unknown feature(s) {', '.join(map(repr, extra[:5]))} "
                f"(the model's inputs are: {', '.join(spec.names)})"
            )
    columns = {}
    for name in spec.names:
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


# ------------------------------------------------------------------ outputs
def datatype_of(arr: np.ndarray) -> str:
    """The OIP datatype of a numpy array.

    >>> datatype_of(np.zeros(2, dtype=np.float32)), datatype_of(np.array(["a"], dtype=object))
    ('FP32', 'BYTES')
    """
    kind = arr.dtype.kind
    if kind == "b":
        return "BOOL"
    if kind in "iu":
        return f"{'U' if kind == 'u' else ''}INT{arr.dtype.itemsize * 8}"
    if kind == "f":
        return f"FP{arr.dtype.itemsize * 8}"
    return "BYTES"


def json_values(arr: np.ndarray) -> list[Any]:
    """A flat list of JSON-ready values (NaN becomes null)."""
    flat = arr.reshape(-1)
    if flat.dtype.kind == "f" and not np.isfinite(flat).all():
        return [None if not math.isfinite(v) else v for v in flat.tolist()]
    if flat.dtype.kind in "OUS":
        return [v if isinstance(v, str | int | float | bool) or v is None else str(v) for v in flat.tolist()]
    return list(flat.tolist())


def output_tensor(name: str, arr: np.ndarray) -> dict[str, Any]:
    """One OIP output tensor."""
    return {"name": name, "shape": list(arr.shape), "datatype": datatype_of(arr), "data": json_values(arr)}


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
