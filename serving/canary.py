"""Canary analysis: compare the canary with the stable variant at each step and decide.

At every step the canary's error rate and p99 latency (from the traffic every
replica flushed since the step began) are compared with the stable
variant's. The decision:

* ``rollback`` when the canary's error rate exceeds the stable one by more than
  ``max_error_rate_diff``; when its p99 is above the absolute target
  ``max_p99_ms``; or when its p99 exceeds ``max_p99_ratio`` times the stable
  p99 *and* is above ``p99_floor_ms`` (a 25x ratio between 0.4 ms and 10 ms is
  no reason to roll back) — also before ``min_requests`` when the canary
  already has more errors than the threshold allows over ``min_requests``
  requests;
* ``hold`` while the canary has fewer than ``min_requests`` requests;
* ``advance`` otherwise.

:func:`run_analysis` applies the decision to the endpoint (a rollback sets the
canary weight to 0), and every decision is an endpoint event and an audit
entry.

Example:
    >>> from storage.endpoints.store import CanaryPlan, LatencyHistogram, VariantStats
    >>> fast = LatencyHistogram({100: 1000})
    >>> stable = VariantStats("stable", requests=1000, errors=5, histogram=fast)
    >>> canary = VariantStats("canary", requests=100, errors=30, histogram=LatencyHistogram({100: 100}))
    >>> a = analyse(stable, canary, CanaryPlan(min_requests=50))
    >>> a.decision, a.reason
    ('rollback', 'canary error rate 0.3000 exceeds stable 0.0050 by 0.2950 > 0.02')
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Literal

from storage.endpoints.store import CANARY, STABLE, CanaryPlan, EndpointStore, VariantStats
from storage.errors import ValidationError

__all__ = ["CanaryAnalysis", "Decision", "analyse", "check_breaches", "run_analysis"]

Decision = Literal["advance", "hold", "rollback"]


@dataclass(frozen=True)
class CanaryAnalysis:
    """The outcome of one analysis: decision, reason and the numbers behind it."""

    decision: Decision
    reason: str
    step: int
    weight: float
    stable: dict[str, Any]
    canary: dict[str, Any]
    error_rate_diff: float
    p99_ratio: float | None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary."""
        return asdict(self)


def analyse(stable: VariantStats, canary: VariantStats, plan: CanaryPlan) -> CanaryAnalysis:
    """Decide advance / hold / rollback from the two variants' stats and the plan's thresholds."""
    diff = canary.error_rate - stable.error_rate if stable.requests else canary.error_rate
    stable_p99, canary_p99 = stable.quantile(0.99), canary.quantile(0.99)
    ratio: float | None = None
    judged = stable.requests >= max(plan.min_requests, 1) and canary.requests >= max(plan.min_requests, 1)
    if judged and stable_p99 > 0 and not math.isnan(stable_p99):
        ratio = canary_p99 / stable_p99

    def result(decision: Decision, reason: str) -> CanaryAnalysis:
        return CanaryAnalysis(
            decision, reason, plan.step + 1, plan.weight, stable.to_dict(), canary.to_dict(), diff, ratio
        )

    error_breach = diff > plan.max_error_rate_diff
    if canary.requests < plan.min_requests:
        allowed = plan.max_error_rate_diff * plan.min_requests + stable.error_rate * plan.min_requests
        if canary.errors > max(1.0, allowed):
            return result(
                "rollback",
                f"canary has {canary.errors} errors in {canary.requests} requests, more than "
                f"{plan.min_requests} requests may have at the thresholds",
            )
        return result("hold", f"canary has {canary.requests} requests, needs {plan.min_requests}")
    if error_breach:
        return result(
            "rollback",
            f"canary error rate {canary.error_rate:.4f} exceeds stable {stable.error_rate:.4f} "
            f"by {diff:.4f} > {plan.max_error_rate_diff}",
        )
    if plan.max_p99_ms is not None and canary_p99 > plan.max_p99_ms:
        return result(
            "rollback", f"canary p99 {canary_p99:.3f} ms exceeds the target max_p99_ms {plan.max_p99_ms:g} ms"
        )
    note = ""
    if ratio is not None and ratio > plan.max_p99_ratio:
        if canary_p99 > plan.p99_floor_ms:
            return result(
                "rollback",
                f"canary p99 {canary_p99:.3f} ms is {ratio:.2f}x stable p99 {stable_p99:.3f} ms "
                f"> {plan.max_p99_ratio}x (above the {plan.p99_floor_ms:g} ms floor)",
            )
        note = (
            f"; p99 {ratio:.2f}x stable not judged: {canary_p99:.3f} ms is under the "
            f"{plan.p99_floor_ms:g} ms floor"
        )
    return result(
        "advance", f"canary within thresholds at {plan.weight:g}% ({canary.requests} requests){note}"
    )


