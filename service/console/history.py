"""History queries of the console: health per day, stored check reports over time, the audit log page.

Health over time is rebuilt from the alerts table (an alert counts on every
day it was open: from ``first_seen`` until ``resolved_at``) with the score of
:func:`storage.monitoring.alerts.health_score` (100, minus 20 per open
critical alert, minus 5 per warning, at least 0); the performance and latency
parts of that score are not stored per day, so they are left out. Drift and
performance per window are the ``drift_check`` and ``performance_check``
reports the monitoring flows store, one per checked window.

Example:
    >>> from datetime import date, datetime
    >>> spans = [("critical", datetime(2026, 1, 2, 9), None),
    ...          ("warning", datetime(2026, 1, 1), datetime(2026, 1, 2))]
    >>> [(str(d), s) for d, s in daily_health(spans, date(2026, 1, 1), date(2026, 1, 3))]
    [('2026-01-01', 95.0), ('2026-01-02', 80.0), ('2026-01-03', 80.0)]
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import sqlalchemy as sa

from storage import schema as t
from storage.db import Database
from storage.monitoring.alerts import OPEN, Alert

CHECK_KINDS = ("drift_check", "performance_check")
AUDIT_PAGE = 50


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def daily_health(
    spans: Iterable[tuple[str, datetime, datetime | None]], first: date, last: date
) -> list[tuple[date, float]]:
    """The health score at the end of each day from ``first`` to ``last``.

    Args:
        spans: ``(severity, opened, resolved or None)`` of each alert.
        first: The first day.
        last: The last day (today's score is the score now).
    """
    alerts = [(s, _aware(o), _aware(r)) for s, o, r in spans]
    out = []
    day = first
    while day <= last:
        end = datetime.combine(day + timedelta(days=1), time(), tzinfo=UTC)
        open_then = [
            s
            for s, opened, resolved in alerts
            if opened and opened < end and (resolved is None or resolved >= end)
        ]
        score = 100.0 - 20 * open_then.count("critical") - 5 * open_then.count("warning")
        out.append((day, max(0.0, score)))
        day += timedelta(days=1)
    return out


def health_history(db: Database, model: str, days: int = 30) -> list[tuple[date, float]]:
    """Health per day of ``model`` over the last ``days`` days (from its alerts)."""
    a, m = t.alerts.c, t.models.c
    today = datetime.now(UTC).date()
    first = today - timedelta(days=days - 1)
    start = datetime.combine(first, time(), tzinfo=UTC)
    query = (
        sa.select(a.severity, a.first_seen, a.resolved_at)
        .join(t.models, m.id == a.model_id)
        .where(m.name == model, sa.or_(a.resolved_at.is_(None), a.resolved_at >= start))
    )
    with db.read() as conn:
        spans = [(r.severity, r.first_seen, r.resolved_at) for r in conn.execute(query)]
    return daily_health(spans, first, today)


@dataclass(frozen=True)
class CheckRow:
    """One stored check of one window."""

    kind: str
    version: int
    at: datetime
    passed: bool
    summary: str
    payload: dict[str, Any]


def check_history(db: Database, model: str, limit: int = 200) -> list[CheckRow]:
    """The newest ``limit`` drift and performance checks of ``model``, oldest first."""
    r, m, mv = t.evidence_reports.c, t.models.c, t.model_versions.c
    query = (
        sa.select(r.kind, mv.number, r.created_at, r.passed, r.summary, r.payload)
        .join(t.models, m.id == r.model_id)
        .join(t.model_versions, mv.id == r.version_id)
        .where(m.name == model, r.kind.in_(CHECK_KINDS))
        .order_by(r.id.desc())
        .limit(limit)
    )
    with db.read() as conn:
        rows = [
            CheckRow(
                row.kind, row.number, row.created_at, bool(row.passed), row.summary, dict(row.payload or {})
            )
            for row in conn.execute(query)
        ]
    return rows[::-1]


def monitored_models(db: Database, limit: int = 500) -> list[str]:
    """Models with alerts or stored checks, by name."""
    m, a, r = t.models.c, t.alerts.c, t.evidence_reports.c
    with_alerts = sa.select(a.model_id)
    with_checks = sa.select(r.model_id).where(r.kind.in_(CHECK_KINDS))
    query = (
        sa.select(m.name)
        .where(sa.or_(m.id.in_(with_alerts), m.id.in_(with_checks)))
        .order_by(m.name)
        .limit(limit)
    )
    with db.read() as conn:
        return [str(name) for name in conn.execute(query).scalars()]


@dataclass(frozen=True)
class AuditFilter:
    """The audit page's filters (empty strings mean any)."""

    entity_type: str = ""
    entity_id: str = ""
    action: str = ""
    actor: str = ""

    def where(self) -> list[Any]:
        c = t.audit_log.c
        clauses = []
        for column, value in (
            (c.entity_type, self.entity_type),
            (c.entity_id, self.entity_id),
            (c.action, self.action),
            (c.actor, self.actor),
        ):
            if value:
                clauses.append(column == value)
        return clauses


def audit_page(
    db: Database, filters: AuditFilter, *, before: int | None = None, limit: int = AUDIT_PAGE
) -> tuple[list[dict[str, Any]], int | None]:
    """Entries newest first below sequence ``before``, and the next page's ``before`` (None at the end)."""
    c = t.audit_log.c
    query = sa.select(t.audit_log).where(*filters.where())
    if before is not None:
        query = query.where(c.seq < before)
    query = query.order_by(c.seq.desc()).limit(limit + 1)
    with db.read() as conn:
        rows = list(conn.execute(query))
    more = len(rows) > limit
    rows = rows[:limit]
    entries = [
        {
            "seq": row.seq,
            "at": row.at,
            "actor": row.actor,
            "action": row.action,
            "entity_type": row.entity_type,
            "entity_id": row.entity_id,
            "before": row.before,
            "after": row.after,
            "hash": row.hash,
        }
        for row in rows
    ]
    return entries, (rows[-1].seq if more and rows else None)


def audit_choices(db: Database) -> dict[str, list[str]]:
    """The entity types and actions present, for the filter form's suggestions."""
    c = t.audit_log.c
    with db.read() as conn:
        types = [
            str(v)
            for v in conn.execute(sa.select(c.entity_type).distinct().order_by(c.entity_type)).scalars()
        ]
        actions = [str(v) for v in conn.execute(sa.select(c.action).distinct().order_by(c.action)).scalars()]
    return {"entity_types": types, "actions": actions}


def open_alerts(db: Database, limit: int = 500) -> list[Alert]:
    """Open alerts of every model, newest first, in one statement (version numbers joined in)."""
    a, m, mv = t.alerts.c, t.models.c, t.model_versions.c
    query = (
        sa.select(t.alerts, m.name.label("model_name"), mv.number.label("version_number"))
        .join(t.models, m.id == a.model_id)
        .outerjoin(t.model_versions, mv.id == a.version_id)
        .where(a.status == OPEN)
        .order_by(a.id.desc())
        .limit(limit)
    )
    with db.read() as conn:
        rows = conn.execute(query).all()
    return [
        Alert(
            r.id,
            r.model_name,
            r.version_number,
            r.kind,
            r.severity,
            r.subject,
            r.message,
            r.status,
            r._mapping["count"],  # not Row.count, the tuple method
            r.first_seen,
            r.last_seen,
        )
        for r in rows
    ]
