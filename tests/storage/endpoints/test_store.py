"""Endpoint store: policies, canary state, blue-green slots, stats, outcomes, events, audit."""

from __future__ import annotations

import numpy as np
import pytest

from storage.audit import AuditLog
from storage.db import Database
from storage.endpoints.store import (
    CanaryPlan,
    EndpointStore,
    LatencyHistogram,
    StatsRow,
    VariantSpec,
)
from storage.errors import AlreadyExistsError, NotFoundError, ValidationError


@pytest.fixture
def store(db: Database) -> EndpointStore:
    return EndpointStore(db, actor="ops")


def _ab(store: EndpointStore, name: str = "fraud") -> None:
    store.create(
        name, [VariantSpec("a", "fraud", "1", 70), VariantSpec("b", "fraud", "@challenger", 30)], policy="ab"
    )


def test_create_ab_and_change_weights_is_audited(store: EndpointStore, db: Database) -> None:
    _ab(store)
    ep = store.get("fraud")
    assert ep.policy == "ab" and ep.weights() == {"a": 70.0, "b": 30.0} and ep.revision == 1
    changed = store.set_weights("fraud", {"a": 50, "b": 50}, reason="even split")
    assert changed.weights() == {"a": 50.0, "b": 50.0} and changed.revision == 2
    entries = AuditLog(db).entries(entity_type="endpoint", entity_id="fraud")
    assert [e.action for e in entries] == ["endpoint.create", "traffic.set"]
    assert entries[1].before["variants"][0]["weight"] == 70.0
    assert entries[1].after["detail"]["reason"] == "even split"
    assert AuditLog(db).verify().ok
    assert [e.kind for e in store.events("fraud")] == ["endpoint.create", "traffic.set"]


