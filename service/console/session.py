"""Console sessions: the key in an http-only cookie, and a form token bound to it.

The API never reads the cookie (it takes keys from headers only), so a page
from another site cannot call the API with a console session; console forms
carry ``csrf_token`` = HMAC(server secret, session key), checked on every POST.

Example:
    >>> csrf_token(b"secret", "mlops_abc") == csrf_token(b"secret", "mlops_abc")
    True
    >>> csrf_token(b"secret", "mlops_abc") == csrf_token(b"other", "mlops_abc")
    False
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

from fastapi import Request

from service.auth import Principal
from service.errors import Forbidden, ServiceError
from storage.keys import ApiKeyStore, allowed

COOKIE = "mlops_console"


class LoginRequired(ServiceError):
    """No console session: the page answers with a redirect to the login page."""

    status = 303


def csrf_token(secret: bytes, session_key: str) -> str:
    """The form token of one session."""
    return hmac.new(secret, session_key.encode("utf-8"), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Session:
    """The signed-in person: key owner, role, and the token their forms carry."""

    principal: Principal
    csrf: str

    @property
    def owner(self) -> str:
        return self.principal.owner

    @property
    def role(self) -> str:
        return self.principal.role

    def can(self, permission: str) -> bool:
        """Whether the role grants ``permission`` (templates show or hide buttons with it)."""
        return allowed(self.principal.role, permission)

    def context(self) -> dict[str, Any]:
        return {"session": self}


def current_session(request: Request) -> Session:
    """FastAPI dependency for pages: the session, or a redirect to ``/login``."""
    secret = request.cookies.get(COOKIE)
    if not secret:
        raise LoginRequired("sign in first")
    keys: ApiKeyStore = request.app.state.keys
    key = keys.authenticate(secret)
    if key is None:
        raise LoginRequired("the key of this session is no longer valid")
    token = csrf_token(request.app.state.console_secret, secret)
    return Session(Principal(key.owner, key.role, key.id), token)


def check_csrf(session: Session, token: str | None) -> None:
    """Refuse a form whose token is missing or belongs to another session."""
    if not token or not hmac.compare_digest(token, session.csrf):
        raise Forbidden("the form's token does not match this session: reload the page and try again")


def require_role(session: Session, permission: str) -> None:
    """Refuse an action the session's role does not grant, naming the role."""
    if not session.can(permission):
        raise Forbidden(f"role {session.role!r} of {session.owner!r} may not {permission}")
