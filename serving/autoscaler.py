"""The autoscaling policy: desired replicas from CPU, p95 latency and in-flight requests.

It follows the Kubernetes HPA algorithm. For each metric with a target,
``ceil(current_replicas × value / target)`` replicas are wanted (no change
while ``value / target`` is within the tolerance of 1); the largest wins. The
recommendation is then stabilised: scaling up takes the *smallest*
recommendation of the scale-up window (default 0 s: at once), scaling down the
*largest* of the scale-down window (default 300 s), so a short dip does not
remove replicas that a returning load needs. A step up adds at most
``max(scale_up_pods, current × scale_up_percent / 100)`` replicas; the result
stays within ``[min_replicas, max_replicas]`` (default 2–50).

The policy is pure: it is given metrics and a clock and returns a number, so
it is tested on synthetic metrics; :mod:`serving.replicas` feeds it real ones.

Example:
    >>> policy = AutoscalePolicy(min_replicas=2, max_replicas=10, target_inflight=4)
    >>> scaler = Autoscaler(policy)
    >>> scaler.recommend(ReplicaMetrics(replicas=2, inflight_per_replica=12.0), now=0.0).desired
    6
    >>> scaler.recommend(ReplicaMetrics(replicas=6, inflight_per_replica=1.0), now=10.0).desired
    6
    >>> scaler.recommend(ReplicaMetrics(replicas=6, inflight_per_replica=1.0), now=400.0).desired
    2
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

__all__ = ["AutoscalePolicy", "Autoscaler", "ReplicaMetrics", "ScaleDecision", "metric_ratio_replicas"]


@dataclass(frozen=True)
class AutoscalePolicy:
    """Targets, bounds and stabilisation of the autoscaler.

    Attributes:
        min_replicas: Fewest replicas (at least 1).
        max_replicas: Most replicas.
        target_cpu_percent: Wanted mean CPU per replica (percent of one core); None: not used.
        target_p95_ms: Wanted p95 latency in ms; None: not used.
        target_inflight: Wanted in-flight requests per replica; None: not used.
        tolerance: No change while every ratio is within ``1 ± tolerance``.
        scale_up_window_s: Scale-up stabilisation window.
        scale_down_window_s: Scale-down stabilisation window.
        scale_up_pods: A step up may add this many replicas...
        scale_up_percent: ...or this percentage of the current ones, whichever is more.
    """

    min_replicas: int = 2
    max_replicas: int = 50
    target_cpu_percent: float | None = 70.0
    target_p95_ms: float | None = 100.0
    target_inflight: float | None = 8.0
    tolerance: float = 0.1
    scale_up_window_s: float = 0.0
    scale_down_window_s: float = 300.0
    scale_up_pods: int = 4
    scale_up_percent: float = 100.0

    def __post_init__(self) -> None:
        if not 1 <= self.min_replicas <= self.max_replicas:
            raise ValueError(
                f"replicas must satisfy 1 <= min ({self.min_replicas}) <= max ({self.max_replicas})"
            )
        for name in ("target_cpu_percent", "target_p95_ms", "target_inflight"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name} {value!r} must be positive (or None to ignore the metric)")
        if self.tolerance < 0 or self.scale_up_window_s < 0 or self.scale_down_window_s < 0:
            raise ValueError("tolerance and stabilisation windows must not be negative")


@dataclass(frozen=True)
class ReplicaMetrics:
    """What the replicas report now (None: not measured)."""

    replicas: int
    cpu_percent: float | None = None
    p95_ms: float | None = None
    inflight_per_replica: float | None = None


@dataclass(frozen=True)
class ScaleDecision:
    """The decision: desired replicas, the raw recommendation, and why."""

    current: int
    desired: int
    recommended: int
    reasons: dict[str, float] = field(default_factory=dict)

    @property
    def change(self) -> int:
        """Replicas to add (negative: remove)."""
        return self.desired - self.current


def metric_ratio_replicas(current: int, value: float, target: float, tolerance: float) -> int:
    """HPA's per-metric recommendation: ``ceil(current × value / target)``, unchanged within tolerance.

    Example:
        >>> metric_ratio_replicas(4, 90.0, 60.0, 0.1), metric_ratio_replicas(4, 63.0, 60.0, 0.1)
        (6, 4)
    """
    ratio = value / target
    if abs(ratio - 1.0) <= tolerance:
        return current
    return max(1, math.ceil(current * ratio - 1e-9))


class Autoscaler:
    """Stateful wrapper around the policy: keeps the recommendation history for stabilisation."""

    def __init__(self, policy: AutoscalePolicy | None = None) -> None:
        self.policy = policy or AutoscalePolicy()
        self._history: deque[tuple[float, int]] = deque()

    def recommend(self, metrics: ReplicaMetrics, *, now: float) -> ScaleDecision:
        """The desired replica count for these metrics at time ``now`` (seconds, any monotonic clock)."""
        p = self.policy
        current = max(1, metrics.replicas)
        reasons: dict[str, float] = {}
        wanted: list[int] = []
        for name, value, target in (
            ("cpu_percent", metrics.cpu_percent, p.target_cpu_percent),
            ("p95_ms", metrics.p95_ms, p.target_p95_ms),
            ("inflight_per_replica", metrics.inflight_per_replica, p.target_inflight),
        ):
            if value is None or target is None or math.isnan(value):
                continue
            reasons[name] = value
            wanted.append(metric_ratio_replicas(current, value, target, p.tolerance))
        raw = max(wanted) if wanted else current
        raw = min(max(raw, p.min_replicas), p.max_replicas)
        self._history.append((now, raw))
        horizon = max(p.scale_up_window_s, p.scale_down_window_s)
        while self._history and self._history[0][0] < now - horizon:
            self._history.popleft()
        up, down = raw, raw
        for at, rec in self._history:
            if at >= now - p.scale_up_window_s:
                up = min(up, rec)
            if at >= now - p.scale_down_window_s:
                down = max(down, rec)
        desired = current
        if desired < up:
            desired = up
        if desired > down:
            desired = down
        if desired > current:
            step = max(p.scale_up_pods, math.ceil(current * p.scale_up_percent / 100))
            desired = min(desired, current + step)
        desired = min(max(desired, p.min_replicas), p.max_replicas)
        return ScaleDecision(current, desired, raw, reasons)
