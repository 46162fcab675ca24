"""The console's list queries: one statement per page, so a page costs the same at 10 or 10,000 models.

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