@pytest.mark.parametrize(
    ("variants", "policy", "message"),
    [
        ([], "single", "at least one live variant"),
        ([VariantSpec("a", "m", "1"), VariantSpec("b", "m", "2")], "single", "exactly one"),
        ([VariantSpec("a", "m", "1")], "ab", "two or more"),
        ([VariantSpec("a", "m", "1")], "rainbow", "'rainbow' is not one of"),
        ([VariantSpec("a", "m", "1", 120)], "single", "weight 120"),
        ([VariantSpec("a", "m", "")], "single", "needs a version"),
        ([VariantSpec("a b", "m", "1")], "single", "variant name 'a b'"),
        ([VariantSpec("a", "m", "1"), VariantSpec("a", "m", "2")], "ab", "duplicate variant"),
        ([VariantSpec("x", "m", "1"), VariantSpec("y", "m", "1")], "blue_green", "'blue' and 'green'"),
        ([VariantSpec("a", "m", "1", 0), VariantSpec("b", "m", "1", 0)], "ab", "add up to 0"),
    ],
)
def test_bad_endpoints_are_refused_with_a_reason(
    store: EndpointStore, variants: list[VariantSpec], policy: str, message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        store.create("bad", variants, policy=policy)
    assert store.list() == []


def test_names_and_missing_things(store: EndpointStore) -> None:
    _ab(store)
    with pytest.raises(AlreadyExistsError, match="'fraud' already exists"):
        _ab(store)
    with pytest.raises(NotFoundError, match="endpoint 'nope'"):
        store.get("nope")
    with pytest.raises(ValidationError, match=r"no live variants \['c'\]"):
        store.set_weights("fraud", {"c": 10})
    with pytest.raises(ValidationError, match="no live variant taking traffic"):
        store.set_weights("fraud", {"a": 0, "b": 0})
    assert store.get("fraud").weights() == {"a": 70.0, "b": 30.0}  # nothing half-changed
    store.delete("fraud")
    assert store.list() == []


def test_canary_walks_its_steps_and_completes(store: EndpointStore) -> None:
    store.create("ep", [VariantSpec("main", "m", "1")])
    ep = store.start_canary("ep", "m", "2", CanaryPlan(steps=(10, 50, 100)))
    assert ep.policy == "canary" and ep.weights() == {"stable": 90.0, "canary": 10.0}
    assert ep.variant("stable").version == "1" and ep.variant("canary").version == "2"
    with pytest.raises(ValidationError, match="already runs a canary"):
        store.start_canary("ep", "m", "3")
    assert store.advance_canary("ep").weights() == {"stable": 50.0, "canary": 50.0}
    assert store.advance_canary("ep").weights() == {"stable": 0.0, "canary": 100.0}
    done = store.advance_canary("ep")
    assert done.policy == "single" and done.canary is not None and done.canary.status == "completed"
    assert [(v.name, v.version, v.weight) for v in done.live] == [("stable", "2", 100.0)]
    kinds = [e.kind for e in store.events("ep")]
    assert kinds == ["endpoint.create", "canary.start", "canary.advance", "canary.advance", "canary.complete"]


def test_canary_rollback_sets_weight_zero(store: EndpointStore, db: Database) -> None:
    store.create("ep", [VariantSpec("main", "m", "1")])
    store.start_canary("ep", "m", "2")
    ep = store.rollback_canary("ep", reason="error rate 0.5 > 0.02", analysis={"canary_error_rate": 0.5})
    assert ep.weights() == {"stable": 100.0, "canary": 0.0}
    assert ep.canary is not None and ep.canary.status == "rolled_back"
    event = store.events("ep", kind="canary.rollback")[0]
    assert event.detail["reason"] == "error rate 0.5 > 0.02"
    assert AuditLog(db).entries(action="canary.rollback")[0].entity_id == "ep"
    with pytest.raises(ValidationError, match="no running canary"):
        store.advance_canary("ep")


def test_canary_plan_checks_steps() -> None:
    with pytest.raises(ValidationError, match="must end at 100"):
        CanaryPlan(steps=(5, 25))
    with pytest.raises(ValidationError, match="must increase"):
        CanaryPlan(steps=(50, 25, 100))


def test_blue_green_switch_and_switch_back(store: EndpointStore) -> None:
    store.create(
        "bg", [VariantSpec("blue", "m", "1"), VariantSpec("green", "m", "1", 0)], policy="blue_green"
    )
    with pytest.raises(ValidationError, match="is live"):
        store.deploy_slot("bg", "blue", "m", "2")
    store.deploy_slot("bg", "green", "m", "2")
    ep = store.switch("bg")
    assert ep.live_colour == "green" and ep.weights() == {"blue": 0.0, "green": 100.0}
    assert ep.settings["previous"] == "blue"
    back = store.switch_back("bg")
    assert back.live_colour == "blue" and back.weights() == {"blue": 100.0, "green": 0.0}
    kinds = [e.kind for e in store.events("bg")]
    assert kinds == ["endpoint.create", "slot.deploy", "bluegreen.switch", "bluegreen.switch"]


def test_shadows_and_percent(store: EndpointStore) -> None:
    store.create("sh", [VariantSpec("live", "m", "1")], policy="shadow")
    ep = store.set_shadow("sh", [VariantSpec("candidate", "m", "2")], 25)
    assert ep.shadow_percent == 25 and [s.name for s in ep.shadows] == ["candidate"]
    assert [v.name for v in ep.live] == ["live"]
    with pytest.raises(ValidationError, match="between 0 and 100"):
        store.set_shadow("sh", [], 150)
    with pytest.raises(ValidationError, match="are live variants"):
        store.set_shadow("sh", [VariantSpec("live", "m", "2")], 10)


def test_stats_from_many_replicas_add_up(store: EndpointStore) -> None:
    _ab(store)
    rng = np.random.default_rng(0)
    lat = rng.lognormal(1.0, 0.5, 4000)
    parts = []
    for replica, chunk in enumerate(np.array_split(lat, 4)):
        hist = LatencyHistogram()
        for x in chunk:
            hist.add(float(x))
        parts.append(
            StatsRow("fraud", "a", f"r{replica}", len(chunk), replica, float(chunk.sum()), hist.counts)
        )
    parts.append(StatsRow("ghost", "a", "r9", 5, 0, 1.0, {}))  # an endpoint removed meanwhile
    assert store.flush_stats(parts) == 4
    stats = store.stats("fraud")["a"]
    assert stats.requests == 4000 and stats.errors == 0 + 1 + 2 + 3
    for q in (0.5, 0.95, 0.99):
        assert stats.quantile(q) == pytest.approx(float(np.quantile(lat, q)), rel=0.05)
    assert stats.to_dict()["mean_ms"] == pytest.approx(lat.mean())


def test_outcomes_per_variant(store: EndpointStore) -> None:
    _ab(store)
    assert store.record_outcomes("fraud", [("r1", "a", 1), ("r2", "b", 0), ("r1", "a", 0)]) == 2
    assert store.outcomes("fraud") == {"a": [0.0], "b": [0.0]}
    with pytest.raises(ValidationError, match=r"no variants \['zzz'\]"):
        store.record_outcomes("fraud", [("r3", "zzz", 1)])
    with pytest.raises(ValidationError, match="finite number"):
        store.record_outcomes("fraud", [("r3", "a", float("nan"))])
