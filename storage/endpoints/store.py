"""Serving endpoints and their traffic policies, stats, outcomes and events.

An endpoint is a name clients call; its *variants* are (name, model, version
reference, weight) and its *policy* says how traffic is split:

* ``single``: one live variant.
* ``ab``: weighted live variants, assignment sticky by a hashed request key.
* ``canary``: a ``stable`` and a ``canary`` variant; the canary's weight walks
  through the plan's steps (default 5 → 25 → 50 → 100 %).
* ``shadow``: one live variant; shadow variants get a copy of a percentage of
  requests, their answers are logged but never returned.
* ``blue_green``: two slots ``blue`` and ``green``; the live colour gets all
  traffic, the previous colour is kept for an instant switch-back.

Shadow variants (role ``shadow``) may be added to any policy. Every change
runs in one write transaction with its audit entry and an endpoint event, and
bumps the endpoint's ``revision`` so routers notice it.

Routers flush per-variant request counts, errors and latency histograms as
``serving_stats`` rows (one per replica and flush, with the time the first
request counted in it was observed); readers add them up over the rows that
started inside a window, so a canary step never counts the step before.

Example:
    >>> from storage.db import Database
    >>> from storage.endpoints.store import EndpointStore, VariantSpec
    >>> store = EndpointStore(Database("sqlite:///:memory:"), actor="ana")
    >>> ep = store.create("fraud", [VariantSpec("a", "fraud", "1", 50), VariantSpec("b", "fraud", "2", 50)],
    ...                   policy="ab")
    >>> [(v.name, v.weight) for v in ep.live]
    [('a', 50.0), ('b', 50.0)]
    >>> store.set_weights("fraud", {"a": 90, "b": 10}).weights()
    {'a': 90.0, 'b': 10.0}
    >>> [e.kind for e in store.events("fraud")]
    ['endpoint.create', 'traffic.set']
"""

from __future__ import annotations

import builtins
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from storage import schema as t
from storage.audit import append_entry
from storage.db import Database, inserted_id
from storage.endpoints.traffic import LatencyHistogram, StatsRow, VariantStats
from storage.errors import AlreadyExistsError, NotFoundError, ValidationError
from storage.registry.records import Record
from storage.validation import check_name

POLICIES = ("single", "ab", "canary", "shadow", "blue_green")
LIVE, SHADOW = "live", "shadow"
DEFAULT_CANARY_STEPS = (5, 25, 50, 100)
STABLE, CANARY = "stable", "canary"
BLUE, GREEN = "blue", "green"

__all__ = [
    "BLUE",
    "CANARY",
    "DEFAULT_CANARY_STEPS",
    "GREEN",
    "POLICIES",
    "STABLE",
    "CanaryPlan",
    "Endpoint",
    "EndpointEvent",
    "EndpointStore",
    "LatencyHistogram",
    "StatsRow",
    "Variant",
    "VariantSpec",
    "VariantStats",
]


@dataclass(frozen=True)
class VariantSpec:
    """A variant to create: name, model, version reference, weight (percent), role."""

    name: str
    model: str
    version: str
    weight: float = 100.0
    role: str = LIVE


@dataclass(frozen=True)
class Variant(Record):
    """A stored variant of an endpoint."""

    id: int
    name: str
    model: str
    version: str
    weight: float
    role: str


@dataclass(frozen=True)
class CanaryPlan(Record):
    """A canary plan and its state.

    Attributes:
        steps: Canary weights in percent, increasing, ending at 100.
        max_error_rate_diff: Largest allowed canary error rate minus stable error rate.
        max_p99_ratio: Largest allowed canary p99 latency over stable p99 latency.
        min_requests: Requests the canary needs at a step before it is judged.
        step: Index of the current step (-1 before the first).
        status: ``running``, ``completed``, ``rolled_back`` or ``idle``.
        step_started_at: ISO time the current step began (stats are read from then).
    """

    steps: tuple[int, ...] = DEFAULT_CANARY_STEPS
    max_error_rate_diff: float = 0.02
    max_p99_ratio: float = 1.5
    min_requests: int = 20
    step: int = -1
    status: str = "idle"
    step_started_at: str | None = None

    def __post_init__(self) -> None:
        steps = tuple(int(s) for s in self.steps)
        if not steps or any(not 0 < s <= 100 for s in steps) or list(steps) != sorted(set(steps)):
            raise ValidationError(f"canary steps {list(self.steps)} must increase within 1..100")
        if steps[-1] != 100:
            raise ValidationError(f"canary steps {list(steps)} must end at 100")
        if not self.max_error_rate_diff >= 0 or not self.max_p99_ratio > 0 or self.min_requests < 0:
            raise ValidationError(
                "canary thresholds must be max_error_rate_diff >= 0, max_p99_ratio > 0, min_requests >= 0"
            )
        object.__setattr__(self, "steps", steps)

    @property
    def weight(self) -> float:
        """The canary weight of the current step (0 before the first step or after a rollback)."""
        if self.status == "rolled_back" or self.step < 0:
            return 0.0
        return float(self.steps[min(self.step, len(self.steps) - 1)])

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CanaryPlan:
        """Read a plan from its stored JSON form."""
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        if "steps" in known:
            known["steps"] = tuple(known["steps"])
        return cls(**known)


