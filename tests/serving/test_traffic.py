"""Traffic router: A/B split ratios, stickiness, canary keys kept, shadow sampling, refresh, stats."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from scipy import stats

from serving.traffic import Target, TrafficRouter, assignment_point
from storage.db import Database
from storage.endpoints.store import EndpointStore, VariantSpec

KEYS = [f"user-{i}" for i in range(20_000)]


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'mlops.db'}")
    yield database
    database.dispose()


@pytest.fixture
def router(db: Database) -> Iterator[TrafficRouter]:
    r = TrafficRouter(db, refresh_s=0.05, background=False)
    yield r
    r.close()


def _ab(db: Database, weights: dict[str, float]) -> EndpointStore:
    store = EndpointStore(db)
    store.create(
        "ep", [VariantSpec(n, "m", str(i + 1), w) for i, (n, w) in enumerate(weights.items())], policy="ab"
    )
    return store


@pytest.mark.parametrize("weights", [{"a": 50, "b": 50}, {"a": 90, "b": 10}, {"a": 20, "b": 30, "c": 50}])
def test_split_ratios_over_many_keys(db: Database, router: TrafficRouter, weights: dict[str, float]) -> None:
    _ab(db, weights)
    router.refresh()
    counts = Counter(router.route("ep", k).variant for k in KEYS)  # type: ignore[union-attr]
    expected = [len(KEYS) * w / 100 for w in weights.values()]
    observed = [counts[n] for n in weights]
    for o, e in zip(observed, expected, strict=True):
        assert abs(o - e) / len(KEYS) < 0.015
    assert stats.chisquare(observed, expected).pvalue > 0.001


def test_assignment_is_sticky_and_random_without_a_key(db: Database, router: TrafficRouter) -> None:
    _ab(db, {"a": 50, "b": 50})
    router.refresh()
    first = [router.route("ep", k).variant for k in KEYS[:2000]]  # type: ignore[union-attr]
    again = [router.route("ep", k).variant for k in KEYS[:2000]]  # type: ignore[union-attr]
    assert first == again
    other = TrafficRouter(db, background=False)  # another replica agrees
    assert [other.route("ep", k).variant for k in KEYS[:2000]] == first  # type: ignore[union-attr]
    other.close()
    unkeyed = Counter(router.route("ep", None).variant for _ in range(4000))  # type: ignore[union-attr]
    assert 1800 < unkeyed["a"] < 2200


def test_raising_the_canary_keeps_its_keys(db: Database, router: TrafficRouter) -> None:
    store = EndpointStore(db)
    store.create("ep", [VariantSpec("main", "m", "1")])
    store.start_canary("ep", "m", "2")
    router.refresh()
    at5 = {k for k in KEYS if router.route("ep", k).variant == "canary"}  # type: ignore[union-attr]
    store.advance_canary("ep")
    router.refresh()
    at25 = {k for k in KEYS if router.route("ep", k).variant == "canary"}  # type: ignore[union-attr]
    assert at5 <= at25
    assert abs(len(at5) / len(KEYS) - 0.05) < 0.01 and abs(len(at25) / len(KEYS) - 0.25) < 0.015
    assert router.route("ep", "x").target in {Target("m", "1"), Target("m", "2")}  # type: ignore[union-attr]


def test_shadow_percentage_is_sampled(db: Database, router: TrafficRouter) -> None:
    store = EndpointStore(db)
    store.create("ep", [VariantSpec("live", "m", "1")], policy="shadow")
    store.set_shadow("ep", [VariantSpec("cand", "m", "2")], 20)
    router.refresh()
    routes = [router.route("ep", k) for k in KEYS[:5000]]
    mirrored = sum(1 for r in routes if r is not None and r.shadows == (Target("m", "2"),))
    assert all(r is not None and r.variant == "live" for r in routes)
    assert 0.17 < mirrored / 5000 < 0.23


def test_changes_are_seen_after_refresh_and_unknown_names(db: Database, router: TrafficRouter) -> None:
    assert router.route("ep", "k") is None
    store = _ab(db, {"a": 100, "b": 0})
    time.sleep(0.06)
    assert router.route("ep", "k").variant == "a"  # type: ignore[union-attr]
    store.set_weights("ep", {"a": 0, "b": 100})
    router.refresh()
    assert router.route("ep", "k").variant == "b"  # type: ignore[union-attr]
    store.delete("ep")
    router.refresh()
    assert router.route("ep", "k") is None


def test_observations_from_two_replicas_add_up(db: Database) -> None:
    _ab(db, {"a": 50, "b": 50})
    r1 = TrafficRouter(db, background=False, replica="r1")
    r2 = TrafficRouter(db, flush_s=0.05, refresh_s=0.05, replica="r2")  # flushes on its own thread
    for i in range(300):
        r1.observe("ep", "a", Target("m", "1"), 2.0, ok=i % 10 != 0)
        r2.observe("ep", "a", Target("m", "1"), 4.0, ok=True)
    r1.flush()
    deadline = time.monotonic() + 60  # generous: the flush thread may be slow on a busy machine
    while r2.pending() and time.monotonic() < deadline:
        time.sleep(0.02)
    a = EndpointStore(db).stats("ep")["a"]
    assert a.requests == 600 and a.errors == 30
    assert a.quantile(0.25) == pytest.approx(2.0, rel=0.03) and a.quantile(0.99) == pytest.approx(
        4.0, rel=0.03
    )
    r1.close()
    r2.close()


def test_route_costs_well_under_a_tenth_of_a_millisecond(db: Database, router: TrafficRouter) -> None:
    store = _ab(db, {"a": 50, "b": 50})
    store.set_shadow("ep", [VariantSpec("s", "m", "3")], 10)
    router.refresh()
    keys = KEYS[:10_000]
    start = time.perf_counter()
    for k in keys:
        router.route("ep", k)
    per_call_ms = (time.perf_counter() - start) * 1000 / len(keys)
    assert per_call_ms < 0.05


def test_assignment_point_is_uniform() -> None:
    points = [assignment_point("ep", k) for k in KEYS]
    assert stats.kstest(points, "uniform").pvalue > 0.001
