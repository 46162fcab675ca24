"""API keys of the platform service: owners, roles, hashed at rest, revocable.

A key is ``mlops_`` followed by 32 random bytes in URL-safe base64; only its
SHA-256 is stored (with an 8-character prefix to tell keys apart in a list),
so a stolen database opens nothing. Each key has an owner, recorded as the
actor of every change made with it, and one role:

==============  ==============================================================
``reader``      reads everything
``contributor`` reads; creates models and versions, uploads files, sets tags,
                requests approvals
``reviewer``    reads; approves and rejects requests
``admin``       everything: stage and alias moves, endpoints, erasure, keys
==============  ==============================================================

Creating and revoking a key is audited.

Example:
    >>> from storage.db import Database
    >>> keys = ApiKeyStore(Database("sqlite:///:memory:"))
    >>> secret, info = keys.create("ana", "reviewer", actor="root")
    >>> keys.authenticate(secret).owner, info.role
    ('ana', 'reviewer')
    >>> allowed("reviewer", "approve"), allowed("reader", "approve")
    (True, False)
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from storage import schema as t
from storage.audit import append_entry
from storage.db import Database, Prepared
from storage.errors import NotFoundError, ValidationError

KEY_PREFIX = "mlops_"
ROLES = ("reader", "contributor", "reviewer", "admin")

#: What each role may do; ``admin`` may do everything.
PERMISSIONS: dict[str, frozenset[str]] = {
    "reader": frozenset({"read"}),
    "contributor": frozenset({"read", "write", "request"}),
    "reviewer": frozenset({"read", "approve"}),
    "admin": frozenset({"read", "write", "request", "approve", "admin"}),
}


def allowed(role: str, permission: str) -> bool:
    """Whether ``role`` grants ``permission`` (``read``, ``write``, ``request``, ``approve``, ``admin``)."""
    return permission in PERMISSIONS.get(role, frozenset())


def hash_key(secret: str) -> str:
    """The stored form of a key: its SHA-256 hex digest."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ApiKey:
    """A key as listed: never the secret itself."""

    id: int
    prefix: str
    owner: str
    role: str
    description: str
    created_by: str
    created_at: datetime
    revoked_at: datetime | None

    @property
    def active(self) -> bool:
        """Whether the key still opens the service."""
        return self.revoked_at is None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary."""
        return {
            "id": self.id,
            "prefix": self.prefix,
            "owner": self.owner,
            "role": self.role,
            "description": self.description,
            "created_by": self.created_by,
            "created_at": self.created_at.isoformat(),
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
            "active": self.active,
        }


def _row_to_key(row: Any) -> ApiKey:
    return ApiKey(
        id=row.id,
        prefix=row.prefix,
        owner=row.owner,
        role=row.role,
        description=row.description,
        created_by=row.created_by,
        created_at=row.created_at,
        revoked_at=row.revoked_at,
    )


def _check_owner(owner: str) -> str:
    if not isinstance(owner, str) or not owner.strip() or len(owner) > 200:
        raise ValidationError(f"key owner {owner!r} must be a non-empty name of at most 200 characters")
    if any(ord(c) < 32 for c in owner):
        raise ValidationError(f"key owner {owner!r} contains a control character")
    return owner.strip()


def _timestamp(value: Any) -> datetime:
    """A UTC timestamp read as text (SQLite, through the raw cursor) or as a datetime."""
    if isinstance(value, str):
        return datetime.fromisoformat(value).replace(tzinfo=UTC)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


_KEY_COLUMNS = ("id", "key_hash", "prefix", "owner", "role", "description", "created_by", "created_at")
_BY_HASH = Prepared(
    sa.select(*(t.api_keys.c[name] for name in (*_KEY_COLUMNS, "revoked_at"))).where(
        t.api_keys.c.key_hash == sa.bindparam("key_hash")
    )
)


class ApiKeyStore:
    """API keys in the metadata database.

    Args:
        db: The metadata database.
    """

    def __init__(self, db: Database) -> None:
        self.db = db

    def create(self, owner: str, role: str, *, actor: str, description: str = "") -> tuple[str, ApiKey]:
        """Make a key for ``owner`` with ``role``; returns the secret (shown once) and the key."""
        owner = _check_owner(owner)
        if role not in ROLES:
            raise ValidationError(f"role {role!r} is not one of {', '.join(ROLES)}")
        secret = KEY_PREFIX + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
        now = t.utcnow()
        k = t.api_keys.c
        with self.db.write() as conn:
            key_id = conn.execute(
                t.api_keys.insert()
                .values(
                    key_hash=hash_key(secret),
                    prefix=secret[len(KEY_PREFIX) : len(KEY_PREFIX) + 8],
                    owner=owner,
                    role=role,
                    description=description,
                    created_by=actor,
                    created_at=now,
                    revoked_at=None,
                )
                .returning(k.id)
            ).scalar_one()
            append_entry(
                conn,
                actor=actor,
                action="key.create",
                entity_type="api_key",
                entity_id=str(key_id),
                after={"owner": owner, "role": role, "description": description},
            )
            row = conn.execute(sa.select(t.api_keys).where(k.id == key_id)).one()
        return secret, _row_to_key(row)

    def authenticate(self, secret: str) -> ApiKey | None:
        """The active key with this secret, or None (a wrong or revoked key)."""
        if not secret or not secret.startswith(KEY_PREFIX) or len(secret) > 200:
            return None
        digest = hash_key(secret)
        # Every request of the service runs this: a statement compiled once, run on the
        # DB-API cursor (0.03 ms here, against 0.25-0.4 ms through a fresh select).
        with self.db.read() as conn:
            row = _BY_HASH.execute(conn, {"key_hash": digest}).fetchone()
        if row is None:
            return None
        key_id, key_hash, prefix, owner, role, description, created_by, created_at, revoked_at = row
        if revoked_at is not None:
            return None
        if not hmac.compare_digest(key_hash, digest):  # the index lookup is not constant time
            return None
        return ApiKey(key_id, prefix, owner, role, description, created_by, _timestamp(created_at), None)

    def list(self, *, include_revoked: bool = False) -> list[ApiKey]:
        """Every key, newest first."""
        k = t.api_keys.c
        query = sa.select(t.api_keys).order_by(k.id.desc())
        if not include_revoked:
            query = query.where(k.revoked_at.is_(None))
        with self.db.read() as conn:
            return [_row_to_key(row) for row in conn.execute(query)]

    def revoke(self, key_id: int, *, actor: str) -> ApiKey:
        """Revoke a key (idempotent); it opens nothing from now on."""
        k = t.api_keys.c
        with self.db.write() as conn:
            row = conn.execute(sa.select(t.api_keys).where(k.id == key_id)).one_or_none()
            if row is None:
                raise NotFoundError(f"API key {key_id} does not exist")
            if row.revoked_at is None:
                conn.execute(t.api_keys.update().where(k.id == key_id).values(revoked_at=t.utcnow()))
                append_entry(
                    conn,
                    actor=actor,
                    action="key.revoke",
                    entity_type="api_key",
                    entity_id=str(key_id),
                    before={"owner": row.owner, "role": row.role},
                )
            row = conn.execute(sa.select(t.api_keys).where(k.id == key_id)).one()
        return _row_to_key(row)
