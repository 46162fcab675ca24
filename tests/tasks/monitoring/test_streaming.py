"""Page-Hinkley on error streams, label drift against scipy, concept drift with delayed labels."""

from __future__ import annotations

import json
from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from storage.errors import ValidationError
from tasks.monitoring.performance import join_ground_truth
from tasks.monitoring.streaming import (
    PageHinkley,
    concept_drift,
    concept_drift_task,
    error_stream,
    label_drift,
)

T0 = pd.Timestamp("2026-03-01", tz="UTC")

# ---------------------------------------------------------------- Page-Hinkley


def _bernoulli(seed: int, rates: list[tuple[int, float]]) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.concatenate([(rng.random(n) < p).astype(float) for n, p in rates])


def test_no_alarm_on_a_stationary_error_stream() -> None:
    alarms = 0
    for seed in range(100):
        ph = PageHinkley()
        ph.update_many(_bernoulli(seed, [(3000, 0.1)]))
        alarms += ph.detected_at is not None
    assert alarms <= 2  # the expected number is ~0 (mean run length to a false alarm: ~10^5)


def test_alarm_shortly_after_a_jump_in_error_rate(record_property: Callable[[str, object], None]) -> None:
    delays = []
    for seed in range(50):
        ph = PageHinkley()
        ph.update_many(_bernoulli(1000 + seed, [(1000, 0.1), (2000, 0.3)]))
        assert ph.detected_at is not None and ph.detected_at >= 1000, seed
        delays.append(ph.detected_at - 1000)
    mean_delay = float(np.mean(delays))
    record_property("page_hinkley_mean_delay", mean_delay)
    print(f"Page-Hinkley mean delay after a 0.1 -> 0.3 jump: {mean_delay:.0f} observations")
    # theory: about threshold / (jump - delta) = 50 / 0.195 = 256 observations
    assert 150 < mean_delay < 400 and max(delays) < 800


def test_direction_restart_and_state() -> None:
    down = _bernoulli(7, [(1000, 0.4), (1000, 0.1)])
    assert PageHinkley().update_many(down) == []
    ph = PageHinkley(direction="down")
    assert ph.update_many(down)[0] > 1000
    both = PageHinkley(direction="both", threshold=20)
    alarms = both.update_many(_bernoulli(8, [(1000, 0.1), (1000, 0.5), (1000, 0.1)]))
    assert len(alarms) >= 2 and 1000 < alarms[0] < 1200 and any(a > 2000 for a in alarms)
    assert both.detected_at == alarms[0] and both.detections == alarms
    state = both.state().to_dict()
    assert json.loads(json.dumps(state))["detections"] == alarms and state["n_seen"] == 3000


def test_min_samples_holds_back_an_alarm() -> None:
    ph = PageHinkley(threshold=1.0, min_samples=10)
    assert ph.update_many([0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1]) == [9]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"delta": -1},
        {"threshold": 0},
        {"threshold": float("nan")},
        {"min_samples": 0},
        {"direction": "sideways"},
    ],
)
def test_bad_parameters(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValidationError, match=next(iter(kwargs))):
        PageHinkley(**kwargs)  # type: ignore[arg-type]


def test_bad_observations() -> None:
    ph = PageHinkley()
    ph.update(1)
    with pytest.raises(ValidationError, match="index 1 is not finite"):
        ph.update(float("nan"))
    with pytest.raises(ValidationError, match="not a number"):
        ph.update("x")  # type: ignore[arg-type]


# ---------------------------------------------------------------- label drift


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_label_drift_matches_scipy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    ref = rng.choice(["a", "b", "c"], 3000, p=[0.5, 0.3, 0.2])
    cur = rng.choice(["a", "b", "c", "d"], 2000, p=[0.4, 0.3, 0.2, 0.1])
    result = label_drift(ref, cur)
    table = np.array([[np.sum(ref == k) for k in "abcd"], [np.sum(cur == k) for k in "abcd"]])
    chi2, p, _, _ = stats.chi2_contingency(table, correction=False)
    assert result.statistic == pytest.approx(chi2, rel=1e-12) and result.p_value == pytest.approx(
        p, abs=1e-12
    )
    assert result.drifted and result.current_distribution["d"] == pytest.approx(np.mean(cur == "d"))
    assert result.reference_distribution["d"] == 0.0
    a, b = rng.normal(size=500), rng.normal(0.5, 1, 400)
    numeric, ks = label_drift(a, b, kind="numeric"), stats.ks_2samp(a, b, method="asymp")
    assert numeric.method == "ks" and numeric.drifted
    assert numeric.statistic == pytest.approx(ks.statistic, abs=1e-12)
    assert numeric.p_value == pytest.approx(ks.pvalue, abs=1e-9)


def test_label_drift_false_alarm_rate() -> None:
    hits = 0
    for seed in range(100):
        rng = np.random.default_rng(seed)
        hits += label_drift(rng.integers(0, 3, 2000), rng.integers(0, 3, 2000)).drifted
    assert hits <= 12  # alpha = 0.05: 5 expected


