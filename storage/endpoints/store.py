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

The store is put together from parts: the records and their checks
(``records``), reads, variant changes and the shared write steps (``base``),
policy changes (``policies``) and traffic counters and outcomes
(``measurements``); this module adds creating and deleting endpoints, and
re-exports the names callers import from here.

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

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import sqlalchemy as sa

from storage import schema as t
from storage.audit import append_entry
from storage.db import inserted_id
from storage.endpoints.measurements import MeasurementsMixin, since_seconds
from storage.endpoints.policies import PoliciesMixin
from storage.endpoints.records import (
    BLUE,
    CANARY,
    DEFAULT_CANARY_STEPS,
    GREEN,
    LIVE,
    POLICIES,
    SHADOW,
    STABLE,
    CanaryPlan,
    Endpoint,
    EndpointEvent,
    Variant,
    VariantSpec,
    audit_summary,
    check_label,
    check_percent,
    check_policy,
    check_spec,
)
from storage.endpoints.traffic import LatencyHistogram, StatsRow, VariantStats
from storage.errors import AlreadyExistsError, ValidationError

__all__ = [
    "BLUE",
    "CANARY",
    "DEFAULT_CANARY_STEPS",
    "GREEN",
    "LIVE",
    "POLICIES",
    "SHADOW",
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
    "since_seconds",
]


class EndpointStore(PoliciesMixin, MeasurementsMixin):
    """Endpoints in the metadata database.

    Reads, variant changes, policy changes, stats and outcomes come from the
    mixins (see the module docstring); this class creates and deletes endpoints.

    Args:
        db: The metadata database.
        actor: Name recorded on changes when a call does not name one.
    """

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
        check_label(name, "endpoint")
        specs = [check_spec(v) for v in variants]
        if len({s.name for s in specs}) != len(specs):
            raise ValidationError(f"endpoint {name!r} has duplicate variant names: {[s.name for s in specs]}")
        live = [s for s in specs if s.role == LIVE]
        check_policy(policy, live)
        settings: dict[str, Any] = {"shadow_percent": check_percent(shadow_percent)}
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
                before=audit_summary(endpoint),
            )
