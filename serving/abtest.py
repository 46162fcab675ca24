"""A/B reports: per-variant traffic, outcome differences with significance, sample-ratio mismatch.

Traffic per variant (requests, p50/p95/p99 latency, error rate) comes from the
stats every replica flushed. Outcomes are numbers per request reported back
(a conversion 0/1, a revenue, a correct prediction): either stored with the
endpoint, or derived by joining ground truth to the prediction log by request
id (:func:`outcomes_from_ground_truth`). Binary outcomes are compared with a
two-proportion z-test, continuous ones with Welch's t-test.

The sample-ratio-mismatch (SRM) check is a chi-square goodness-of-fit test of
the requests each variant got against its configured weight: a tiny p-value
means the assignment is broken and the outcome comparison is not trustworthy.

Example:
    >>> z, p = two_proportion_z_test(120, 1000, 150, 1000)
    >>> round(z, 3), round(p, 4)
    (1.963, 0.0496)
    >>> chi2, p = srm_chi_square([5100, 4900], [0.5, 0.5])
    >>> round(chi2, 2), p > 0.01
    (4.0, True)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from scipy import special, stats

from storage.endpoints.store import Endpoint, EndpointStore
from storage.errors import ValidationError

__all__ = [
    "ABReport",
    "Comparison",
    "ab_report",
    "compare_outcomes",
    "ground_truth_outcomes",
    "outcomes_from_ground_truth",
    "promote_winner",
    "srm_chi_square",
    "two_proportion_z_test",
    "welch_t_test",
]


def two_proportion_z_test(successes_a: int, n_a: int, successes_b: int, n_b: int) -> tuple[float, float]:
    """Pooled two-proportion z-test of B against A: ``(z, two-sided p)``."""
    if n_a <= 0 or n_b <= 0:
        return math.nan, math.nan
    p_a, p_b = successes_a / n_a, successes_b / n_b
    pooled = (successes_a + successes_b) / (n_a + n_b)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    if se == 0:
        return 0.0, 1.0
    z = (p_b - p_a) / se
    return z, float(math.erfc(abs(z) / math.sqrt(2)))


def welch_t_test(a: Sequence[float], b: Sequence[float]) -> tuple[float, float, float]:
    """Welch's unequal-variance t-test of B against A: ``(t, degrees of freedom, two-sided p)``."""
    n_a, n_b = len(a), len(b)
    if n_a < 2 or n_b < 2:
        return math.nan, math.nan, math.nan
    m_a, m_b = sum(a) / n_a, sum(b) / n_b
    v_a = sum((x - m_a) ** 2 for x in a) / (n_a - 1)
    v_b = sum((x - m_b) ** 2 for x in b) / (n_b - 1)
    se2 = v_a / n_a + v_b / n_b
    if se2 == 0:
        return 0.0, float(n_a + n_b - 2), 1.0
    t = (m_b - m_a) / math.sqrt(se2)
    df = se2**2 / ((v_a / n_a) ** 2 / (n_a - 1) + (v_b / n_b) ** 2 / (n_b - 1))
    p = float(2 * special.stdtr(df, -abs(t)))
    return t, df, p


def srm_chi_square(observed: Sequence[int], weights: Sequence[float]) -> tuple[float, float]:
    """Chi-square goodness of fit of observed counts against weights: ``(statistic, p)``."""
    total, weight_sum = sum(observed), sum(weights)
    if total == 0 or weight_sum <= 0 or len(observed) < 2:
        return 0.0, 1.0
    expected = [total * w / weight_sum for w in weights]
    if any(e == 0 for e in expected):
        extra = sum(o for o, e in zip(observed, expected, strict=True) if e == 0)
        return (math.inf, 0.0) if extra else (0.0, 1.0)
    chi2 = sum((o - e) ** 2 / e for o, e in zip(observed, expected, strict=True))
    return chi2, float(special.chdtrc(len(observed) - 1, chi2))


@dataclass(frozen=True)
class Comparison:
    """One variant's outcome against the control."""

    variant: str
    control: str
    test: str
    n: int
    n_control: int
    mean: float
    mean_control: float
    difference: float
    relative_difference: float | None
    ci_low: float
    ci_high: float
    statistic: float
    p_value: float
    significant: bool


