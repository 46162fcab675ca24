"""What every route answers with: JSON bodies (numpy included), errors by HTTP status, shared OpenAPI parts.

Example:
    >>> json_response({"x": 1}).body
    b'{"x":1}'
    >>> error_response(RequestError("bad")).status_code
    400
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import orjson
from starlette.responses import Response

from serving import protocol as p
from serving.models import ModelLoadError
from serving.protocol import RequestError
from storage.errors import MlopsError, NotFoundError, UnavailableError, ValidationError

_NUMPY = orjson.OPT_SERIALIZE_NUMPY


def _plain(value: Any) -> Any:
    """What orjson cannot write itself: non-contiguous or object arrays, numpy scalars."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def json_response(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    """A JSON response; numpy arrays and scalars are written as lists and numbers."""
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
    if isinstance(exc, ModelLoadError | UnavailableError):
        return 503, str(exc)
    if isinstance(exc, ValidationError | MlopsError):
        return 400, str(exc)
    return 500, f"internal error: {type(exc).__name__}"


def error_response(exc: BaseException, headers: Mapping[str, str] | None = None) -> Response:
    """``{"error": message}`` with the status :func:`error_status` gives."""
    status, message = error_status(exc)
    return json_response({"error": message}, status, headers)


def error_doc() -> dict[int | str, dict[str, Any]]:
    """The OpenAPI ``responses`` of a route that can fail: the error body for 400, 401, 403, 404, 413, 503."""
    return {code: {"model": p.ErrorBody} for code in (400, 401, 403, 404, 413, 503)}


def body_schema(model: type[Any]) -> dict[str, Any]:
    """The OpenAPI ``requestBody`` of a route whose JSON body ``model`` documents (read raw, not parsed)."""
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}},
        }
    }
