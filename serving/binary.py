"""The binary tensor data extension of the Open Inference Protocol (KServe / Triton), and raw tensors.

A request whose ``Inference-Header-Content-Length`` header is ``n`` carries a
JSON inference request in its first ``n`` bytes and, after it, the raw bytes of
every input whose ``parameters.binary_data_size`` is set, in the order of
``inputs`` (such an input has no ``data``). A response carries outputs in
binary when the request says so, per output (``outputs[i].parameters.binary_data``)
or for all of them (``parameters.binary_data_output``): the response's JSON
then ends where its own ``Inference-Header-Content-Length`` says, each binary
output has ``parameters.binary_data_size`` instead of ``data``, and the raw
bytes follow in the order of ``outputs``.

Raw bytes are little-endian, row-major: fixed-size numbers for the numeric
datatypes, one byte per ``BOOL``, and for ``BYTES`` each element as a 4-byte
little-endian length followed by that many bytes (UTF-8 text here). The gRPC
form (``raw_input_contents``, ``raw_output_contents``) uses the same encoding,
so :func:`decode_raw` and :func:`encode_raw` serve both.

Example:
    >>> raw = encode_raw(np.array([1.5, 2.0]), "FP64")
    >>> decode_raw(raw, "FP64", 2, "input 'x'").tolist()
    [1.5, 2.0]
    >>> decode_raw(encode_raw(np.array(["NL", "DE"], dtype=object), "BYTES"), "BYTES", 2, "x").tolist()
    ['NL', 'DE']
    >>> decode_raw(b"abc", "FP64", 1, "input 'x'")
    Traceback (most recent call last):
    ...
    serving.codec.RequestError: input 'x': 3 bytes of FP64 data do not hold 1 value of 8 bytes
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping
from typing import Any

import numpy as np
import orjson

from serving.codec import DATATYPES, RequestError

#: The header that says where the JSON part of a binary request or response ends.
HEADER = "Inference-Header-Content-Length"
_DTYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}
_LENGTH = struct.Struct("<I")


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def decode_raw(raw: bytes, datatype: str, count: int | None, where: str) -> np.ndarray:
    """The 1-D array of ``count`` elements that ``raw`` holds (any count when None)."""
    if datatype == "BYTES":
        return _decode_bytes(raw, count, where)
    dtype = _DTYPES.get(datatype)
    if dtype is None:
        raise RequestError(f"{where}: datatype {datatype!r} is not one of {', '.join(DATATYPES)}")
    size = dtype.itemsize
    if len(raw) % size or (count is not None and len(raw) != count * size):
        wanted = "a whole number of values" if count is None else _plural(count, "value")
        raise RequestError(
            f"{where}: {len(raw)} bytes of {datatype} data do not hold {wanted} of {size} bytes"
        )
    if datatype == "BOOL":
        octets = np.frombuffer(raw, dtype=np.uint8)
        if octets.size and octets.max() > 1:
            i = int(np.flatnonzero(octets > 1)[0])
            raise RequestError(f"{where}: row {i} holds byte {int(octets[i])}: a BOOL is 0 or 1")
        return octets.astype(bool)
    return np.frombuffer(raw, dtype=dtype)


def _decode_bytes(raw: bytes, count: int | None, where: str) -> np.ndarray:
    values: list[str] = []
    offset, end = 0, len(raw)
    view = memoryview(raw)
    while offset < end:
        if end - offset < 4:
            raise RequestError(f"{where}: BYTES data ends inside the length of element {len(values)}")
        (length,) = _LENGTH.unpack_from(raw, offset)
        offset += 4
        if offset + length > end:
            raise RequestError(
                f"{where}: element {len(values)} says {length} bytes, only {end - offset} are left"
            )
        try:
            values.append(str(view[offset : offset + length], "utf-8"))
        except UnicodeDecodeError:
            raise RequestError(f"{where}: element {len(values)} is not UTF-8 text") from None
        offset += length
    if count is not None and len(values) != count:
        raise RequestError(f"{where}: the BYTES data holds {len(values)} elements, the shape needs {count}")
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def encode_raw(arr: np.ndarray, datatype: str) -> bytes:
    """The raw little-endian bytes of ``arr`` as ``datatype`` (BYTES: length-prefixed UTF-8)."""
    flat = arr.reshape(-1)
    if datatype == "BYTES":
        parts = []
        for value in flat.tolist():
            data = value if isinstance(value, bytes) else str(value).encode()
            parts.append(_LENGTH.pack(len(data)))
            parts.append(data)
        return b"".join(parts)
    return np.ascontiguousarray(flat, dtype=_DTYPES[datatype]).tobytes()


# ------------------------------------------------------------------ HTTP requests
def header_length(value: str | None, body_size: int) -> int | None:
    """The JSON part's length a request declares (None: a plain JSON request)."""
    if value is None:
        return None
    text = value.strip()
    if not (text.isascii() and text.isdigit()) or len(text) > 20:
        raise RequestError(f"{HEADER} {value!r} must be a whole number of bytes")
    n = int(text)
    if n == 0 or n > body_size:
        raise RequestError(f"{HEADER} is {n}, but the body holds {body_size} bytes")
    return n


