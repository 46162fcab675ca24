"""Traffic policy changes of an endpoint: policy kind, shadow, canary, blue-green.

:class:`PoliciesMixin` switches the policy kind, sets the shadow variants and
their mirrored percentage, walks a canary through its plan (start, advance,
rollback, and analysis decisions that change nothing), and deploys and
switches blue-green slots. Each change runs in one write transaction with its
endpoint event and audit entry (see :class:`~storage.endpoints.base.EndpointBase`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from storage import schema as t
from storage.endpoints.base import EndpointBase
from storage.endpoints.records import (
    BLUE,
    CANARY,
    GREEN,
    SHADOW,
    STABLE,
    CanaryPlan,
    Endpoint,
    EndpointEvent,
    VariantSpec,
    check_percent,
    check_policy,
    check_spec,
)
from storage.errors import ValidationError


class PoliciesMixin(EndpointBase):
    """Policy changes of :class:`~storage.endpoints.store.EndpointStore`."""

    # -- policy kind and shadow ------------------------------------------------

    def set_shadow(
        self,
        name: str,
        shadows: Sequence[VariantSpec],
        percent: float,
        *,
        actor: str | None = None,
    ) -> Endpoint:
        """Replace the endpoint's shadow variants and the mirrored percentage."""
        specs = [check_spec(replace(s, role=SHADOW, weight=0.0)) for s in shadows]
        percent = check_percent(percent)
        with self.db.write() as conn:
            endpoint = self._load(conn, self._id(conn, name, lock=True))
            clash = {s.name for s in specs} & {v.name for v in endpoint.live}
            if clash:
                raise ValidationError(f"shadow variant names {sorted(clash)} are live variants of {name!r}")
            for old in endpoint.shadows:
                conn.execute(t.serving_variants.delete().where(t.serving_variants.c.id == old.id))
            for spec in specs:
                self._insert_variant(conn, endpoint.id, spec)
            self._update_settings(conn, endpoint, {"shadow_percent": percent})
            detail = {"percent": percent, "shadows": [f"{s.name}={s.model}:{s.version}" for s in specs]}
            return self._changed(conn, endpoint, "shadow.set", actor, detail)

    def set_policy(self, name: str, policy: str, *, actor: str | None = None) -> Endpoint:
        """Change the policy kind (the live variants must fit the new policy)."""
        with self.db.write() as conn:
            endpoint = self._load(conn, self._id(conn, name, lock=True))
            specs = [VariantSpec(v.name, v.model, v.version, v.weight, v.role) for v in endpoint.live]
            check_policy(policy, specs)
            conn.execute(
                t.serving_endpoints.update()
                .where(t.serving_endpoints.c.id == endpoint.id)
                .values(policy=policy)
            )
            return self._changed(conn, endpoint, "policy.set", actor, {"from": endpoint.policy, "to": policy})

    # -- canary ----------------------------------------------------------------

    def start_canary(
        self,
        name: str,
        model: str,
        version: str,
        plan: CanaryPlan | None = None,
        *,
        actor: str | None = None,
    ) -> Endpoint:
        """Start a canary: the top live variant becomes ``stable``, the new version ``canary`` at step 1."""
        plan = plan or CanaryPlan()
        spec = check_spec(VariantSpec(CANARY, model, version, 0.0))
        with self.db.write() as conn:
            endpoint = self._load(conn, self._id(conn, name, lock=True))
            current = endpoint.canary
            if current is not None and current.status == "running":
                raise ValidationError(f"endpoint {name!r} already runs a canary (step {current.step + 1})")
            stable = max(endpoint.live, key=lambda v: v.weight)
            for v in endpoint.live:
                conn.execute(t.serving_variants.delete().where(t.serving_variants.c.id == v.id))
            started = replace(plan, step=0, status="running", step_started_at=t.utcnow().isoformat())
            self._insert_variant(
                conn, endpoint.id, VariantSpec(STABLE, stable.model, stable.version, 100.0 - started.weight)
            )
            self._insert_variant(conn, endpoint.id, replace(spec, weight=started.weight))
            self._set_canary_state(conn, endpoint, started, policy="canary")
            detail = {
                "stable": f"{stable.model}:{stable.version}",
                "canary": f"{model}:{version}",
                "steps": list(started.steps),
                "weight": started.weight,
            }
            return self._changed(conn, endpoint, "canary.start", actor, detail)

    def advance_canary(
        self, name: str, *, actor: str | None = None, analysis: Mapping[str, Any] | None = None
    ) -> Endpoint:
        """Move the canary to its next step; after the last (100 %) the canary becomes stable."""
        with self.db.write() as conn:
            endpoint = self._load(conn, self._id(conn, name, lock=True))
            plan = self._running_plan(endpoint)
            if plan.step + 1 >= len(plan.steps):
                canary = endpoint.variant(CANARY)
                for v in endpoint.live:
                    conn.execute(t.serving_variants.delete().where(t.serving_variants.c.id == v.id))
                self._insert_variant(
                    conn, endpoint.id, VariantSpec(STABLE, canary.model, canary.version, 100.0)
                )
                done = replace(plan, status="completed", step_started_at=t.utcnow().isoformat())
                self._set_canary_state(conn, endpoint, done, policy="single")
                detail = {"promoted": f"{canary.model}:{canary.version}", "analysis": dict(analysis or {})}
                return self._changed(conn, endpoint, "canary.complete", actor, detail)
            moved = replace(plan, step=plan.step + 1, step_started_at=t.utcnow().isoformat())
            self._apply_weights(conn, endpoint, {CANARY: moved.weight, STABLE: 100.0 - moved.weight})
            self._set_canary_state(conn, endpoint, moved)
            step_detail: dict[str, Any] = {
                "step": moved.step + 1,
                "weight": moved.weight,
                "analysis": dict(analysis or {}),
            }
            return self._changed(conn, endpoint, "canary.advance", actor, step_detail)

    def rollback_canary(
        self, name: str, *, reason: str, actor: str | None = None, analysis: Mapping[str, Any] | None = None
    ) -> Endpoint:
        """Send all traffic back to ``stable``: the canary's weight becomes 0, recorded and audited."""
        with self.db.write() as conn:
            endpoint = self._load(conn, self._id(conn, name, lock=True))
            plan = self._running_plan(endpoint)
            self._apply_weights(conn, endpoint, {CANARY: 0.0, STABLE: 100.0})
            self._set_canary_state(conn, endpoint, replace(plan, status="rolled_back"))
            detail = {"step": plan.step + 1, "reason": reason, "analysis": dict(analysis or {})}
            return self._changed(conn, endpoint, "canary.rollback", actor, detail)

    def record_decision(
        self, name: str, decision: str, detail: Mapping[str, Any], *, actor: str | None = None
    ) -> EndpointEvent:
        """Record an analysis decision that changes nothing (e.g. ``hold``), audited."""
        with self.db.write() as conn:
            endpoint = self._load(conn, self._id(conn, name))
            return self._record(
                conn, endpoint, f"decision.{decision}", actor, before=None, detail=dict(detail)
            )

    # -- blue-green ------------------------------------------------------------

    def deploy_slot(
        self, name: str, colour: str, model: str, version: str, *, actor: str | None = None
    ) -> Endpoint:
        """Point the idle slot of a blue-green endpoint at a model version (the live slot is refused)."""
        endpoint = self.get(name)
        if endpoint.policy != "blue_green":
            raise ValidationError(f"endpoint {name!r} has policy {endpoint.policy!r}, not blue_green")
        if colour not in (BLUE, GREEN):
            raise ValidationError(f"slot {colour!r} must be 'blue' or 'green'")
        if colour == endpoint.live_colour:
            raise ValidationError(f"slot {colour!r} of {name!r} is live: deploy to the idle slot")
        return self.set_variant(
            name, VariantSpec(colour, model, version, 0.0), actor=actor, kind="slot.deploy"
        )

    def switch(self, name: str, *, to: str | None = None, actor: str | None = None) -> Endpoint:
        """Make the other (or the named) slot live; the previous colour is kept for switch-back."""
        with self.db.write() as conn:
            endpoint = self._load(conn, self._id(conn, name, lock=True))
            if endpoint.policy != "blue_green":
                raise ValidationError(f"endpoint {name!r} has policy {endpoint.policy!r}, not blue_green")
            live = endpoint.live_colour
            target = to or (GREEN if live == BLUE else BLUE)
            if target not in (BLUE, GREEN):
                raise ValidationError(f"slot {target!r} must be 'blue' or 'green'")
            if target == live:
                raise ValidationError(f"slot {target!r} of {name!r} is already live")
            self._apply_weights(conn, endpoint, {target: 100.0, str(live): 0.0})
            self._update_settings(conn, endpoint, {"live": target, "previous": live})
            return self._changed(conn, endpoint, "bluegreen.switch", actor, {"from": live, "to": target})

    def switch_back(self, name: str, *, actor: str | None = None) -> Endpoint:
        """Make the previous colour live again."""
        endpoint = self.get(name)
        previous = endpoint.settings.get("previous")
        if not previous:
            raise ValidationError(f"endpoint {name!r} has no previous colour to switch back to")
        return self.switch(name, to=previous, actor=actor)