@dataclass(frozen=True)
class Endpoint(Record):
    """An endpoint with its policy, variants and policy settings."""

    id: int
    name: str
    policy: str
    revision: int
    variants: tuple[Variant, ...]
    settings: dict[str, Any]
    created_by: str
    created_at: datetime
    updated_at: datetime

    @property
    def live(self) -> tuple[Variant, ...]:
        """Variants that answer requests (in creation order)."""
        return tuple(v for v in self.variants if v.role == LIVE)

    @property
    def shadows(self) -> tuple[Variant, ...]:
        """Variants that get mirrored copies of requests."""
        return tuple(v for v in self.variants if v.role == SHADOW)

    @property
    def shadow_percent(self) -> float:
        """Percentage of requests mirrored to the shadow variants."""
        return float(self.settings.get("shadow_percent", 0.0))

    @property
    def canary(self) -> CanaryPlan | None:
        """The canary plan, for a canary endpoint."""
        data = self.settings.get("canary")
        return CanaryPlan.from_json(data) if data else None

    @property
    def live_colour(self) -> str | None:
        """The live slot of a blue-green endpoint."""
        return self.settings.get("live")

    def variant(self, name: str) -> Variant:
        """One variant by name."""
        for v in self.variants:
            if v.name == name:
                return v
        raise NotFoundError(f"endpoint {self.name!r} has no variant {name!r}")

    def weights(self) -> dict[str, float]:
        """Live variant weights by name."""
        return {v.name: v.weight for v in self.live}


@dataclass(frozen=True)
class EndpointEvent(Record):
    """One recorded step or decision on an endpoint."""

    id: int
    endpoint: str
    at: datetime
    kind: str
    actor: str
    detail: dict[str, Any]


def _check_weight(name: str, weight: float) -> float:
    value = float(weight)
    if not math.isfinite(value) or not 0 <= value <= 100:
        raise ValidationError(f"variant {name!r} weight {weight!r} must be between 0 and 100 (percent)")
    return value


_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")


def _check_label(name: str, kind: str) -> str:
    if not isinstance(name, str) or not _LABEL.match(name):
        raise ValidationError(f"{kind} name {name!r} is invalid: use letters, digits, '_', '-', '.' (max 64)")
    return name


def _check_spec(spec: VariantSpec) -> VariantSpec:
    _check_label(spec.name, "variant")
    check_name("model", spec.model)
    version = str(spec.version).strip()
    if not version:
        raise ValidationError(f"variant {spec.name!r} needs a version reference (a number, @alias or stage)")
    if spec.role not in (LIVE, SHADOW):
        raise ValidationError(f"variant {spec.name!r} role {spec.role!r} must be 'live' or 'shadow'")
    return replace(spec, version=version, weight=_check_weight(spec.name, spec.weight))


def _check_percent(percent: float) -> float:
    value = float(percent)
    if not math.isfinite(value) or not 0 <= value <= 100:
        raise ValidationError(f"shadow percent {percent!r} must be between 0 and 100")
    return value


