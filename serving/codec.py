"""The Open Inference Protocol codec: tensor datatypes, JSON values to typed columns and back.

What one tensor's JSON means, apart from what a request must hold (that is
:mod:`serving.protocol`): the datatypes (``BOOL``, ``INT8``..``UINT64``,
``FP16``..``FP64``, ``BYTES``) and which a signature column type accepts, the
conversion of a (possibly nested) JSON ``data`` list to a 1-D column of a
signature type, and the encoding of numpy arrays as output tensors. A value
that does not fit is a :class:`RequestError` (HTTP 400) naming the row.

Example:
    >>> convert_column(flat_array([[1], [2]], "input 'x'"), "float", "input 'x'").tolist()
    [1.0, 2.0]
    >>> output_tensor("label", np.asarray([1, 0]))["datatype"]
    'INT64'
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

INT_DATATYPES = ("INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64")
FLOAT_DATATYPES = ("FP16", "FP32", "FP64")
DATATYPES = ("BOOL", *INT_DATATYPES, *FLOAT_DATATYPES, "BYTES")
#: Which tensor datatypes a signature column type accepts.
ACCEPTED: dict[str, tuple[str, ...]] = {
    "float": FLOAT_DATATYPES + INT_DATATYPES,
    "int": INT_DATATYPES,
    "bool": ("BOOL",),
    "string": ("BYTES",),
    "key": (*INT_DATATYPES, "BYTES"),  # an entity's join key: a whole number or a string
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


# ------------------------------------------------------------------ inputs
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


def flat_array(data: Any, where: str) -> np.ndarray:
    """A 1-D array of a (possibly nested) JSON list, or of an array decoded from binary data."""
    if isinstance(data, np.ndarray):
        return data.reshape(-1)
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
        serving.codec.RequestError: input 'n': row 0 holds 1.5: expected a whole number
    """
    if ctype == "float":
        return _floats(arr, where, nullable)
    if ctype == "int":
        return _ints(arr, where)
    if ctype == "bool":
        return _bools(arr, where)
    if ctype == "key":
        return _keys(arr, where)
    return _strings(arr, where, nullable)


def _keys(arr: np.ndarray, where: str) -> np.ndarray:
    if arr.dtype.kind in "iu":
        return _ints(arr, where)
    values = arr.tolist()
    for i, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, str | int):
            why = "a join key is never missing" if v is None else "expected a whole number or a string"
            raise _bad(where, i, v, why)
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


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
