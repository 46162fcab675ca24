"""Alert routes: which alerts go to which Prefect notification block, and the log of every notice.

A route matches alerts by model (a glob: ``fraud*``), minimum severity
(``critical`` > ``warning`` > ``info``) and kinds (empty: every kind), and
names a saved Prefect notification block as ``<block-type-slug>/<name>``
(``slack-webhook/ops``, ``mlops-smtp-email/on-call``...), so the usual Prefect
set-up applies. Adding and removing routes is audited.

:meth:`AlertRouteStore.plan` decides what to send now, from the database
alone, and writes each notice as a ``pending`` row of the notification log
before anything is sent:

* ``firing`` — an open alert the route has not notified yet;
* ``repeat`` — an open alert last notified ``renotify_seconds`` ago or longer
  (never when the route has no re-notify interval);
* ``resolved`` — a resolved alert the route notified of, when the route
  sends resolution notices;
* a ``pending`` row nobody touched for ``stale_after`` seconds (its sender died)
  is planned again.

Each row's ``dedup_key`` is unique, so two processes planning at once never
send the same notice twice. The sender records each attempt
(:meth:`AlertRouteStore.record`): ``sent``, or ``failed`` with the last error.

Example:
    >>> import tempfile
    >>> from storage.registry.core import Registry
    >>> from storage.monitoring.alerts import AlertStore
    >>> home = tempfile.mkdtemp()
    >>> reg = Registry.open(f"sqlite:///{home}/m.db", f"{home}/a")
    >>> _ = reg.create_model("fraud"); _ = reg.create_version("fraud", framework="sklearn")
    >>> routes = AlertRouteStore(reg)
    >>> _ = routes.add("ops", "slack-webhook/ops", model="fraud*", min_severity="warning")
    >>> _ = AlertStore(reg).raise_alert("fraud", 1, kind="drift", severity="warning",
    ...                                 subject="age", message="KS")
    >>> [(p.notification.event, p.route.name, p.alert.subject) for p in routes.plan()]
    [('firing', 'ops', 'age')]
    >>> routes.plan()  # already planned: de-duplicated
    []
"""

from __future__ import annotations

import builtins
import fnmatch
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from storage import schema as t
from storage.audit import append_entry
from storage.db import inserted_id
from storage.errors import AlreadyExistsError, NotFoundError, ValidationError
from storage.monitoring.alerts import SEVERITIES, Alert, AlertStore
from storage.registry.core import Registry
from storage.registry.records import Record

__all__ = ["EVENTS", "AlertRoute", "AlertRouteStore", "Notification", "PlannedNotification"]

EVENTS = ("firing", "repeat", "resolved", "test")
STATUSES = ("pending", "sent", "failed")
_RANK = {"info": 0, "warning": 1, "critical": 2}


@dataclass(frozen=True)
class AlertRoute(Record):
    """Alerts of matching model, severity and kind go to one notification block."""

    id: int
    name: str
    block: str
    model: str
    min_severity: str
    kinds: tuple[str, ...]
    renotify_seconds: float | None
    notify_resolved: bool
    enabled: bool
    created_by: str
    created_at: datetime

    def matches(self, alert: Alert) -> bool:
        """Whether the route takes ``alert``."""
        return (
            fnmatch.fnmatchcase(alert.model, self.model)
            and _RANK.get(alert.severity, 0) >= _RANK[self.min_severity]
            and (not self.kinds or alert.kind in self.kinds)
        )


@dataclass(frozen=True)
class Notification(Record):
    """One notice of the log: to which route, about which alert, and how its delivery went."""

    id: int
    route_id: int | None
    route_name: str
    alert_id: int | None
    event: str
    status: str
    attempts: int
    error: str | None
    subject: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class PlannedNotification:
    """A notice to send: its log row, the route, and the alert (None for a test notice)."""

    notification: Notification
    route: AlertRoute
    alert: Alert | None


def _check_route(name: str, block: str, min_severity: str, renotify: float | None) -> None:
    if not name or len(name) > 128 or not name.replace("-", "").replace("_", "").isalnum():
        raise ValidationError(f"route name {name!r}: use 1-128 letters, digits, '-' or '_'")
    slug, _, block_name = block.partition("/")
    if not slug or not block_name:
        raise ValidationError(
            f"block {block!r} must name a saved Prefect block as <block-type-slug>/<name>, "
            "e.g. slack-webhook/ops"
        )
    if min_severity not in SEVERITIES:
        raise ValidationError(f"min severity {min_severity!r} is not one of {', '.join(SEVERITIES)}")
    if renotify is not None and not renotify > 0:
        raise ValidationError(f"re-notify interval must be above 0 seconds, not {renotify}")


