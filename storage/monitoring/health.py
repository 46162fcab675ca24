"""A model's health score from what the store holds: open alerts and the newest check reports.

:func:`model_health` feeds :func:`storage.monitoring.alerts.health_breakdown`
with every input, so no caller forgets one: the open alerts (of one version,
or of the whole model), the relative drop of the worst degraded metric in the
newest ``performance_check`` report, and the p99-latency and error-rate ratios
to their objectives in the newest ``operations_check`` report.

Example:
    >>> import tempfile
    >>> from storage.registry.core import Registry
    >>> from storage.governance.reports import ReportStore
    >>> home = tempfile.mkdtemp()
    >>> reg = Registry.open(f"sqlite:///{home}/m.db", f"{home}/a")
    >>> _ = reg.create_model("m"); _ = reg.create_version("m", framework="sklearn")
    >>> _ = ReportStore(reg).save("operations_check", "m", 1, passed=False, summary="slow",
    ...     payload={"latency_ratio": 1.5, "error_rate_ratio": 0.2})
    >>> h = model_health(reg, "m", 1)
    >>> h.score, [d.reason for d in h.deductions]
    (95.0, ['latency'])
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from storage import schema as t
from storage.monitoring.alerts import AlertStore, HealthScore, health_breakdown
from storage.registry.core import Registry

__all__ = ["model_health", "newest_payload", "performance_drop"]


def newest_payload(registry: Registry, kind: str, model: str, version: int | None = None) -> dict[str, Any]:
    """The payload of the newest report of ``kind`` for a version (or any version); {} if none."""
    r = t.evidence_reports.c
    query = (
        sa.select(r.payload)
        .join(t.models, t.models.c.id == r.model_id)
        .where(t.models.c.name == model, r.kind == kind)
        .order_by(r.id.desc())
        .limit(1)
    )
    if version is not None:
        query = query.join(t.model_versions, t.model_versions.c.id == r.version_id).where(
            t.model_versions.c.number == version
        )
    with registry.db.read() as conn:
        found = conn.execute(query).scalar()
    return dict(found or {})


def performance_drop(payload: dict[str, Any]) -> float:
    """The largest relative drop among a performance check's degraded findings (0 when none)."""
    worst = 0.0
    for finding in payload.get("findings", []):
        if finding.get("kind") != "degraded":
            continue
        ref, observed = finding.get("reference"), finding.get("observed")
        if isinstance(ref, int | float) and isinstance(observed, int | float) and ref:
            worst = max(worst, abs(float(observed) - float(ref)) / abs(float(ref)))
    return worst


def model_health(registry: Registry, model: str, version: int | None = None) -> HealthScore:
    """The health score of a version (or of the model: all open alerts, newest reports)."""
    alerts = [
        a for a in AlertStore(registry).open_alerts(model) if version is None or a.version in (None, version)
    ]
    operations = newest_payload(registry, "operations_check", model, version)
    return health_breakdown(
        alerts,
        performance_drop=performance_drop(newest_payload(registry, "performance_check", model, version)),
        latency_ratio=float(operations.get("latency_ratio") or 1.0),
        error_rate_ratio=float(operations.get("error_rate_ratio") or 1.0),
    )