def test_label_drift_empty_side_is_a_finding() -> None:
    result = label_drift([0, 1, 1], [None, None])
    assert not result.drifted and result.reason == "no current labels to compare"
    assert json.loads(json.dumps(result.to_dict(), allow_nan=False))["p_value"] is None
    with pytest.raises(ValidationError, match="kind"):
        label_drift([1], [1], kind="ordinal")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="numeric"):
        label_drift(["a"], ["b"], kind="numeric")


# ---------------------------------------------------------------- concept drift


def _served(
    seed: int, n: int, jump_at: int | None, before: float = 0.1, after: float = 0.35
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A log of ``n`` predictions, one a minute, wrong at ``before`` then (from ``jump_at``) ``after``."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    rate = np.full(n, before) if jump_at is None else np.where(np.arange(n) < jump_at, before, after)
    predicted = np.where(rng.random(n) < rate, 1 - y, y)
    log = pd.DataFrame(
        {
            "request_id": [f"r{i}" for i in range(n)],
            "ts": pd.date_range(T0, periods=n, freq="1min"),
            "prediction": [str(int(v)) for v in predicted],
            "latency_ms": 1.0,
            "status": "ok",
        }
    )
    labels = pd.DataFrame({"request_id": log["request_id"], "label": y, "ts": log["ts"] + pd.Timedelta("2d")})
    return log.assign(_label=y), labels


def test_concept_drift_found_with_delayed_labels() -> None:
    log, labels = _served(0, 6 * 1440, jump_at=3 * 1440)
    # labels arrive late and partially: 60% of them, out of order
    late = labels.sample(frac=0.6, random_state=1)
    result = concept_drift_task.fn(
        log.drop(columns="_label"),
        late,
        {"accuracy": 0.9, "f1": 0.9},
        tolerance={"accuracy": 0.05, "f1": 0.05},
        input_drift=False,
    )
    assert result["concept_drift"] and result["performance_degraded"]
    assert result["degraded_since"] == (T0 + pd.Timedelta("3d")).isoformat()
    assert result["labelled_rows"] == len(late)
    alarm = pd.Timestamp(result["detector_alarm_at"])
    assert T0 + pd.Timedelta("3d") < alarm < T0 + pd.Timedelta("3d") + pd.Timedelta("12h")
    severities = {f["severity"] for f in result["findings"] if f["kind"] == "degraded"}
    assert severities == {"critical"} and "concept drift" in result["summary"]
    json.dumps(result, allow_nan=False)


def test_no_concept_drift_on_stable_performance() -> None:
    log, labels = _served(1, 4 * 1440, jump_at=None)
    joined = join_ground_truth(log.drop(columns="_label"), labels)
    result = concept_drift(joined, {"accuracy": 0.9}, tolerance={"accuracy": 0.03})
    assert not result.concept_drift and not result.performance_degraded and result.detector_alarm_at is None
    assert result.findings == () and result.summary.startswith("no degradation")


def test_input_drift_explains_the_degradation() -> None:
    log, _ = _served(2, 3 * 1440, jump_at=1440)
    joined = log.rename(columns={"_label": "label"})
    result = concept_drift(joined, {"accuracy": 0.9}, tolerance={"accuracy": 0.05}, input_drift=True)
    assert result.performance_degraded and not result.concept_drift and "data drift" in result.summary
    unknown = concept_drift(joined, {"accuracy": 0.9}, tolerance={"accuracy": 0.05})
    assert unknown.concept_drift and "possible concept drift" in unknown.summary


def test_regression_error_stream_and_custom_detector() -> None:
    rng = np.random.default_rng(3)
    n = 2000
    y = rng.normal(size=n)
    noise = np.where(np.arange(n) < 1000, 0.1, 1.0)
    joined = pd.DataFrame(
        {
            "request_id": [f"r{i}" for i in range(n)],
            "ts": pd.date_range(T0, periods=n, freq="1min"),
            "prediction": [json.dumps(float(v)) for v in y + rng.normal(0, noise)],
            "label": y,
        }
    )
    errors = error_stream(joined, "regression")
    assert errors.iloc[:1000].mean() < 0.1 < 0.6 < errors.iloc[1000:].mean()
    result = concept_drift(
        joined,
        {"mae": 0.08},
        tolerance={"mae": 0.05},
        task="regression",
        detector=PageHinkley(delta=0.05, threshold=20),
        input_drift=False,
    )
    assert result.concept_drift and result.detector_alarm_index is not None
    assert 1000 < result.detector_alarm_index < 1100


def test_concept_drift_without_labels_is_a_finding_not_a_crash() -> None:
    log, labels = _served(4, 100, jump_at=None)
    joined = join_ground_truth(log.drop(columns="_label"), labels.iloc[:0])
    result = concept_drift(joined, {"accuracy": 0.9}, tolerance={"accuracy": 0.05})
    assert not result.concept_drift and result.labelled_rows == 0
    assert result.summary == "no labelled predictions to judge"