@dataclass
class ABReport:
    """A/B report of an endpoint."""

    endpoint: str
    policy: str
    weights: dict[str, float]
    traffic: dict[str, dict[str, Any]]
    srm_chi2: float
    srm_p_value: float
    srm_ok: bool
    comparisons: list[Comparison] = field(default_factory=list)
    alpha: float = 0.05

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary (infinities and NaN as None)."""

        def clean(value: Any) -> Any:
            if isinstance(value, float) and not math.isfinite(value):
                return None
            if isinstance(value, dict):
                return {k: clean(v) for k, v in value.items()}
            if isinstance(value, list):
                return [clean(v) for v in value]
            return value

        result: dict[str, Any] = clean(asdict(self))
        return result


def _binary(values: Sequence[float]) -> bool:
    return all(v in (0.0, 1.0) for v in values)


def compare_outcomes(
    control: str, a: Sequence[float], variant: str, b: Sequence[float], *, alpha: float = 0.05
) -> Comparison:
    """Compare variant B's outcomes with the control's: difference, 1-alpha interval, p-value."""
    n_a, n_b = len(a), len(b)
    m_a = sum(a) / n_a if n_a else math.nan
    m_b = sum(b) / n_b if n_b else math.nan
    diff = m_b - m_a
    z_crit = float(stats.norm.ppf(1 - alpha / 2))
    if _binary(a) and _binary(b):
        test = "two-proportion z"
        statistic, p = two_proportion_z_test(int(sum(a)), n_a, int(sum(b)), n_b)
        se = math.sqrt(m_a * (1 - m_a) / n_a + m_b * (1 - m_b) / n_b) if n_a and n_b else math.nan
        half = z_crit * se
    else:
        test = "welch t"
        statistic, df, p = welch_t_test(a, b)
        if n_a >= 2 and n_b >= 2:
            v_a = sum((x - m_a) ** 2 for x in a) / (n_a - 1)
            v_b = sum((x - m_b) ** 2 for x in b) / (n_b - 1)
            half = float(stats.t.ppf(1 - alpha / 2, df)) * math.sqrt(v_a / n_a + v_b / n_b) if df > 0 else 0.0
        else:
            half = math.nan
    relative = diff / m_a if m_a not in (0.0,) and not math.isnan(m_a) else None
    significant = bool(not math.isnan(p) and p < alpha)
    return Comparison(
        variant,
        control,
        test,
        n_b,
        n_a,
        m_b,
        m_a,
        diff,
        relative,
        diff - half,
        diff + half,
        statistic,
        p,
        significant,
    )


def _control(endpoint: Endpoint, control: str | None) -> str:
    names = [v.name for v in endpoint.live]
    if control is None:
        return names[0]
    if control not in names:
        raise ValidationError(f"control {control!r} is not a live variant of {endpoint.name!r} ({names})")
    return control


def ab_report(
    store: EndpointStore,
    name: str,
    *,
    since: datetime | None = None,
    control: str | None = None,
    outcomes: Mapping[str, Sequence[float]] | None = None,
    alpha: float = 0.05,
    srm_alpha: float = 0.001,
) -> ABReport:
    """The A/B report of endpoint ``name``.

    Args:
        store: The endpoint store.
        name: The endpoint.
        since: Count traffic from this time (all when None).
        control: The variant others are compared with (the first live one by default).
        outcomes: Outcome values per variant; the endpoint's stored outcomes when None.
        alpha: Significance level of the outcome comparisons.
        srm_alpha: p-value below which the sample ratio is called mismatched.
    """
    endpoint = store.get(name)
    base = _control(endpoint, control)
    traffic = store.stats(name, since=since)
    live = endpoint.live
    weighted = [v for v in live if v.weight > 0]
    observed = [traffic[v.name].requests if v.name in traffic else 0 for v in weighted]
    chi2, srm_p = srm_chi_square(observed, [v.weight for v in weighted])
    from storage.endpoints.store import VariantStats

    report = ABReport(
        endpoint=name,
        policy=endpoint.policy,
        weights=endpoint.weights(),
        traffic={v.name: traffic.get(v.name, VariantStats(v.name)).to_dict() for v in live},
        srm_chi2=chi2,
        srm_p_value=srm_p,
        srm_ok=srm_p >= srm_alpha,
        alpha=alpha,
    )
    values = dict(outcomes) if outcomes is not None else store.outcomes(name)
    control_values = list(values.get(base, []))
    for v in live:
        if v.name == base or not values.get(v.name) or not control_values:
            continue
        report.comparisons.append(
            compare_outcomes(base, control_values, v.name, list(values[v.name]), alpha=alpha)
        )
    return report


def outcomes_from_ground_truth(
    predictions: Any, labels: Any, *, endpoint: str, metric: str = "accuracy"
) -> dict[str, list[float]]:
    """Per-variant outcomes from the prediction log joined with ground truth by request id.

    Args:
        predictions: The prediction log frame (``request_id``, ``endpoint``, ``variant``,
            ``prediction`` as JSON, ``status``); shadow rows are ignored.
        labels: The ground-truth frame (``request_id``, ``label``).
        endpoint: Only predictions sent to this endpoint.
        metric: ``accuracy`` (1 when the prediction equals the label) or
            ``squared_error`` (``(prediction - label)²``, lower is better).
    """
    import json

    import pandas as pd

    if metric not in ("accuracy", "squared_error"):
        raise ValidationError(f"metric {metric!r} must be 'accuracy' or 'squared_error'")
    frame = pd.DataFrame(predictions)
    for column in ("request_id", "endpoint", "variant", "prediction"):
        if column not in frame.columns:
            raise ValidationError(f"the prediction log has no column {column!r}")
    frame = frame[(frame["endpoint"] == endpoint) & ~frame["variant"].fillna("").str.startswith("shadow:")]
    if "status" in frame.columns:
        frame = frame[frame["status"] == "ok"]
    joined = frame.merge(pd.DataFrame(labels)[["request_id", "label"]], on="request_id", how="inner")
    out: dict[str, list[float]] = {}
    for row in joined.itertuples(index=False):
        predicted = json.loads(row.prediction) if isinstance(row.prediction, str) else row.prediction
        if isinstance(predicted, list) and len(predicted) == 1:
            predicted = predicted[0]
        if isinstance(predicted, dict) and "label" in predicted:
            # a classifier row {"label", "score"}: accuracy on the label, squared error on the score (Brier)
            predicted = (
                predicted["label"] if metric == "accuracy" else predicted.get("score", predicted["label"])
            )
        elif isinstance(predicted, dict) and len(predicted) == 1:
            predicted = next(iter(predicted.values()))
        if metric == "accuracy":
            value = 1.0 if str(predicted) == str(row.label) or _num_eq(predicted, row.label) else 0.0
        else:
            value = (float(predicted) - float(row.label)) ** 2
        out.setdefault(str(row.variant), []).append(value)
    return out


def ground_truth_outcomes(
    store: EndpointStore, name: str, *, metric: str = "accuracy", since: datetime | None = None
) -> dict[str, list[float]]:
    """Per-variant outcomes of endpoint ``name`` from the prediction log joined with the ground-truth log.

    Both logs are found through the ``MLOPS_*`` settings (the server writes them).
    """
    import pandas as pd

    from storage.monitoring.ground_truth import GroundTruthLog
    from storage.monitoring.prediction_log import PredictionLog

    endpoint = store.get(name)
    log = PredictionLog.from_settings()
    frames = [log.read(model=m, start=since) for m in sorted({v.model for v in endpoint.live})]
    frames = [f for f in frames if len(f)]
    if not frames:
        return {}
    predictions = pd.concat(frames, ignore_index=True)
    return outcomes_from_ground_truth(
        predictions, GroundTruthLog.from_settings().read(), endpoint=name, metric=metric
    )


def _num_eq(a: Any, b: Any) -> bool:
    try:
        return float(a) == float(b)
    except (TypeError, ValueError):
        return False


def promote_winner(
    store: EndpointStore,
    name: str,
    *,
    control: str | None = None,
    outcomes: Mapping[str, Sequence[float]] | None = None,
    higher_is_better: bool = True,
    alpha: float = 0.05,
    force: str | None = None,
    actor: str | None = None,
) -> tuple[str, ABReport]:
    """Send all traffic to the significantly best variant (or to ``force``); recorded and audited.

    Refuses when the sample ratio is mismatched or no variant differs
    significantly from the control in the better direction (then the control
    stays unless ``force`` names a variant). Returns the winner and the report.
    """
    report = ab_report(store, name, control=control, outcomes=outcomes, alpha=alpha)
    if force is None:
        if not report.srm_ok:
            raise ValidationError(
                f"endpoint {name!r} has a sample ratio mismatch (p={report.srm_p_value:.2g}): "
                "fix the assignment first"
            )
        better = [
            c
            for c in report.comparisons
            if c.significant and (c.difference > 0) == higher_is_better and c.difference != 0
        ]
        if not better:
            detail = ", ".join(
                f"{c.variant}: diff {c.difference:+.4g}, p={c.p_value:.3g}" for c in report.comparisons
            )
            raise ValidationError(
                f"no variant of {name!r} beats the control significantly ({detail or 'no outcomes'})"
            )
        winner = max(better, key=lambda c: c.difference if higher_is_better else -c.difference).variant
    else:
        winner = force
    endpoint = store.get(name)
    if winner not in {v.name for v in endpoint.live}:
        raise ValidationError(f"variant {winner!r} is not a live variant of {name!r}")
    weights = {v.name: (100.0 if v.name == winner else 0.0) for v in endpoint.live}
    store.set_weights(name, weights, actor=actor, reason=f"A/B winner {winner}")
    store.record_decision(name, "promote_winner", {"winner": winner, "report": report.to_dict()}, actor=actor)
    return winner, report
