"""The rows of one endpoint: reads, variant and weight changes, and how every change is recorded.

:class:`EndpointBase` loads endpoints with their variants and event history,
changes live variants and their weights, and holds the connection-level steps
every change shares: locking an endpoint by name, writing variant rows,
weights and settings, and :meth:`EndpointBase._changed`, which bumps the
endpoint's ``revision`` and records the change as an endpoint event with its
audit entry in the same transaction. The policy and measurement mixins build
on it; :class:`~storage.endpoints.store.EndpointStore` puts them together.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from storage import schema as t
from storage.audit import append_entry
from storage.db import Database, inserted_id
from storage.endpoints.records import (
    LIVE,
    CanaryPlan,
    Endpoint,
    EndpointEvent,
    Variant,
    VariantSpec,
    audit_summary,
    check_spec,
    check_weight,
)
from storage.errors import NotFoundError, ValidationError


class EndpointBase:
    """Endpoints in the metadata database: reads, variant changes and the shared write steps.

    Args:
        db: The metadata database.
        actor: Name recorded on changes when a call does not name one.
    """

    def __init__(self, db: Database, *, actor: str = "unknown") -> None:
        self.db = db
        self.actor = actor

    # -- reads -----------------------------------------------------------------

    def get(self, name: str) -> Endpoint:
        """One endpoint by name."""
        with self.db.read() as conn:
            return self._load(conn, self._id(conn, name))

    def list(self) -> builtins.list[Endpoint]:
        """Every endpoint, by name."""
        with self.db.read() as conn:
            ids = conn.execute(sa.select(t.serving_endpoints.c.id).order_by(t.serving_endpoints.c.name))
            return [self._load(conn, int(i)) for i in ids.scalars()]

    def revisions(self) -> dict[str, int]:
        """Each endpoint's revision by name (cheap: routers poll it)."""
        e = t.serving_endpoints.c
        with self.db.read() as conn:
            return {row.name: row.revision for row in conn.execute(sa.select(e.name, e.revision))}

    def events(
        self, name: str, *, kind: str | None = None, limit: int = 1000
    ) -> builtins.list[EndpointEvent]:
        """Recorded steps and decisions of an endpoint, oldest first."""
        ev = t.serving_events.c
        with self.db.read() as conn:
            endpoint_id = self._id(conn, name)
            query = sa.select(t.serving_events).where(ev.endpoint_id == endpoint_id)
            if kind is not None:
                query = query.where(ev.kind == kind)
            rows = conn.execute(query.order_by(ev.id).limit(limit))
            return [EndpointEvent(r.id, name, r.at, r.kind, r.actor, dict(r.detail)) for r in rows]

    # -- variant changes -------------------------------------------------------

    def set_weights(
        self, name: str, weights: Mapping[str, float], *, actor: str | None = None, reason: str = ""
    ) -> Endpoint:
        """Set live variant weights (percent); variants not named keep theirs."""
        with self.db.write() as conn:
            endpoint = self._load(conn, self._id(conn, name, lock=True))
            self._apply_weights(conn, endpoint, weights)
            return self._changed(
                conn, endpoint, "traffic.set", actor, {"weights": dict(weights), "reason": reason}
            )

    def set_variant(
        self,
        name: str,
        spec: VariantSpec,
        *,
        actor: str | None = None,
        kind: str = "variant.set",
    ) -> Endpoint:
        """Add a variant, or point an existing one at another model version (weight and role as given)."""
        spec = check_spec(spec)
        with self.db.write() as conn:
            endpoint = self._load(conn, self._id(conn, name, lock=True))
            self._upsert_variant(conn, endpoint.id, spec)
            return self._changed(
                conn,
                endpoint,
                kind,
                actor,
                {"variant": spec.name, "model": spec.model, "version": spec.version, "weight": spec.weight},
            )

    def remove_variant(self, name: str, variant: str, *, actor: str | None = None) -> Endpoint:
        """Remove a variant (not the last live one)."""
        with self.db.write() as conn:
            endpoint = self._load(conn, self._id(conn, name, lock=True))
            target = endpoint.variant(variant)
            rest = [v for v in endpoint.live if v.name != variant]
            if target.role == LIVE and (not rest or sum(v.weight for v in rest) <= 0):
                raise ValidationError(f"variant {variant!r} is the only one taking traffic on {name!r}")
            conn.execute(t.serving_variants.delete().where(t.serving_variants.c.id == target.id))
            return self._changed(conn, endpoint, "variant.remove", actor, {"variant": variant})

    # -- internals -------------------------------------------------------------

    def _id(self, conn: Connection, name: str, *, lock: bool = False) -> int:
        query = sa.select(t.serving_endpoints.c.id).where(t.serving_endpoints.c.name == name)
        if lock:
            query = query.with_for_update()
        found = conn.execute(query).scalar()
        if found is None:
            raise NotFoundError(f"endpoint {name!r} does not exist")
        return int(found)

    def _ids(self, conn: Connection, names: set[str]) -> dict[str, int]:
        e = t.serving_endpoints.c
        return {r.name: r.id for r in conn.execute(sa.select(e.name, e.id).where(e.name.in_(sorted(names))))}

    def _load(self, conn: Connection, endpoint_id: int) -> Endpoint:
        row = conn.execute(
            sa.select(t.serving_endpoints).where(t.serving_endpoints.c.id == endpoint_id)
        ).one()
        v = t.serving_variants.c
        variants = tuple(
            Variant(r.id, r.name, r.model, r.version, float(r.weight), r.role)
            for r in conn.execute(
                sa.select(t.serving_variants).where(v.endpoint_id == endpoint_id).order_by(v.id)
            )
        )
        return Endpoint(
            row.id,
            row.name,
            row.policy,
            row.revision,
            variants,
            dict(row.settings),
            row.created_by,
            row.created_at,
            row.updated_at,
        )

    def _insert_variant(self, conn: Connection, endpoint_id: int, spec: VariantSpec) -> None:
        conn.execute(
            t.serving_variants.insert(),
            {
                "endpoint_id": endpoint_id,
                "name": spec.name,
                "model": spec.model,
                "version": spec.version,
                "weight": spec.weight,
                "role": spec.role,
            },
        )

    def _upsert_variant(self, conn: Connection, endpoint_id: int, spec: VariantSpec) -> None:
        v = t.serving_variants.c
        found = conn.execute(
            sa.select(v.id).where(v.endpoint_id == endpoint_id, v.name == spec.name)
        ).scalar()
        if found is None:
            self._insert_variant(conn, endpoint_id, spec)
            return
        conn.execute(
            t.serving_variants.update()
            .where(v.id == found)
            .values(model=spec.model, version=spec.version, weight=spec.weight, role=spec.role)
        )

    def _apply_weights(self, conn: Connection, endpoint: Endpoint, weights: Mapping[str, float]) -> None:
        live = {v.name: v for v in endpoint.live}
        unknown = sorted(set(weights) - set(live))
        if unknown:
            raise ValidationError(
                f"endpoint {endpoint.name!r} has no live variants {unknown} (live: {sorted(live)})"
            )
        checked = {k: check_weight(k, w) for k, w in weights.items()}
        total = sum(checked.get(n, v.weight) for n, v in live.items())
        if total <= 0:
            raise ValidationError(
                f"weights {dict(weights)} leave no live variant taking traffic on {endpoint.name!r}"
            )
        for variant, weight in checked.items():
            conn.execute(
                t.serving_variants.update()
                .where(t.serving_variants.c.id == live[variant].id)
                .values(weight=weight)
            )

    def _update_settings(self, conn: Connection, endpoint: Endpoint, changes: Mapping[str, Any]) -> None:
        settings = {**endpoint.settings, **changes}
        conn.execute(
            t.serving_endpoints.update()
            .where(t.serving_endpoints.c.id == endpoint.id)
            .values(settings=settings)
        )

    def _set_canary_state(
        self, conn: Connection, endpoint: Endpoint, plan: CanaryPlan, *, policy: str | None = None
    ) -> None:
        current = conn.execute(
            sa.select(t.serving_endpoints.c.settings).where(t.serving_endpoints.c.id == endpoint.id)
        ).scalar_one()
        values: dict[str, Any] = {"settings": {**dict(current), "canary": plan.to_dict()}}
        if policy is not None:
            values["policy"] = policy
        conn.execute(
            t.serving_endpoints.update().where(t.serving_endpoints.c.id == endpoint.id).values(**values)
        )

    @staticmethod
    def _running_plan(endpoint: Endpoint) -> CanaryPlan:
        plan = endpoint.canary
        if endpoint.policy != "canary" or plan is None or plan.status != "running":
            raise ValidationError(f"endpoint {endpoint.name!r} has no running canary")
        return plan

    def _changed(
        self, conn: Connection, before: Endpoint, kind: str, actor: str | None, detail: Mapping[str, Any]
    ) -> Endpoint:
        e = t.serving_endpoints.c
        conn.execute(
            t.serving_endpoints.update()
            .where(e.id == before.id)
            .values(revision=e.revision + 1, updated_at=t.utcnow())
        )
        after = self._load(conn, before.id)
        self._record(conn, after, kind, actor, before=before, detail=dict(detail))
        return after

    def _record(
        self,
        conn: Connection,
        endpoint: Endpoint,
        kind: str,
        actor: str | None,
        *,
        before: Endpoint | None,
        detail: dict[str, Any],
    ) -> EndpointEvent:
        who = actor or self.actor
        now = t.utcnow()
        event_id = inserted_id(
            conn,
            t.serving_events.insert(),
            {"endpoint_id": endpoint.id, "at": now, "kind": kind, "actor": who, "detail": detail},
        )
        append_entry(
            conn,
            actor=who,
            action=kind,
            entity_type="endpoint",
            entity_id=endpoint.name,
            before=audit_summary(before) if before is not None else None,
            after={**audit_summary(endpoint), "event": event_id, "detail": detail},
        )
        return EndpointEvent(event_id, endpoint.name, now, kind, who, detail)