def _check_policy(policy: str, live: Sequence[VariantSpec]) -> None:
    if policy not in POLICIES:
        raise ValidationError(f"policy {policy!r} is not one of {', '.join(POLICIES)}")
    names = [v.name for v in live]
    if not live:
        raise ValidationError("an endpoint needs at least one live variant")
    if policy in ("single", "shadow") and len(live) != 1:
        raise ValidationError(f"policy {policy!r} takes exactly one live variant, got {names}")
    if policy == "ab" and len(live) < 2:
        raise ValidationError(f"policy 'ab' takes two or more live variants, got {names}")
    if policy == "canary" and sorted(names) != [CANARY, STABLE]:
        raise ValidationError(f"policy 'canary' takes live variants 'stable' and 'canary', got {names}")
    if policy == "blue_green" and sorted(names) != [BLUE, GREEN]:
        raise ValidationError(f"policy 'blue_green' takes live variants 'blue' and 'green', got {names}")
    if policy != "blue_green" and sum(v.weight for v in live) <= 0:
        raise ValidationError(f"the live variants' weights add up to 0: {names}")


class EndpointStore:
    """Endpoints in the metadata database.

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

    # -- changes ---------------------------------------------------------------

    def create(
        self,
        name: str,
        variants: Sequence[VariantSpec],
        *,
        policy: str = "single",
        shadow_percent: float = 0.0,
        canary: CanaryPlan | None = None,
        actor: str | None = None,
    ) -> Endpoint:
        """Create an endpoint with its variants.

        For ``blue_green`` the first live variant's colour is live unless
        weights say otherwise; the other slot gets weight 0.
        """
        _check_label(name, "endpoint")
        specs = [_check_spec(v) for v in variants]
        if len({s.name for s in specs}) != len(specs):
            raise ValidationError(f"endpoint {name!r} has duplicate variant names: {[s.name for s in specs]}")
        live = [s for s in specs if s.role == LIVE]
        _check_policy(policy, live)
        settings: dict[str, Any] = {"shadow_percent": _check_percent(shadow_percent)}
        if policy == "blue_green":
            colour = max(live, key=lambda s: s.weight).name
            settings.update(live=colour, previous=None)
            specs = [
                replace(s, weight=100.0 if s.name == colour else 0.0) if s.role == LIVE else s for s in specs
            ]
        if policy == "canary":
            plan = canary or CanaryPlan()
            settings["canary"] = plan.to_dict()
            specs = [
                replace(s, weight=plan.weight if s.name == CANARY else 100.0 - plan.weight)
                if s.role == LIVE
                else s
                for s in specs
            ]
        now = t.utcnow()
        with self.db.write() as conn:
            taken = conn.execute(
                sa.select(t.serving_endpoints.c.id).where(t.serving_endpoints.c.name == name)
            ).first()
            if taken is not None:
                raise AlreadyExistsError(f"endpoint {name!r} already exists")
            endpoint_id = inserted_id(
                conn,
                t.serving_endpoints.insert(),
                {
                    "name": name,
                    "policy": policy,
                    "settings": settings,
                    "revision": 1,
                    "created_by": actor or self.actor,
                    "created_at": now,
                    "updated_at": now,
                },
            )
            for spec in specs:
                self._insert_variant(conn, endpoint_id, spec)
            created = self._load(conn, endpoint_id)
            self._record(conn, created, "endpoint.create", actor, before=None, detail={"policy": policy})
            return self._load(conn, endpoint_id)

    def delete(self, name: str, *, actor: str | None = None) -> None:
        """Remove an endpoint with its stats, outcomes and events (audited)."""
        with self.db.write() as conn:
            endpoint = self._load(conn, self._id(conn, name, lock=True))
            conn.execute(t.serving_endpoints.delete().where(t.serving_endpoints.c.id == endpoint.id))
            append_entry(
                conn,
                actor=actor or self.actor,
                action="endpoint.delete",
                entity_type="endpoint",
                entity_id=name,
                before=_summary(endpoint),
            )

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
        spec = _check_spec(spec)
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

    def set_shadow(
        self,
        name: str,
        shadows: Sequence[VariantSpec],
        percent: float,
        *,
        actor: str | None = None,
    ) -> Endpoint:
        """Replace the endpoint's shadow variants and the mirrored percentage."""
        specs = [_check_spec(replace(s, role=SHADOW, weight=0.0)) for s in shadows]
        percent = _check_percent(percent)
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
            _check_policy(policy, specs)
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
        spec = _check_spec(VariantSpec(CANARY, model, version, 0.0))
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

    # -- stats and outcomes ----------------------------------------------------

    def flush_stats(self, rows: Iterable[StatsRow]) -> int:
        """Store counters flushed by a router; rows of unknown endpoints are dropped. Returns rows stored."""
        rows = [r for r in rows if r.requests > 0]
        if not rows:
            return 0
        now = t.utcnow()
        with self.db.write() as conn:
            ids = self._ids(conn, {r.endpoint for r in rows})
            values = [
                {
                    "endpoint_id": ids[r.endpoint],
                    "variant": r.variant,
                    "replica": r.replica,
                    "window_start": r.window_start or now,
                    "window_end": now,
                    "requests": r.requests,
                    "errors": r.errors,
                    "latency_sum_ms": r.latency_sum_ms,
                    "latency_hist": {str(k): v for k, v in r.latency_hist.items()},
                }
                for r in rows
                if r.endpoint in ids
            ]
            if values:
                conn.execute(t.serving_stats.insert(), values)
            return len(values)

    def stats(self, name: str, *, since: datetime | None = None) -> dict[str, VariantStats]:
        """Per-variant totals of every replica's flushed counters that started at or after ``since``."""
        s = t.serving_stats.c
        with self.db.read() as conn:
            endpoint_id = self._id(conn, name)
            query = sa.select(s.variant, s.requests, s.errors, s.latency_sum_ms, s.latency_hist).where(
                s.endpoint_id == endpoint_id
            )
            if since is not None:
                query = query.where(s.window_start >= since)
            out: dict[str, VariantStats] = {}
            for row in conn.execute(query):
                acc = out.setdefault(row.variant, VariantStats(row.variant))
                acc.requests += row.requests
                acc.errors += row.errors
                acc.latency_sum_ms += row.latency_sum_ms
                acc.histogram.merge(row.latency_hist)
            return out

    def record_outcomes(self, name: str, outcomes: Iterable[tuple[str, str, float]]) -> int:
        """Store ``(request_id, variant, value)`` outcomes; a request id already stored is replaced."""
        latest: dict[str, tuple[str, str, float]] = {}
        for request_id, variant, value in outcomes:
            try:
                number = float(value)
            except (TypeError, ValueError):
                number = math.nan
            if not request_id or not math.isfinite(number):
                raise ValidationError(
                    f"outcome for request {request_id!r} has value {value!r}: need a finite number"
                )
            latest[str(request_id)] = (str(request_id), str(variant), number)
        rows = list(latest.values())
        if not rows:
            return 0
        o = t.serving_outcomes.c
        now = t.utcnow()
        with self.db.write() as conn:
            endpoint = self._load(conn, self._id(conn, name))
            known = {v.name for v in endpoint.variants}
            unknown = sorted({v for _, v, _ in rows} - known)
            if unknown:
                raise ValidationError(f"endpoint {name!r} has no variants {unknown}")
            ids = [r[0] for r in rows]
            conn.execute(
                t.serving_outcomes.delete().where(o.endpoint_id == endpoint.id, o.request_id.in_(ids))
            )
            conn.execute(
                t.serving_outcomes.insert(),
                [
                    {"endpoint_id": endpoint.id, "variant": v, "request_id": r, "value": x, "created_at": now}
                    for r, v, x in rows
                ],
            )
        return len(rows)

    def outcomes(self, name: str) -> dict[str, builtins.list[float]]:
        """Reported outcome values per variant."""
        o = t.serving_outcomes.c
        with self.db.read() as conn:
            endpoint_id = self._id(conn, name)
            out: dict[str, builtins.list[float]] = {}
            for row in conn.execute(
                sa.select(o.variant, o.value).where(o.endpoint_id == endpoint_id).order_by(o.id)
            ):
                out.setdefault(row.variant, []).append(float(row.value))
            return out

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
        checked = {k: _check_weight(k, w) for k, w in weights.items()}
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
            before=_summary(before) if before is not None else None,
            after={**_summary(endpoint), "event": event_id, "detail": detail},
        )
        return EndpointEvent(event_id, endpoint.name, now, kind, who, detail)


def _summary(endpoint: Endpoint) -> dict[str, Any]:
    return {
        "policy": endpoint.policy,
        "variants": [
            {"name": v.name, "model": v.model, "version": v.version, "weight": v.weight, "role": v.role}
            for v in endpoint.variants
        ],
        "settings": endpoint.settings,
    }


def since_seconds(seconds: float) -> datetime:
    """The time ``seconds`` ago (for stats windows)."""
    return t.utcnow() - timedelta(seconds=seconds)
