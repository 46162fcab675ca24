"""Autoscaler decisions on synthetic metrics (the Kubernetes HPA algorithm)."""

from __future__ import annotations

import pytest

from serving.autoscaler import AutoscalePolicy, Autoscaler, ReplicaMetrics, metric_ratio_replicas


def test_each_metric_scales_and_the_largest_wins() -> None:
    scaler = Autoscaler(AutoscalePolicy(min_replicas=1, max_replicas=50, scale_up_pods=100))
    d = scaler.recommend(ReplicaMetrics(4, cpu_percent=140.0, p95_ms=50.0, inflight_per_replica=4.0), now=0)
    assert (d.desired, d.reasons["cpu_percent"]) == (8, 140.0)  # 4 * 140/70
    d = scaler.recommend(ReplicaMetrics(8, cpu_percent=70.0, p95_ms=300.0, inflight_per_replica=4.0), now=1)
    assert d.desired == 24  # latency: 8 * 300/100
    d = scaler.recommend(ReplicaMetrics(24, inflight_per_replica=20.0), now=2)
    assert d.desired == 50  # 24 * 20/8 = 60, capped at max


def test_tolerance_keeps_the_count() -> None:
    assert metric_ratio_replicas(10, 75.0, 70.0, 0.1) == 10
    assert metric_ratio_replicas(10, 80.0, 70.0, 0.1) == 12
    d = Autoscaler().recommend(
        ReplicaMetrics(5, cpu_percent=72.0, p95_ms=95.0, inflight_per_replica=8.5), now=0
    )
    assert d.desired == 5 and d.change == 0


def test_bounds_and_missing_metrics() -> None:
    scaler = Autoscaler(AutoscalePolicy(min_replicas=2, max_replicas=6))
    assert scaler.recommend(ReplicaMetrics(1), now=0).desired == 2  # below min: raised
    assert scaler.recommend(ReplicaMetrics(3, p95_ms=float("nan")), now=1).desired == 3
    with pytest.raises(ValueError, match="min"):
        AutoscalePolicy(min_replicas=5, max_replicas=2)
    with pytest.raises(ValueError, match="target_p95_ms"):
        AutoscalePolicy(target_p95_ms=0)


def test_scale_down_waits_for_the_stabilisation_window() -> None:
    scaler = Autoscaler(AutoscalePolicy(min_replicas=1, scale_down_window_s=60))
    assert scaler.recommend(ReplicaMetrics(4, inflight_per_replica=8.0), now=0).desired == 4
    # load drops: the window still holds the recommendation of 4
    for t in (10, 30, 59):
        assert scaler.recommend(ReplicaMetrics(4, inflight_per_replica=1.0), now=t).desired == 4
    assert scaler.recommend(ReplicaMetrics(4, inflight_per_replica=1.0), now=61).desired == 1
    # a short dip inside a busy period does not scale down
    scaler = Autoscaler(AutoscalePolicy(min_replicas=1, scale_down_window_s=60))
    scaler.recommend(ReplicaMetrics(4, inflight_per_replica=8.0), now=0)
    scaler.recommend(ReplicaMetrics(4, inflight_per_replica=0.5), now=20)
    assert scaler.recommend(ReplicaMetrics(4, inflight_per_replica=8.0), now=40).desired == 4


def test_scale_up_window_and_rate_limit() -> None:
    scaler = Autoscaler(
        AutoscalePolicy(min_replicas=1, scale_up_window_s=30, scale_up_pods=2, scale_up_percent=50)
    )
    assert scaler.recommend(ReplicaMetrics(2, inflight_per_replica=8.0), now=0).desired == 2
    # a spike is only followed once it lasted the whole up-window (min over the window)
    assert scaler.recommend(ReplicaMetrics(2, inflight_per_replica=40.0), now=10).desired == 2
    assert scaler.recommend(ReplicaMetrics(2, inflight_per_replica=40.0), now=31).desired == 4  # +2 at most
    assert scaler.recommend(ReplicaMetrics(4, inflight_per_replica=20.0), now=45).desired == 6  # +max(2, 50%)
