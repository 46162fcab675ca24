"""Monitoring alerts: severity, de-duplication, resolution, and the health score.

An alert's fingerprint is its kind, model, version and subject (a column, a
metric): while an alert with that fingerprint is open, raising it again only
counts it and moves ``last_seen``, so the same drift on the same column does
not alert on every run. Raising and resolving are audited.

The health score (stated in docs/monitoring.md): 100, minus 20 per open
critical alert, minus 5 per open warning, minus up to 20 for poor performance,
up to 10 for high latency and up to 10 for a high error rate; never below 0.
:func:`health_breakdown` lists every deduction with its reason;
``storage.monitoring.health`` gathers the inputs of one model from the store.

Example:
    >>> import tempfile
    >>> from storage.registry.core import Registry
    >>> from storage.monitoring.alerts import AlertStore, health_score
    >>> home = tempfile.mkdtemp()
    >>> reg = Registry.open(f"sqlite:///{home}/m.db", f"{home}/a")
    >>> _ = reg.create_model("m"); _ = reg.create_version("m", framework="sklearn")
    >>> store = AlertStore(reg)
    >>> store.raise_alert("m", 1, kind="drift", severity="warning", subject="age", message="KS D=0.08").new
    True
    >>> store.raise_alert("m", 1, kind="drift", severity="warning", subject="age", message="KS D=0.09").new
    False
    >>> health_score(store.open_alerts("m"))
    95.0
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from storage import schema as t
from storage.audit import append_entry
from storage.db import inserted_id
from storage.errors import NotFoundError, ValidationError
from storage.registry.core import Registry
from storage.registry.reads import VersionRef
from storage.registry.records import Record

SEVERITIES = ("critical", "warning", "info")
OPEN, RESOLVED = "open", "resolved"


@dataclass(frozen=True)
class Alert(Record):
    """One alert: what, how bad, about which model version and subject, how often."""

    id: int
    model: str
    version: int | None
    kind: str
    severity: str
    subject: str
    message: str
    status: str
    count: int
    first_seen: datetime
    last_seen: datetime
    new: bool = False


def fingerprint(kind: str, model: str, version: int | None, subject: str) -> str:
    """The identity of an alert for de-duplication."""
    return hashlib.sha256(f"{kind}\x00{model}\x00{version}\x00{subject}".encode()).hexdigest()


@dataclass(frozen=True)
class Deduction:
    """Points taken off the health score, and why."""

    reason: str
    points: float
    detail: str


@dataclass(frozen=True)
class HealthScore:
    """A health score with the deductions that make it up (100 minus their sum, at least 0)."""

    score: float
    deductions: tuple[Deduction, ...]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {"score": self.score, "deductions": [asdict(d) for d in self.deductions]}


def health_breakdown(
    alerts: Sequence[Alert],
    *,
    performance_drop: float = 0.0,
    latency_ratio: float = 1.0,
    error_rate_ratio: float = 1.0,
) -> HealthScore:
    """100 − 20 per critical − 5 per warning − performance, latency and error-rate deductions.

    Args:
        alerts: The open alerts of a model (info alerts cost nothing).
        performance_drop: Relative drop of the primary metric against its reference
            (0.1 = 10% worse); costs up to 20 points (2 per percent).
        latency_ratio: p99 latency over its objective; above 1 costs up to 10 points
            (1 per tenth above).
        error_rate_ratio: Error rate over its objective; above 1 costs up to 10 points.

    Example:
        >>> h = health_breakdown([], latency_ratio=1.25, error_rate_ratio=3.0)
        >>> h.score, [(d.reason, d.points) for d in h.deductions]
        (87.5, [('latency', 2.5), ('error rate', 10.0)])
    """
    found: list[Deduction] = []
    for a in alerts:
        points = {"critical": 20.0, "warning": 5.0}.get(a.severity, 0.0)
        if points:
            found.append(Deduction(f"{a.severity} alert", points, f"{a.kind} {a.subject}: {a.message}"))
    performance = min(20.0, max(0.0, performance_drop) * 200)
    if performance > 0:
        found.append(Deduction("performance", performance, f"primary metric {performance_drop:.1%} worse"))
    latency = min(10.0, max(0.0, latency_ratio - 1.0) * 10)
    if latency > 0:
        found.append(Deduction("latency", latency, f"p99 latency at {latency_ratio:.2f}x its objective"))
    errors = min(10.0, max(0.0, error_rate_ratio - 1.0) * 10)
    if errors > 0:
        found.append(Deduction("error rate", errors, f"error rate at {error_rate_ratio:.2f}x its objective"))
    return HealthScore(max(0.0, 100.0 - sum(d.points for d in found)), tuple(found))


def health_score(
    alerts: Sequence[Alert],
    *,
    performance_drop: float = 0.0,
    latency_ratio: float = 1.0,
    error_rate_ratio: float = 1.0,
) -> float:
    """The score of :func:`health_breakdown`, without the breakdown."""
    return health_breakdown(
        alerts,
        performance_drop=performance_drop,
        latency_ratio=latency_ratio,
        error_rate_ratio=error_rate_ratio,
    ).score


class AlertStore:
    """Alerts in the registry's metadata database."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def raise_alert(
        self,
        model: str,
        version: VersionRef | None,
        *,
        kind: str,
        severity: str,
        subject: str,
        message: str,
    ) -> Alert:
        """Open an alert, or count a repeat of the open one with the same fingerprint."""
        if severity not in SEVERITIES:
            raise ValidationError(f"severity {severity!r} is not one of {', '.join(SEVERITIES)}")
        if not kind or not subject:
            raise ValidationError("an alert needs a kind and a subject")
        now = t.utcnow()
        a = t.alerts.c
        with self.registry.db.write() as conn:
            model_id = self.registry._model_id(conn, model, lock=True)
            version_id = (
                self.registry._version_id(conn, model_id, model, version) if version is not None else None
            )
            number = self.registry._number(conn, version_id) if version_id is not None else None
            key = fingerprint(kind, model, number, subject)
            found = conn.execute(sa.select(a.id).where(a.fingerprint == key, a.status == OPEN)).scalar()
            if found is not None:
                conn.execute(
                    t.alerts.update()
                    .where(a.id == found)
                    .values(count=a.count + 1, last_seen=now, message=message, severity=severity)
                )
                return self._load(conn, int(found), model, new=False)
            alert_id = inserted_id(
                conn,
                t.alerts.insert(),
                {
                    "model_id": model_id,
                    "version_id": version_id,
                    "kind": kind,
                    "severity": severity,
                    "subject": subject,
                    "message": message,
                    "fingerprint": key,
                    "status": OPEN,
                    "count": 1,
                    "first_seen": now,
                    "last_seen": now,
                },
            )
            append_entry(
                conn,
                actor="mlops",
                action="alert.raise",
                entity_type="model",
                entity_id=model,
                after={"alert": alert_id, "kind": kind, "severity": severity, "subject": subject},
            )
            return self._load(conn, alert_id, model, new=True)

    def resolve(self, alert_id: int, *, actor: str | None = None) -> Alert:
        """Close an alert (a later repeat opens a new one)."""
        a = t.alerts.c
        with self.registry.db.write() as conn:
            row = conn.execute(sa.select(t.alerts).where(a.id == alert_id)).first()
            if row is None:
                raise NotFoundError(f"alert {alert_id} does not exist")
            model = conn.execute(sa.select(t.models.c.name).where(t.models.c.id == row.model_id)).scalar_one()
            conn.execute(
                t.alerts.update().where(a.id == alert_id).values(status=RESOLVED, resolved_at=t.utcnow())
            )
            append_entry(
                conn,
                actor=actor or self.registry.actor,
                action="alert.resolve",
                entity_type="model",
                entity_id=model,
                after={"alert": alert_id},
            )
            return self._load(conn, alert_id, model)

    def resolve_cleared(
        self, model: str, version: int, *, kind: str, still_firing: Iterable[str], actor: str | None = None
    ) -> list[Alert]:
        """Resolve the version's open ``kind`` alerts whose subject a new check no longer finds.

        A check calls this after raising what it found, so an alert closes (and
        its routes get a resolution notice) once the condition clears.
        """
        firing = set(still_firing)
        cleared = [
            a
            for a in self.open_alerts(model)
            if a.kind == kind and a.version == version and a.subject not in firing
        ]
        return [self.resolve(a.id, actor=actor or "mlops") for a in cleared]

    def open_alerts(self, model: str | None = None) -> list[Alert]:
        """Open alerts, newest first (of one model, or all)."""
        return self.list(model=model, status=OPEN)

    def list(self, *, model: str | None = None, status: str | None = None, limit: int = 200) -> list[Alert]:
        """Alerts, newest first, filtered by model and status."""
        a = t.alerts.c
        query = (
            sa.select(t.alerts, t.models.c.name)
            .join(t.models, t.models.c.id == a.model_id)
            .order_by(a.id.desc())
            .limit(limit)
        )
        if model is not None:
            query = query.where(t.models.c.name == model)
        if status is not None:
            query = query.where(a.status == status)
        with self.registry.db.read() as conn:
            return [self._alert(conn, row, row.name) for row in conn.execute(query)]

    def _load(self, conn: Connection, alert_id: int, model: str, *, new: bool = False) -> Alert:
        row = conn.execute(sa.select(t.alerts).where(t.alerts.c.id == alert_id)).one()
        return self._alert(conn, row, model, new=new)

    def _alert(self, conn: Connection, row: Any, model: str, *, new: bool = False) -> Alert:
        number = self.registry._number(conn, row.version_id) if row.version_id is not None else None
        return Alert(
            row.id,
            model,
            number,
            row.kind,
            row.severity,
            row.subject,
            row.message,
            row.status,
            row.count,
            row.first_seen,
            row.last_seen,
            new,
        )
