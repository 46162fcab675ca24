"""A tamper-evident, append-only audit log.

Every entry stores the SHA-256 of the previous entry, so editing, deleting or
reordering any row breaks the chain at that row. A one-row head table holds the
newest sequence number and hash, which also catches a deleted last entry, and
serialises writers on PostgreSQL (``SELECT ... FOR UPDATE``).

Entries are appended inside the caller's transaction: the change and its audit
record commit together or not at all.

Example:
    >>> from storage.db import Database, Prepared
    >>> from storage.audit import AuditLog, append_entry
    >>> db = Database("sqlite:///:memory:")
    >>> with db.write() as conn:
    ...     _ = append_entry(conn, actor="ana", action="model.create",
    ...                      entity_type="model", entity_id="fraud", after={"name": "fraud"})
    >>> AuditLog(db).verify().ok
    True
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from storage.db import Database, Prepared
from storage.errors import ValidationError
from storage.schema import audit_head, audit_log, utcnow

GENESIS_HASH = "0" * 64
_HEAD_FOR_UPDATE = Prepared(
    sa.select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == 1).with_for_update()
)
_MOVE_HEAD = Prepared(
    audit_head.update()
    .where(audit_head.c.id == 1)
    .values(seq=sa.bindparam("new_seq"), hash=sa.bindparam("new_hash"))
)
_INSERT = Prepared(
    audit_log.insert(),
    ["seq", "at", "actor", "action", "entity_type", "entity_id", "before", "after", "prev_hash", "hash"],
)


@dataclass(frozen=True)
class AuditEntry:
    """One audit record: who did what to which entity, before and after."""

    seq: int
    at: str
    actor: str
    action: str
    entity_type: str
    entity_id: str
    before: Any
    after: Any
    prev_hash: str
    hash: str

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary."""
        return dict(self.__dict__)


@dataclass(frozen=True)
class AuditReport:
    """Result of checking the chain: ``ok``, entries checked, the first bad one."""

    ok: bool
    checked: int
    first_bad_seq: int | None = None
    problem: str = ""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary."""
        return dict(self.__dict__)


def _canonical(value: Any) -> str | None:
    if value is None:
        return None
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str, ensure_ascii=False)


def entry_hash(
    seq: int,
    at: str,
    actor: str,
    action: str,
    entity_type: str,
    entity_id: str,
    before: str | None,
    after: str | None,
    prev_hash: str,
) -> str:
    """SHA-256 over an entry's stored fields and the previous entry's hash."""
    payload = json.dumps(
        [seq, at, actor, action, entity_type, entity_id, before, after, prev_hash],
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def append_entry(
    conn: Connection,
    *,
    actor: str,
    action: str,
    entity_type: str,
    entity_id: str,
    before: Any = None,
    after: Any = None,
) -> int:
    """Append one entry inside the caller's write transaction; returns its ``seq``."""
    prev_seq, prev_hash = _HEAD_FOR_UPDATE.execute(conn).fetchone()
    seq = prev_seq + 1
    at = utcnow().isoformat(timespec="microseconds")
    before_s, after_s = _canonical(before), _canonical(after)
    digest = entry_hash(seq, at, actor, action, entity_type, entity_id, before_s, after_s, prev_hash)
    row = {
        "seq": seq,
        "at": at,
        "actor": actor,
        "action": action,
        "entity_type": entity_type,
        "entity_id": entity_id,
        "before": before_s,
        "after": after_s,
        "prev_hash": prev_hash,
        "hash": digest,
    }
    _INSERT.execute(conn, row)
    _MOVE_HEAD.execute(conn, {"new_seq": seq, "new_hash": digest})
    return seq


def _to_entry(row: Any) -> AuditEntry:
    return AuditEntry(
        seq=row.seq,
        at=row.at,
        actor=row.actor,
        action=row.action,
        entity_type=row.entity_type,
        entity_id=row.entity_id,
        before=json.loads(row.before) if row.before is not None else None,
        after=json.loads(row.after) if row.after is not None else None,
        prev_hash=row.prev_hash,
        hash=row.hash,
    )


class AuditLog:
    """Read and verify the audit log of one metadata database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def entries(
        self,
        *,
        entity_type: str | None = None,
        entity_id: str | None = None,
        action: str | None = None,
        after_seq: int = 0,
        limit: int = 100,
    ) -> list[AuditEntry]:
        """Entries in order, filtered, starting after ``after_seq``."""
        if not isinstance(limit, int) or not 1 <= limit <= 100_000:
            raise ValidationError(f"limit {limit!r} must be between 1 and 100000")
        query = sa.select(audit_log).where(audit_log.c.seq > after_seq)
        if entity_type is not None:
            query = query.where(audit_log.c.entity_type == entity_type)
        if entity_id is not None:
            query = query.where(audit_log.c.entity_id == entity_id)
        if action is not None:
            query = query.where(audit_log.c.action == action)
        query = query.order_by(audit_log.c.seq).limit(limit)
        with self.db.read() as conn:
            return [_to_entry(row) for row in conn.execute(query)]

    def _rows(self, conn: Connection, batch: int = 5000) -> Iterator[Any]:
        last = 0
        while True:
            rows = conn.execute(
                sa.select(audit_log).where(audit_log.c.seq > last).order_by(audit_log.c.seq).limit(batch)
            ).all()
            if not rows:
                return
            yield from rows
            last = rows[-1].seq

    def verify(self) -> AuditReport:
        """Recompute the chain; report the first entry that was edited, deleted or moved."""
        with self.db.read() as conn:
            prev_seq, prev_hash, checked = 0, GENESIS_HASH, 0
            for row in self._rows(conn):
                label = f"audit entry {row.seq} ({row.action} {row.entity_type} {row.entity_id!r})"
                if row.seq != prev_seq + 1:
                    return AuditReport(
                        False, checked, prev_seq + 1, f"audit entry {prev_seq + 1} is missing (deleted)"
                    )
                if row.prev_hash != prev_hash:
                    return AuditReport(
                        False,
                        checked,
                        row.seq,
                        f"{label} does not follow entry {prev_seq}: deleted, reordered or edited",
                    )
                digest = entry_hash(
                    row.seq,
                    row.at,
                    row.actor,
                    row.action,
                    row.entity_type,
                    row.entity_id,
                    row.before,
                    row.after,
                    row.prev_hash,
                )
                if digest != row.hash:
                    return AuditReport(
                        False, checked, row.seq, f"{label} was edited: its content no longer matches its hash"
                    )
                prev_seq, prev_hash, checked = row.seq, row.hash, checked + 1
            head = conn.execute(sa.select(audit_head).where(audit_head.c.id == 1)).one()
            if head.seq != prev_seq or head.hash != prev_hash:
                return AuditReport(
                    False,
                    checked,
                    prev_seq + 1,
                    f"the log ends at entry {prev_seq} but {head.seq} were written: entries were deleted",
                )
        return AuditReport(True, checked)
