"""API keys: create (the secret is shown once), list, revoke. Admins only."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from service.auth import Admin, Principal, Reader
from service.routes.common import Body
from storage.keys import ApiKeyStore

router = APIRouter(tags=["keys"])


class KeyIn(Body):
    owner: str
    role: str
    description: str = ""


def _keys(request: Request) -> ApiKeyStore:
    keys: ApiKeyStore = request.app.state.keys
    return keys


@router.post("/keys", status_code=201)
def create_key(request: Request, body: KeyIn, caller: Principal = Admin) -> dict[str, Any]:
    """A new key for ``owner`` with ``role``; the answer holds the secret, which is not stored."""
    secret, key = _keys(request).create(
        body.owner, body.role, actor=caller.owner, description=body.description
    )
    return key.to_dict() | {"key": secret}


@router.get("/keys")
def list_keys(request: Request, include_revoked: bool = False, caller: Principal = Admin) -> dict[str, Any]:
    """Every key (never a secret), newest first."""
    return {"items": [k.to_dict() for k in _keys(request).list(include_revoked=include_revoked)]}


@router.delete("/keys/{key_id}")
def revoke_key(request: Request, key_id: int, caller: Principal = Admin) -> dict[str, Any]:
    """Revoke a key: it opens nothing from now on."""
    return _keys(request).revoke(key_id, actor=caller.owner).to_dict()


@router.get("/whoami")
def whoami(caller: Principal = Reader) -> dict[str, Any]:
    """The caller's owner name and role (any valid key)."""
    return {"owner": caller.owner, "role": caller.role}
