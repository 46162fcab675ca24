"""API keys: inference needs one when keys are configured; the admin API always needs the admin key.

A key travels in ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``. A
missing key is 401, a wrong one 403; keys are compared in constant time. The
admin key also opens inference. With no admin key configured the admin API
refuses every call (403).

The dependencies read the settings from ``request.app.state.settings`` (set by
:func:`serving.app.create_app`).

Example:
    >>> from serving.config import ServeSettings
    >>> check_key(ServeSettings(api_keys="k1"), "k1"), check_key(ServeSettings(), None)
    (None, None)
    >>> check_key(ServeSettings(api_keys="k1"), "nope").status_code
    403
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from typing import Protocol

from fastapi import Request

from serving.config import ServeSettings
from serving.protocol import RequestError

__all__ = ["HasHeaders", "check_admin_key", "check_key", "key_from", "require_admin", "require_api_key"]


class HasHeaders(Protocol):
    """Anything with request headers: an HTTP request, or a gRPC call's metadata (lower-case keys)."""

    @property
    def headers(self) -> Mapping[str, str]:
        """The headers, looked up by lower-case name."""
        ...


def key_from(request: HasHeaders) -> str | None:
    """The key a request carries (``Authorization: Bearer`` or ``X-API-Key``), if any."""
    auth = request.headers.get("authorization")
    if auth:
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    key = request.headers.get("x-api-key")
    return key.strip() if key and key.strip() else None


def _matches(key: str, candidates: list[str]) -> bool:
    found = False
    for candidate in candidates:  # compare with every key: the time says nothing about which matched
        found |= hmac.compare_digest(key.encode(), candidate.encode())
    return found


def check_key(settings: ServeSettings, key: str | None) -> RequestError | None:
    """The error an inference request with ``key`` gets (None when it may pass)."""
    if not settings.api_keys:
        return None
    if key is None:
        return RequestError("an API key is required: send 'Authorization: Bearer <key>' or 'X-API-Key'", 401)
    allowed = [*settings.api_keys, *([settings.admin_key] if settings.admin_key else [])]
    if not _matches(key, allowed):
        return RequestError("the API key is not valid", 403)
    return None


def check_admin_key(settings: ServeSettings, key: str | None) -> RequestError | None:
    """The error an admin request with ``key`` gets (None when it may pass)."""
    if not settings.admin_key:
        return RequestError("the admin API is disabled: the server has no admin key configured", 403)
    if key is None:
        return RequestError("the admin key is required: send 'Authorization: Bearer <admin key>'", 401)
    if not _matches(key, [settings.admin_key]):
        return RequestError("the admin key is not valid", 403)
    return None


def _settings(request: Request) -> ServeSettings:
    settings: ServeSettings = request.app.state.settings
    return settings


def require_api_key(request: Request) -> None:
    """FastAPI dependency: an inference key when the server has keys."""
    error = check_key(_settings(request), key_from(request))
    if error is not None:
        raise error


def require_admin(request: Request) -> None:
    """FastAPI dependency: the admin key (guards every ``/admin`` route)."""
    error = check_admin_key(_settings(request), key_from(request))
    if error is not None:
        raise error
