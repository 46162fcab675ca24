"""Evidence reports about model versions (bias, compliance), stored for gates and audits.

A report records whether a check passed, a one-line summary and the full
result as JSON. Promotion gates read the newest report of a kind for a
version; every report written is audited.

Example:
    >>> import tempfile
    >>> from storage.registry.core import Registry
    >>> from storage.governance.reports import ReportStore
    >>> home = tempfile.mkdtemp()
    >>> reg = Registry.open(f"sqlite:///{home}/m.db", f"{home}/a", actor="ana")
    >>> _ = reg.create_model("m"); _ = reg.create_version("m", framework="sklearn")
    >>> store = ReportStore(reg)
    >>> _ = store.save("bias_report", "m", 1, passed=True, summary="all groups within 0.1")
    >>> store.latest("bias_report", "m", 1).summary
    'all groups within 0.1'
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from storage import schema as t
from storage.audit import append_entry
from storage.db import inserted_id
from storage.errors import ValidationError
from storage.registry.core import Registry
from storage.registry.reads import VersionRef
from storage.registry.records import Record
from storage.validation import check_json

_KIND = re.compile(r"^[a-z][a-z0-9_]*(:[A-Za-z0-9_.\- ]+)?$")


@dataclass(frozen=True)
class StoredReport(Record):
    """One stored report: its kind, verdict, summary, full payload and when."""

    id: int
    kind: str
    model: str
    version: int
    passed: bool
    summary: str
    payload: dict[str, Any]
    created_by: str
    created_at: datetime


class ReportStore:
    """Evidence reports in the registry's metadata database."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def save(
        self,
        kind: str,
        model: str,
        version: VersionRef,
        *,
        passed: bool,
        summary: str,
        payload: Mapping[str, Any] | None = None,
        actor: str | None = None,
        created_at: datetime | None = None,
    ) -> StoredReport:
        """Store a report of ``kind`` (``bias_report``, ``compliance:GDPR``...) for a version."""
        if not isinstance(kind, str) or not _KIND.match(kind):
            raise ValidationError(f"report kind {kind!r} is invalid: e.g. 'bias_report' or 'compliance:GDPR'")
        body = check_json("report payload", dict(payload or {}))
        who = actor or self.registry.actor
        at = created_at or t.utcnow()
        with self.registry.db.write() as conn:
            model_id = self.registry._model_id(conn, model)
            version_id = self.registry._version_id(conn, model_id, model, version)
            number = self.registry._number(conn, version_id)
            report_id = inserted_id(
                conn,
                t.evidence_reports.insert(),
                {
                    "kind": kind,
                    "model_id": model_id,
                    "version_id": version_id,
                    "passed": bool(passed),
                    "summary": summary,
                    "payload": body,
                    "created_by": who,
                    "created_at": at,
                },
            )
            append_entry(
                conn,
                actor=who,
                action="report.save",
                entity_type="model_version",
                entity_id=f"{model}/{number}",
                after={"kind": kind, "passed": bool(passed), "summary": summary},
            )
        return StoredReport(report_id, kind, model, number, bool(passed), summary, body, who, at)

    def latest(self, kind: str, model: str, version: VersionRef) -> StoredReport | None:
        """The newest report of ``kind`` for a version, or None."""
        r = t.evidence_reports.c
        with self.registry.db.read() as conn:
            model_id = self.registry._model_id(conn, model)
            version_id = self.registry._version_id(conn, model_id, model, version)
            row = conn.execute(
                sa.select(t.evidence_reports)
                .where(r.version_id == version_id, r.kind == kind)
                .order_by(r.id.desc())
                .limit(1)
            ).first()
            if row is None:
                return None
            number = self.registry._number(conn, version_id)
        return StoredReport(
            row.id,
            row.kind,
            model,
            number,
            row.passed,
            row.summary,
            row.payload,
            row.created_by,
            row.created_at,
        )