class AlertRouteStore:
    """Alert routes and the notification log in the registry's metadata database."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    # ------------------------------------------------------------ routes
    def add(
        self,
        name: str,
        block: str,
        *,
        model: str = "*",
        min_severity: str = "warning",
        kinds: Sequence[str] = (),
        renotify_seconds: float | None = None,
        notify_resolved: bool = True,
        actor: str | None = None,
    ) -> AlertRoute:
        """Add a route (audited); a name already taken is an AlreadyExistsError."""
        _check_route(name, block, min_severity, renotify_seconds)
        who = actor or self.registry.actor
        values = {
            "name": name,
            "block": block,
            "model": model or "*",
            "min_severity": min_severity,
            "kinds": sorted(set(kinds)),
            "renotify_seconds": renotify_seconds,
            "notify_resolved": bool(notify_resolved),
            "enabled": True,
            "created_by": who,
            "created_at": t.utcnow(),
        }
        with self.registry.db.write() as conn:
            if conn.execute(sa.select(t.alert_routes.c.id).where(t.alert_routes.c.name == name)).first():
                raise AlreadyExistsError(f"alert route {name!r} already exists")
            route_id = inserted_id(conn, t.alert_routes.insert(), values)
            after = {k: v for k, v in values.items() if k not in ("created_at", "created_by")}
            append_entry(
                conn,
                actor=who,
                action="alert_route.add",
                entity_type="alert_route",
                entity_id=name,
                after=after,
            )
            return self._route(
                conn.execute(sa.select(t.alert_routes).where(t.alert_routes.c.id == route_id)).one()
            )

    def list(self) -> builtins.list[AlertRoute]:
        """Every route, by name."""
        with self.registry.db.read() as conn:
            rows = conn.execute(sa.select(t.alert_routes).order_by(t.alert_routes.c.name))
            return [self._route(row) for row in rows]

    def get(self, name: str) -> AlertRoute:
        """One route by name (NotFoundError when there is none)."""
        with self.registry.db.read() as conn:
            row = conn.execute(sa.select(t.alert_routes).where(t.alert_routes.c.name == name)).first()
        if row is None:
            raise NotFoundError(f"alert route {name!r} does not exist")
        return self._route(row)

    def remove(self, name: str, *, actor: str | None = None) -> AlertRoute:
        """Remove a route (audited); its notification log stays, with the route's name."""
        route = self.get(name)
        with self.registry.db.write() as conn:
            conn.execute(t.alert_routes.delete().where(t.alert_routes.c.id == route.id))
            append_entry(
                conn,
                actor=actor or self.registry.actor,
                action="alert_route.remove",
                entity_type="alert_route",
                entity_id=name,
                before={"block": route.block, "model": route.model, "min_severity": route.min_severity},
            )
        return route

    # ------------------------------------------------------------ planning
    def plan(
        self, now: datetime | None = None, *, stale_after: float = 300.0
    ) -> builtins.list[PlannedNotification]:
        """Write and return the notices due now (see the module docs)."""
        at = now or t.utcnow()
        routes = [r for r in self.list() if r.enabled]
        planned = self._reclaim_stale(at, stale_after, {r.id: r for r in routes})
        if not routes:
            return planned
        alerts = AlertStore(self.registry)
        open_alerts = alerts.list(status="open", limit=1000)
        resolved = alerts.list(status="resolved", limit=500)
        history = self._history([a.id for a in (*open_alerts, *resolved)])
        for route in routes:
            for alert in open_alerts:
                if not route.matches(alert):
                    continue
                sent = history.get((route.id, alert.id, "notified"), [])
                if not sent:
                    key, event = f"{route.id}:{alert.id}:firing", "firing"
                elif route.renotify_seconds and at - max(sent) >= timedelta(seconds=route.renotify_seconds):
                    key, event = f"{route.id}:{alert.id}:repeat:{len(sent)}", "repeat"
                else:
                    continue
                found = self._insert(route, alert, event, key, at)
                if found is not None:
                    planned.append(found)
            if not route.notify_resolved:
                continue
            for alert in resolved:
                if (
                    route.matches(alert)
                    and history.get((route.id, alert.id, "notified"))
                    and not history.get((route.id, alert.id, "resolved"))
                ):
                    found = self._insert(route, alert, "resolved", f"{route.id}:{alert.id}:resolved", at)
                    if found is not None:
                        planned.append(found)
        return planned

    def plan_test(self, name: str) -> PlannedNotification:
        """A ``test`` notice for route ``name`` (always planned, never de-duplicated)."""
        route = self.get(name)
        found = self._insert(route, None, "test", f"{route.id}:test:{uuid.uuid4().hex}", t.utcnow())
        assert found is not None
        return found

    def _history(self, alert_ids: Iterable[int]) -> dict[tuple[int, int, str], builtins.list[datetime]]:
        """(route, alert, 'notified' | 'resolved') -> when each such notice was planned."""
        ids = sorted(set(alert_ids))
        out: dict[tuple[int, int, str], builtins.list[datetime]] = {}
        if not ids:
            return out
        n = t.alert_notifications.c
        with self.registry.db.read() as conn:
            for start in range(0, len(ids), 500):
                rows = conn.execute(
                    sa.select(n.route_id, n.alert_id, n.event, n.created_at).where(
                        n.alert_id.in_(ids[start : start + 500]), n.route_id.is_not(None)
                    )
                )
                for row in rows:
                    group = "resolved" if row.event == "resolved" else "notified"
                    out.setdefault((row.route_id, row.alert_id, group), []).append(row.created_at)
        return out

    def _insert(
        self, route: AlertRoute, alert: Alert | None, event: str, key: str, at: datetime
    ) -> PlannedNotification | None:
        values = {
            "route_id": route.id,
            "route_name": route.name,
            "alert_id": None if alert is None else alert.id,
            "event": event,
            "dedup_key": key,
            "status": "pending",
            "attempts": 0,
            "error": None,
            "subject": "" if alert is None else f"{alert.kind} {alert.subject}",
            "created_at": at,
            "updated_at": at,
        }
        try:
            with self.registry.db.write() as conn:
                new_id = inserted_id(conn, t.alert_notifications.insert(), values)
        except IntegrityError:  # another process planned the same notice first
            return None
        return PlannedNotification(self._notification_row({**values, "id": new_id}), route, alert)

    def _reclaim_stale(
        self, at: datetime, stale_after: float, routes: dict[int, AlertRoute]
    ) -> builtins.list[PlannedNotification]:
        n = t.alert_notifications.c
        cutoff = at - timedelta(seconds=stale_after)
        with self.registry.db.read() as conn:
            rows = list(
                conn.execute(
                    sa.select(t.alert_notifications).where(n.status == "pending", n.updated_at < cutoff)
                )
            )
        found: builtins.list[PlannedNotification] = []
        alerts = {a.id: a for a in AlertStore(self.registry).list(limit=1000)} if rows else {}
        for row in rows:
            route = routes.get(row.route_id)
            if route is None:
                continue
            with self.registry.db.write() as conn:  # claim it: only one planner wins the row
                claimed = conn.execute(
                    t.alert_notifications.update()
                    .where(n.id == row.id, n.updated_at == row.updated_at, n.status == "pending")
                    .values(updated_at=at)
                ).rowcount
            if claimed == 1:
                found.append(
                    PlannedNotification(self._notification_row(row), route, alerts.get(row.alert_id))
                )
        return found

    # ------------------------------------------------------------ the log
    def record(self, notification_id: int, *, status: str, attempts: int, error: str | None = None) -> None:
        """Record a delivery attempt: ``pending`` (will retry), ``sent`` or ``failed``."""
        if status not in STATUSES:
            raise ValidationError(f"status {status!r} is not one of {', '.join(STATUSES)}")
        with self.registry.db.write() as conn:
            conn.execute(
                t.alert_notifications.update()
                .where(t.alert_notifications.c.id == notification_id)
                .values(status=status, attempts=attempts, error=error, updated_at=t.utcnow())
            )

    def notifications(
        self,
        *,
        route: str | None = None,
        alert_id: int | None = None,
        status: str | None = None,
        limit: int = 100,
    ) -> builtins.list[Notification]:
        """The notification log, newest first, filtered by route name, alert and status."""
        n = t.alert_notifications.c
        query = sa.select(t.alert_notifications).order_by(n.id.desc()).limit(limit)
        if route is not None:
            query = query.where(n.route_name == route)
        if alert_id is not None:
            query = query.where(n.alert_id == alert_id)
        if status is not None:
            query = query.where(n.status == status)
        with self.registry.db.read() as conn:
            return [self._notification_row(row) for row in conn.execute(query)]

    def get_notification(self, notification_id: int) -> Notification:
        """One row of the log."""
        with self.registry.db.read() as conn:
            row = conn.execute(
                sa.select(t.alert_notifications).where(t.alert_notifications.c.id == notification_id)
            ).first()
        if row is None:
            raise NotFoundError(f"notification {notification_id} does not exist")
        return self._notification_row(row)

    @staticmethod
    def _route(row: Any) -> AlertRoute:
        return AlertRoute(
            row.id,
            row.name,
            row.block,
            row.model,
            row.min_severity,
            tuple(row.kinds or ()),
            row.renotify_seconds,
            bool(row.notify_resolved),
            bool(row.enabled),
            row.created_by,
            row.created_at,
        )

    @staticmethod
    def _notification_row(row: Any) -> Notification:
        data: Any = row if isinstance(row, dict) else row._mapping
        return Notification(**{name: data.get(name) for name in Notification.__dataclass_fields__})
