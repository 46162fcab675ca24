"""The audit log's hash chain detects edits, deletions and reordering."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from storage.audit import AuditLog, append_entry
from storage.db import Database
from storage.schema import audit_log


def _write(db: Database, n: int) -> None:
    for i in range(n):
        with db.write() as conn:
            append_entry(
                conn,
                actor="ana",
                action="thing.do",
                entity_type="thing",
                entity_id=str(i),
                before={"i": i - 1},
                after={"i": i},
            )


def test_chain_verifies(db: Database) -> None:
    _write(db, 5)
    report = AuditLog(db).verify()
    assert (report.ok, report.checked) == (True, 5)
    assert [e.entity_id for e in AuditLog(db).entries(entity_type="thing")] == ["0", "1", "2", "3", "4"]


def test_edited_entry_is_named(db: Database) -> None:
    _write(db, 5)
    with db.engine.begin() as conn:
        conn.execute(audit_log.update().where(audit_log.c.seq == 3).values(actor="mallory"))
    report = AuditLog(db).verify()
    assert not report.ok and report.first_bad_seq == 3
    assert "audit entry 3" in report.problem and "edited" in report.problem


def test_deleted_entry_is_named(db: Database) -> None:
    _write(db, 5)
    with db.engine.begin() as conn:
        conn.execute(audit_log.delete().where(audit_log.c.seq == 2))
    report = AuditLog(db).verify()
    assert not report.ok and report.first_bad_seq == 2 and "missing" in report.problem


def test_deleted_last_entry_is_detected(db: Database) -> None:
    _write(db, 4)
    with db.engine.begin() as conn:
        conn.execute(audit_log.delete().where(audit_log.c.seq == 4))
    report = AuditLog(db).verify()
    assert not report.ok and report.first_bad_seq == 4


def test_reordered_entries_are_detected(db: Database) -> None:
    _write(db, 4)
    cols = ["at", "actor", "action", "entity_type", "entity_id", "before", "after", "prev_hash", "hash"]
    with db.engine.begin() as conn:
        rows = {r.seq: r for r in conn.execute(sa.select(audit_log))}
        for seq, other in ((2, 3), (3, 2)):
            conn.execute(
                audit_log.update()
                .where(audit_log.c.seq == seq)
                .values({c: getattr(rows[other], c) for c in cols})
            )
    report = AuditLog(db).verify()
    assert not report.ok and report.first_bad_seq == 2


def test_rolled_back_change_leaves_no_entry(db: Database) -> None:
    with pytest.raises(RuntimeError), db.write() as conn:
        append_entry(conn, actor="ana", action="x", entity_type="t", entity_id="1")
        raise RuntimeError("boom")
    _write(db, 1)
    assert [e.seq for e in AuditLog(db).entries()] == [1]
    assert AuditLog(db).verify().ok
