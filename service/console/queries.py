"""The console's list queries: a few statements per page, so a page costs the same at 10 or 10,000 models.

Example:
    >>> import tempfile
    >>> from storage.registry.core import Registry
    >>> home = tempfile.mkdtemp()
    >>> reg = Registry.open(f"sqlite:///{home}/m.db", f"{home}/a")
    >>> _ = reg.create_model("fraud"); _ = reg.create_version("fraud", framework="sklearn")
    >>> rows, total = model_rows(reg.db, search="fra", sort="name", page=1)
    >>> rows[0]["name"], rows[0]["latest_version"], total
    ('fraud', 1, 1)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from storage import schema as t
from storage.db import Database
from storage.registry.approvals import ApprovalRequest, GateOutcome, ReviewDecision

PAGE_SIZE = 50
SORTS = {
    "name": "name",
    "latest": "latest_version",
    "changed": "last_change",
    "approvals": "open_approvals",
    "alerts": "open_alerts",
    "health": "health",
}


@dataclass(frozen=True)
class ModelSort:
    """A sort key of the models page and its direction."""

    key: str = "name"
    descending: bool = False

    @classmethod
    def parse(cls, text: str | None) -> ModelSort:
        """``"-changed"`` → by last change, newest first; unknown keys sort by name."""
        text = (text or "name").strip()
        descending = text.startswith("-")
        key = text.lstrip("-")
        return cls(key if key in SORTS else "name", descending)


def model_rows(
    db: Database, *, search: str = "", sort: str | None = None, page: int = 1
) -> tuple[list[dict[str, Any]], int]:
    """One page of the models list with versions, production, approvals, alerts and health; and the total."""
    m, mv, a, r, al = t.models.c, t.model_versions.c, t.aliases.c, t.approval_requests.c, t.alerts.c
    latest = (
        sa.select(sa.func.max(mv.number)).where(mv.model_id == m.id).correlate(t.models).scalar_subquery()
    )
    production = (
        sa.select(sa.func.max(mv.number))
        .where(mv.model_id == m.id, mv.stage == "production")
        .correlate(t.models)
        .scalar_subquery()
    )
    champion = (
        sa.select(mv.number)
        .join(t.aliases, a.version_id == mv.id)
        .where(a.model_id == m.id, a.alias == "champion")
        .correlate(t.models)
        .scalar_subquery()
    )
    last_change = (
        sa.select(sa.func.max(mv.stage_updated_at))
        .where(mv.model_id == m.id)
        .correlate(t.models)
        .scalar_subquery()
    )
    approvals = (
        sa.select(sa.func.count())
        .where(r.model_id == m.id, r.status == "pending")
        .correlate(t.models)
        .scalar_subquery()
    )
    critical = (
        sa.select(sa.func.count())
        .where(al.model_id == m.id, al.status == "open", al.severity == "critical")
        .correlate(t.models)
        .scalar_subquery()
    )
    warning = (
        sa.select(sa.func.count())
        .where(al.model_id == m.id, al.status == "open", al.severity == "warning")
        .correlate(t.models)
        .scalar_subquery()
    )
    inner = sa.select(
        m.name.label("name"),
        m.description.label("description"),
        m.updated_at.label("updated_at"),
        latest.label("latest_version"),
        production.label("production_version"),
        champion.label("champion_version"),
        sa.func.coalesce(last_change, m.updated_at).label("last_change"),
        approvals.label("open_approvals"),
        critical.label("critical_alerts"),
        warning.label("warning_alerts"),
    )
    if search:
        inner = inner.where(m.name.contains(search, autoescape=True))
    sub = inner.subquery()
    open_alerts = (sub.c.critical_alerts + sub.c.warning_alerts).label("open_alerts")
    deducted = 100 - 20 * sub.c.critical_alerts - 5 * sub.c.warning_alerts
    health = sa.case((deducted < 0, 0), else_=deducted)  # the score of storage.monitoring.alerts.health_score
    order = ModelSort.parse(sort)
    columns = {**{c.name: c for c in sub.c}, "open_alerts": open_alerts, "health": health}
    key = columns[SORTS[order.key]]
    query = (
        sa.select(sub, open_alerts, health.label("health"))
        .order_by(key.desc() if order.descending else key.asc(), sub.c.name)
        .limit(PAGE_SIZE)
        .offset(max(page - 1, 0) * PAGE_SIZE)
    )
    count = sa.select(sa.func.count()).select_from(t.models)
    if search:
        count = count.where(m.name.contains(search, autoescape=True))
    with db.read() as conn:
        rows = [dict(row._mapping) for row in conn.execute(query)]
        total = int(conn.execute(count).scalar_one())
    return rows, total


def approval_requests(
    db: Database,
    *,
    status: str | None = None,
    exclude_status: str | None = None,
    model: str | None = None,
    oldest_first: bool = False,
    limit: int = 50,
) -> list[ApprovalRequest]:
    """Approval requests with their gates and decisions in three statements (not three per request)."""
    r, m, mv = t.approval_requests.c, t.models.c, t.model_versions.c
    query = (
        sa.select(t.approval_requests, m.name.label("model_name"), mv.number.label("version_number"))
        .join(t.models, m.id == r.model_id)
        .join(t.model_versions, mv.id == r.version_id)
    )
    if status is not None:
        query = query.where(r.status == status)
    if exclude_status is not None:
        query = query.where(r.status != exclude_status)
    if model:
        query = query.where(m.name == model)
    query = query.order_by(r.id.asc() if oldest_first else r.id.desc()).limit(limit)
    g, d = t.gate_results.c, t.approval_decisions.c
    with db.read() as conn:
        rows = conn.execute(query).all()
        ids = [row.id for row in rows]
        gates: dict[int, list[GateOutcome]] = {i: [] for i in ids}
        decisions: dict[int, list[ReviewDecision]] = {i: [] for i in ids}
        if ids:
            for gate in conn.execute(sa.select(t.gate_results).where(g.request_id.in_(ids)).order_by(g.id)):
                gates[gate.request_id].append(GateOutcome(gate.name, gate.passed, gate.detail))
            found = conn.execute(sa.select(t.approval_decisions).where(d.request_id.in_(ids)).order_by(d.id))
            for one in found:
                decisions[one.request_id].append(
                    ReviewDecision(one.reviewer, one.decision, one.comment, one.at)
                )
    return [
        ApprovalRequest(
            id=row.id,
            model=row.model_name,
            version=row.version_number,
            target_stage=row.target_stage,
            requested_by=row.requested_by,
            reason=row.reason,
            required_approvals=row.required_approvals,
            allowed_roles=list(row.allowed_roles),
            allow_self_approval=row.allow_self_approval,
            alias=row.alias,
            status=row.status,
            outcome=row.outcome,
            flow_run_id=row.flow_run_id,
            created_at=row.created_at,
            expires_at=row.expires_at,
            decided_at=row.decided_at,
            gates=gates[row.id],
            decisions=decisions[row.id],
        )
        for row in rows
    ]