def _step_since(plan: CanaryPlan) -> datetime | None:
    return datetime.fromisoformat(plan.step_started_at) if plan.step_started_at else None


def _step_stats(store: EndpointStore, name: str, plan: CanaryPlan) -> tuple[VariantStats, VariantStats]:
    """The stable and canary traffic of the current step.

    At a high canary weight (100 % at the last step) the stable variant gets too
    few requests in the step to be a baseline; its traffic over the endpoint's
    whole recorded history is the baseline then.
    """
    stats = store.stats(name, since=_step_since(plan))
    stable = stats.get(STABLE, VariantStats(STABLE))
    if stable.requests < max(plan.min_requests, 1):
        stable = store.stats(name).get(STABLE, stable)
    return stable, stats.get(CANARY, VariantStats(CANARY))


def run_analysis(
    store: EndpointStore, name: str, *, apply: bool = True, advance: bool = True, actor: str | None = None
) -> CanaryAnalysis:
    """Analyse the running canary of endpoint ``name`` and (with ``apply``) act on the decision.

    Args:
        store: The endpoint store.
        name: The endpoint.
        apply: Change the endpoint: rollback sets the canary weight to 0, advance
            moves to the next step, hold records the decision.
        advance: When False an ``advance`` decision only records ``hold`` (used by
            the breach watcher, which rolls back but never moves a canary forward).
        actor: Recorded as who decided.
    """
    endpoint = store.get(name)
    plan = endpoint.canary
    if endpoint.policy != "canary" or plan is None or plan.status != "running":
        raise ValidationError(f"endpoint {name!r} has no running canary")
    stable, canary = _step_stats(store, name, plan)
    result = analyse(stable, canary, plan)
    if not apply:
        return result
    who = actor or "canary-analysis"
    if result.decision == "rollback":
        store.rollback_canary(name, reason=result.reason, actor=who, analysis=result.to_dict())
    elif result.decision == "advance" and advance:
        store.advance_canary(name, actor=who, analysis=result.to_dict())
    else:
        store.record_decision(name, "hold", result.to_dict(), actor=who)
    return result


def check_breaches(store: EndpointStore, *, actor: str = "canary-guard") -> dict[str, CanaryAnalysis]:
    """Roll back every running canary that breaches its thresholds now (never advances one).

    A server or supervisor calls this every few seconds, so a failing canary is
    stopped between the steps of a rollout too. Returns the rolled-back endpoints.
    """
    rolled: dict[str, CanaryAnalysis] = {}
    for endpoint in store.list():
        plan = endpoint.canary
        if endpoint.policy != "canary" or plan is None or plan.status != "running":
            continue
        result = analyse(*_step_stats(store, endpoint.name, plan), plan)
        if result.decision == "rollback":
            try:
                store.rollback_canary(
                    endpoint.name, reason=result.reason, actor=actor, analysis=result.to_dict()
                )
            except ValidationError:  # another replica's guard or a flow rolled it back first
                continue
            rolled[endpoint.name] = result
    return rolled
