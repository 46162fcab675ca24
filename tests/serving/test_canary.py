"""Canary analysis decisions on synthetic stats, and auto-rollback through the store."""

from __future__ import annotations

from pathlib import Path

import pytest

from serving.canary import analyse, check_breaches, run_analysis
from storage.audit import AuditLog
from storage.db import Database
from storage.endpoints.store import (
    CanaryPlan,
    EndpointStore,
    LatencyHistogram,
    StatsRow,
    VariantSpec,
    VariantStats,
)
from storage.errors import ValidationError

# No floor: these cases judge the ratio alone (the floor has its own tests below).
PLAN = CanaryPlan(
    max_error_rate_diff=0.02, max_p99_ratio=1.5, min_requests=100, step=0, status="running", p99_floor_ms=0.0
)


def _stats(name: str, requests: int, errors: int, ms: float) -> VariantStats:
    hist = LatencyHistogram()
    hist.add(ms, requests)
    return VariantStats(name, requests, errors, ms * requests, hist)


@pytest.mark.parametrize(
    ("canary", "decision", "reason"),
    [
        (_stats("canary", 200, 2, 5.0), "advance", "within thresholds"),
        (_stats("canary", 200, 20, 5.0), "rollback", "error rate"),
        (_stats("canary", 200, 2, 9.0), "rollback", "p99"),
        (_stats("canary", 50, 0, 5.0), "hold", "needs 100"),
        (_stats("canary", 10, 10, 5.0), "rollback", "10 errors in 10 requests"),
    ],
)
def test_decisions(canary: VariantStats, decision: str, reason: str) -> None:
    result = analyse(_stats("stable", 2000, 10, 5.0), canary, PLAN)
    assert result.decision == decision and reason in result.reason


def test_full_canary_without_stable_traffic_checks_error_rate_alone() -> None:
    ok = analyse(VariantStats("stable"), _stats("canary", 500, 1, 5.0), PLAN)
    bad = analyse(VariantStats("stable"), _stats("canary", 500, 50, 5.0), PLAN)
    assert ok.decision == "advance" and ok.p99_ratio is None and bad.decision == "rollback"


def test_p99_is_compared_only_when_both_sides_have_enough_requests() -> None:
    one_slow_stable = analyse(_stats("stable", 1, 0, 0.2), _stats("canary", 500, 0, 7.0), PLAN)
    assert one_slow_stable.decision == "advance" and one_slow_stable.p99_ratio is None


def test_a_fast_baseline_does_not_roll_back_a_canary_far_inside_its_latency_budget() -> None:
    # The reported case: ONNX stable at p99 0.42 ms, native XGBoost canary at 10.5 ms (25x).
    stable, canary = _stats("stable", 2000, 0, 0.42), _stats("canary", 500, 0, 10.5)
    running = {"step": 0, "status": "running", "min_requests": 100}
    stable_p99, canary_p99 = stable.quantile(0.99), canary.quantile(0.99)
    assert canary_p99 / stable_p99 == pytest.approx(25.0, rel=0.06)  # the histogram is within ~2.5%
    default = analyse(stable, canary, CanaryPlan(**running))  # default floor 25 ms
    assert default.decision == "advance" and default.p99_ratio == pytest.approx(25.0, rel=0.06)
    assert "not judged" in default.reason and "under the 25 ms floor" in default.reason
    inside_target = analyse(stable, canary, CanaryPlan(**running, max_p99_ms=50.0, p99_floor_ms=20.0))
    assert inside_target.decision == "advance"
    # The same numbers with a floor below the canary's p99, or a tighter target, do roll back.
    low_floor = analyse(stable, canary, CanaryPlan(**running, p99_floor_ms=5.0))
    assert low_floor.decision == "rollback" and "above the 5 ms floor" in low_floor.reason
    over_target = analyse(stable, canary, CanaryPlan(**running, max_p99_ms=8.0))
    assert over_target.decision == "rollback" and "exceeds the target max_p99_ms 8 ms" in over_target.reason


def test_the_absolute_target_applies_even_when_stable_is_as_slow() -> None:
    slow = _stats("stable", 2000, 0, 300.0)
    result = analyse(
        slow, _stats("canary", 500, 0, 310.0), CanaryPlan(step=0, status="running", max_p99_ms=250)
    )
    assert result.decision == "rollback" and "max_p99_ms 250 ms" in result.reason
    assert (
        analyse(
            slow,
            _stats("canary", 50, 0, 310.0),
            CanaryPlan(step=0, status="running", min_requests=100, max_p99_ms=250),
        ).decision
        == "hold"
    )


def test_latency_limits_are_validated_and_old_plans_read_with_the_default_floor() -> None:
    with pytest.raises(ValidationError, match="max_p99_ms > 0 and p99_floor_ms >= 0"):
        CanaryPlan(max_p99_ms=0)
    with pytest.raises(ValidationError, match="p99_floor_ms >= 0"):
        CanaryPlan(p99_floor_ms=-1)
    old = CanaryPlan.from_json({"steps": [10, 100], "max_p99_ratio": 2.0, "status": "running", "step": 0})
    assert (old.max_p99_ms, old.p99_floor_ms) == (None, 25.0)
    plan = CanaryPlan(max_p99_ms=40.0, p99_floor_ms=5.0)
    assert CanaryPlan.from_json(plan.to_dict()) == plan


def test_the_admin_body_carries_the_latency_limits() -> None:
    from serving.admin import CanaryBody

    plan = CanaryBody(version="2", max_p99_ms=40, p99_floor_ms=2).plan()
    assert (plan.max_p99_ms, plan.p99_floor_ms, plan.max_p99_ratio) == (40.0, 2.0, 1.5)


