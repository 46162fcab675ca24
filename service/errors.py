"""How the service answers errors: a status and a message that names the problem, never a 500 page.

==========================  ======
:class:`NotFoundError`      404
:class:`AlreadyExistsError` 409
:class:`TransitionError`    409
:class:`ValidationError`    400
:class:`IntegrityError`     409
:class:`Forbidden`          403
malformed body or query     422
value the DB cannot hold    400
==========================  ======

A value the database cannot hold (an id past SQLite's 64-bit or PostgreSQL's
32-bit ``INTEGER``, a NUL character in PostgreSQL text) is the caller's
mistake, not the service's: 400, naming it.

Example:
    >>> from storage.errors import NotFoundError
    >>> status_for(NotFoundError("model 'x' does not exist"))
    404
"""

from __future__ import annotations

from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException as StarletteHTTPException

from storage.errors import (
    AlreadyExistsError,
    IntegrityError,
    MlopsError,
    NotFoundError,
    TransitionError,
    ValidationError,
)


class ServiceError(MlopsError):
    """An error with its own HTTP status."""

    status = 400

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        if status is not None:
            self.status = status


class Unauthorized(ServiceError):
    """No API key, or one the service does not know."""

    status = 401


class Forbidden(ServiceError):
    """A key whose role does not allow the call, or a refused action."""

    status = 403


class TooLarge(ServiceError):
    """A body over the configured limit."""

    status = 413


def status_for(exc: Exception) -> int:
    """The HTTP status of an error the platform raised on purpose."""
    if isinstance(exc, ServiceError):
        return exc.status
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, AlreadyExistsError | TransitionError | IntegrityError):
        return 409
    if isinstance(exc, ValidationError):
        return 400
    return 400


def _body(status: int, message: str, **extra: Any) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"error": message, "status": status, **extra}, status_code=status, headers=headers)


def _field(loc: tuple[Any, ...] | list[Any]) -> str:
    return ".".join(str(p) for p in loc if p not in ("body",)) or "body"


def _answer(request: Request, status: int, message: str, **extra: Any) -> Response:
    """JSON for the API; for a console page, its own HTML answer (``app.state.page_error``)."""
    page_error = getattr(request.app.state, "page_error", None)
    if page_error is not None and not request.url.path.startswith("/api/"):
        response: Response = page_error(request, status, message)
        return response
    return _body(status, message, **extra)


def install_error_handlers(app: FastAPI) -> None:
    """Map platform errors, validation errors and anything unexpected to clear answers."""

    @app.exception_handler(MlopsError)
    async def _platform(request: Request, exc: MlopsError) -> Response:
        return _answer(request, status_for(exc), str(exc))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        problems = [f"{_field(e.get('loc', ()))}: {e.get('msg', 'invalid')}" for e in exc.errors()]
        return _answer(request, 422, "; ".join(problems) or "the request is malformed", problems=problems)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        return _answer(request, exc.status_code, str(exc.detail))

    @app.exception_handler(ValueError)
    async def _value(request: Request, exc: ValueError) -> Response:
        return _answer(request, 400, f"invalid value: {exc}")

    @app.exception_handler(OverflowError)
    async def _overflow(request: Request, exc: OverflowError) -> Response:
        return _answer(request, 400, f"a number is out of range: {exc}")

    async def _data(request: Request, exc: Exception) -> Response:
        orig = exc.orig if isinstance(exc, DataError) else exc
        reason = (str(orig).strip().splitlines() or ["invalid data"])[0]
        return _answer(request, 400, f"a value does not fit the database: {reason}")

    app.add_exception_handler(DataError, _data)  # through SQLAlchemy
    app.add_exception_handler(psycopg.DataError, _data)  # from prepared statements run on the driver