def parse_binary_request(body: bytes, length: int) -> Any:
    """The JSON request of a binary body, with each binary input's ``data`` filled with its array."""
    try:
        payload = orjson.loads(body[:length])
    except orjson.JSONDecodeError as exc:
        raise RequestError(f"malformed JSON in the first {length} bytes ({HEADER}): {exc}") from None
    inputs = payload.get("inputs") if isinstance(payload, Mapping) else None
    offset = length
    if isinstance(inputs, list):
        for i, tensor in enumerate(inputs):
            if not isinstance(tensor, dict):
                continue
            params = tensor.get("parameters")
            size = params.get("binary_data_size") if isinstance(params, Mapping) else None
            if size is None:
                continue
            where = f"input {tensor.get('name', i)!r}"
            if isinstance(size, bool) or not isinstance(size, int) or size < 0:
                raise RequestError(f"{where}: binary_data_size {size!r} must be a whole number of bytes")
            if "data" in tensor:
                raise RequestError(f"{where}: has both 'data' and binary_data_size")
            if offset + size > len(body):
                raise RequestError(
                    f"{where}: binary_data_size {size} runs past the body's end "
                    f"({len(body) - offset} bytes left)"
                )
            raw = body[offset : offset + size]
            tensor["data"] = decode_raw(
                raw, str(tensor.get("datatype")), _elements(tensor.get("shape")), where
            )
            offset += size
    if offset != len(body):
        raise RequestError(
            f"the body has {len(body) - offset} bytes after the JSON and binary inputs it declares"
        )
    return payload


def _elements(shape: Any) -> int | None:
    """The element count a well-formed shape gives (None: the shape check will say what is wrong)."""
    if not isinstance(shape, list) or not shape:
        return None
    if any(isinstance(d, bool) or not isinstance(d, int) or d < 0 for d in shape):
        return None
    return math.prod(shape)


# ------------------------------------------------------------------ HTTP responses
def binary_outputs(payload: Any, names: list[str]) -> set[str]:
    """The outputs (of ``names``) the request wants in binary."""
    if not isinstance(payload, Mapping):
        return set()
    params = payload.get("parameters")
    default = bool(params.get("binary_data_output")) if isinstance(params, Mapping) else False
    wanted: dict[str, bool] = {}
    outputs = payload.get("outputs")
    if isinstance(outputs, list):
        for item in outputs:
            if isinstance(item, Mapping) and isinstance(item.get("parameters"), Mapping):
                flag = item["parameters"].get("binary_data")
                if flag is not None:
                    wanted[str(item.get("name"))] = bool(flag)
    return {n for n in names if wanted.get(n, default)}


def encode_binary_response(body: dict[str, Any], binary: set[str]) -> tuple[bytes, int]:
    """The response bytes with ``binary`` outputs after the JSON, and the JSON part's length."""
    blobs = []
    for tensor in body["outputs"]:
        if tensor["name"] not in binary:
            continue
        data = tensor.pop("data")
        arr = data if isinstance(data, np.ndarray) else np.asarray(data, dtype=object)
        raw = encode_raw(arr, tensor["datatype"])
        tensor["parameters"] = {**(tensor.get("parameters") or {}), "binary_data_size": len(raw)}
        blobs.append(raw)
    head = orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY, default=_plain)
    return head + b"".join(blobs), len(head)


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