def test_at_the_last_step_the_stable_history_is_the_baseline(store: EndpointStore) -> None:
    _flush(store, "stable", 500, 0)  # 2 ms each
    _flush(store, "canary", 30, 0)
    for _ in range(3):  # 5 -> 25 -> 50 -> 100 %
        assert run_analysis(store, "ep").decision == "advance"
        _flush(store, "canary", 30, 0)
    assert store.get("ep").weights() == {"stable": 0.0, "canary": 100.0}
    _flush(store, "stable", 1, 0)  # a straggler: one request in the step is no baseline
    slow = StatsRow("ep", "canary", "r", 30, 0, 30 * 9.0, {900: 30})
    store.flush_stats([slow])
    result = run_analysis(store, "ep", apply=False)
    assert result.stable["requests"] >= 500  # judged against the stable history
    assert result.decision == "rollback" and "p99" in result.reason


@pytest.fixture
def store(tmp_path: Path) -> EndpointStore:
    s = EndpointStore(Database(f"sqlite:///{tmp_path / 'm.db'}"), actor="ops")
    s.create("ep", [VariantSpec("main", "m", "1")])
    s.start_canary("ep", "m", "2", CanaryPlan(min_requests=20))
    return s


def _flush(store: EndpointStore, variant: str, requests: int, errors: int) -> None:
    store.flush_stats([StatsRow("ep", variant, "r", requests, errors, 2.0 * requests, {90: requests})])


def test_run_analysis_advances_holds_and_rolls_back(store: EndpointStore) -> None:
    _flush(store, "stable", 500, 0)
    _flush(store, "canary", 5, 0)
    assert run_analysis(store, "ep").decision == "hold"
    _flush(store, "canary", 30, 0)
    assert run_analysis(store, "ep").decision == "advance"
    assert store.get("ep").weights() == {"stable": 75.0, "canary": 25.0}
    # stats from the previous step are not counted at the new step
    assert run_analysis(store, "ep", apply=False).decision == "hold"
    _flush(store, "stable", 100, 0)
    _flush(store, "canary", 40, 20)
    result = run_analysis(store, "ep")
    assert result.decision == "rollback" and store.get("ep").weights() == {"stable": 100.0, "canary": 0.0}
    kinds = [e.kind for e in store.events("ep")]
    assert kinds[-3:] == ["decision.hold", "canary.advance", "canary.rollback"]
    assert (
        AuditLog(store.db).entries(action="canary.rollback")[0].after["detail"]["analysis"]["decision"]
        == "rollback"
    )
    with pytest.raises(ValidationError, match="no running canary"):
        run_analysis(store, "ep")


def test_breach_watcher_rolls_back_but_never_advances(store: EndpointStore) -> None:
    _flush(store, "stable", 500, 0)
    _flush(store, "canary", 50, 0)
    assert check_breaches(store) == {}
    assert store.get("ep").weights() == {"stable": 95.0, "canary": 5.0}
    _flush(store, "canary", 50, 40)
    assert list(check_breaches(store)) == ["ep"]
    assert store.get("ep").canary.status == "rolled_back"  # type: ignore[union-attr]


@pytest.mark.slow
def test_failing_canary_rolls_back_by_itself_in_the_real_server(tmp_path: Path) -> None:
    """No flow and no operator: the server's canary guard stops the failing version."""
    import time

    import httpx

    from tests.serving.canary_models import ADMIN, Traffic, served_registry

    with served_registry(tmp_path) as (url, _reg):
        admin = httpx.Client(base_url=f"{url}/admin", headers=ADMIN, timeout=30)
        body = {"name": "fraud-live", "variants": [{"name": "main", "model": "fraud", "version": "1"}]}
        assert admin.post("/endpoints", json=body).status_code == 201
        plan = {"version": "2", "steps": [20, 50, 100], "min_requests": 10}
        assert admin.post("/endpoints/fraud-live/canary", json=plan).status_code == 201
        traffic = Traffic(url, "fraud-live").start()
        deadline = time.monotonic() + 30
        state = admin.get("/endpoints/fraud-live/canary").json()
        while state["plan"]["status"] == "running" and time.monotonic() < deadline:
            time.sleep(0.25)
            state = admin.get("/endpoints/fraud-live/canary").json()
        # the router's thread re-reads the endpoint within refresh_s, later on a busy machine: wait
        # for the answers to come from the stable variant only, then watch some more
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            recent = traffic.answers[-5:]
            if len(recent) == 5 and all(a[2] == "stable" for a in recent):
                break
            time.sleep(0.1)
        cut = len(traffic.answers)
        while len(traffic.answers) < cut + 10 and time.monotonic() < deadline:
            time.sleep(0.1)
        answers = traffic.finish()
        admin.close()
    assert state["weights"] == {"stable": 100.0, "canary": 0.0} and state["plan"]["status"] == "rolled_back"
    rollback = next(e for e in state["events"] if e["kind"] == "canary.rollback")
    assert rollback["actor"].startswith("canary-guard:") and "error" in rollback["detail"]["reason"]
    failed = [a for a in answers if a[1] != 200]
    stable = [a for a in answers if a[2] == "stable"]
    assert failed and all("version 2 failed to predict" in a[2] for a in failed)
    assert stable and all(a[1] == 200 for a in stable)  # no stable request failed meanwhile
    after = answers[cut:]
    assert after and all(a[1] == 200 and a[2] == "stable" for a in after)
