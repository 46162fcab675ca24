"""Bias detection: group fairness metrics with bootstrap intervals and verdicts.

:func:`detect_bias` takes labels, predictions (or scores) and protected
attributes, and reports for each attribute and each intersection of
attributes:

- ``statistical_parity_difference``: max − min selection rate (fairlearn's
  ``demographic_parity_difference``); biased above the threshold (0.1);
- ``statistical_parity_ratio``: min / max selection rate
  (``demographic_parity_ratio``); biased below the threshold (0.8);
- ``disparate_impact``: the same ratio judged by the four-fifths (80%) rule,
  with each group's selection rate as a share of the most selected group's;
- ``equal_opportunity_difference``: max − min true positive rate
  (``equal_opportunity_difference``); biased above 0.1;
- ``equalized_odds_difference``: the larger of the TPR and FPR differences
  (``equalized_odds_difference``, ``agg="worst_case"``); biased above 0.1.

Values equal fairlearn's on the same groups. Groups too small to judge are
left out of a metric and listed as such: a group needs ``min_group_size``
rows for the selection-rate metrics, that many positives (``y_true == 1``)
for equal opportunity, and that many positives and negatives for equalized
odds (fairlearn counts the TPR of a group without positives as 0; here it is
undefined and the group is too small). A metric with fewer than two groups
left is "insufficient data". The
verdict is taken on the point estimate; the percentile bootstrap interval
(``n_resamples`` resampled data sets, seeded) says how sure it is. Near a true
difference of 0 the max − min metrics are biased upwards, so their intervals
then sit above the true value.

The report's records (:class:`BiasReport` and its parts, :class:`BiasThresholds`)
live in :mod:`tasks.governance.bias_report` and are importable from here; the
group counts and the bootstrap in :mod:`tasks.governance.bias_bootstrap`.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> sex = rng.choice(["F", "M"], 2000)
    >>> y_true = rng.integers(0, 2, 2000)
    >>> y_pred = (rng.random(2000) < np.where(sex == "M", 0.6, 0.3)).astype(int)
    >>> report = detect_bias(y_true, y_pred, protected={"sex": sex}, n_resamples=200)
    >>> result = report.get("sex").metric("disparate_impact")
    >>> result.verdict, result.threshold, round(result.value, 2)
    ('biased', 0.8, 0.47)
    >>> report.passed
    False
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from prefect import task

from storage.errors import ValidationError
from tasks.governance.bias_bootstrap import (
    METRICS,
    bootstrap_metrics,
    eligible_groups,
    factorize_attribute,
    group_rates,
    marginalize,
    membership,
    metric_values,
    percentile_interval,
    plan_groupings,
)
from tasks.governance.bias_bootstrap import joint_counts as count_joint_groups
from tasks.governance.bias_report import (
    AttributeReport,
    BiasReport,
    BiasThresholds,
    ConfidenceInterval,
    GroupStats,
    MetricResult,
    Verdict,
    is_ratio,
)

__all__ = [
    "AttributeReport",
    "BiasReport",
    "BiasThresholds",
    "ConfidenceInterval",
    "GroupStats",
    "MetricResult",
    "detect_bias",
    "detect_bias_task",
]


# ---------------------------------------------------------------- validation


def _show(values: Sequence[Any], limit: int = 10) -> str:
    shown = [v.item() if isinstance(v, np.generic) else v for v in values[:limit]]
    return repr(shown)[:-1] + (", ...]" if len(values) > limit else "]")


def _sorted_unique(arr: NDArray[Any]) -> list[Any]:
    uniques = pd.unique(pd.Series(arr).dropna()).tolist()
    try:
        return sorted(uniques)
    except TypeError:
        return uniques


def _binary(name: str, values: ArrayLike) -> NDArray[np.int8]:
    """``values`` as 0/1 int8, or a ValidationError naming the problem."""
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValidationError(f"{name} must be one-dimensional; got shape {arr.shape}")
    if arr.size == 0:
        raise ValidationError(f"{name} is empty")
    if arr.dtype == np.bool_:
        return arr.astype(np.int8)
    if arr.dtype.kind in "fcOUSMm":
        missing = int(pd.isna(arr).sum()) if arr.dtype.kind in "fcOMm" else 0
        if missing:
            raise ValidationError(f"{name} has {missing} missing values (NaN); drop or fill them first")
    if arr.dtype.kind in "iuf":
        if ((arr == 0) | (arr == 1)).all():
            return arr.astype(np.int8)
    elif arr.dtype.kind == "O":
        found = _sorted_unique(arr)
        if set(found) <= {0, 1} and all(isinstance(v, int | float | np.number) for v in found):
            return arr.astype(np.int8)
    found = _sorted_unique(arr)
    raise ValidationError(f"{name} must be binary (0/1); found values {_show(found)}")


def _predictions(y_pred: ArrayLike | None, scores: ArrayLike | None, threshold: float) -> NDArray[np.int8]:
    if (y_pred is None) == (scores is None):
        raise ValidationError("give either y_pred or scores (with decision_threshold), not both or neither")
    if y_pred is not None:
        return _binary("y_pred", y_pred)
    arr = np.asarray(scores, dtype=np.float64)
    if arr.ndim != 1:
        raise ValidationError(f"scores must be one-dimensional; got shape {arr.shape}")
    missing = int(np.isnan(arr).sum())
    if missing:
        raise ValidationError(f"scores has {missing} missing values (NaN); drop or fill them first")
    return (arr >= threshold).astype(np.int8)


def _check_settings(min_group_size: int, confidence: float, n_resamples: int) -> None:
    if min_group_size < 1:
        raise ValidationError(f"min_group_size must be at least 1; got {min_group_size}")
    if not 0 < confidence < 1:
        raise ValidationError(f"confidence must be between 0 and 1; got {confidence}")
    if n_resamples < 0:
        raise ValidationError(f"n_resamples must be 0 (no intervals) or more; got {n_resamples}")


# ---------------------------------------------------------------- results


def _detail(metric: str, value: float, limit: float, rates: dict[str, float], parts: dict[str, float]) -> str:
    """One sentence saying why the verdict is what it is."""
    if len(rates) < 2:
        return f"{len(rates)} group(s) large enough to judge; need at least 2"
    if math.isnan(value):
        return "undefined: no group large enough to judge has a positive prediction"
    hi, lo = max(rates, key=rates.__getitem__), min(rates, key=rates.__getitem__)
    op = ">=" if is_ratio(metric) else "<="
    meets = value >= limit if op == ">=" else value <= limit
    head = f"{value:.4g} {'meets' if meets else 'fails'} {op} {limit:g}"
    if metric == "disparate_impact":
        below = [f"{g} ({rates[g] / rates[hi]:.0%})" for g in rates if rates[g] < limit * rates[hi]]
        tail = f"; below {limit:.0%} of it: {', '.join(below)}" if below else ""
        return f"{head} (four-fifths rule); most selected {hi} ({rates[hi]:.4g}){tail}"
    if parts:
        return ", ".join([head] + [f"{k.replace('_', ' ')} {v:.4g}" for k, v in parts.items()])
    what = "true positive rate" if metric == "equal_opportunity_difference" else "selection rate"
    return f"{head}; {what} from {rates[lo]:.4g} ({lo}) to {rates[hi]:.4g} ({hi})"


def _attribute_report(
    attrs: tuple[str, ...],
    levels: NDArray[np.intp],
    level_names: list[list[str]],
    counts: NDArray[np.floating],
    boot: dict[str, NDArray[np.float64]] | None,
    min_group_size: int,
    thresholds: BiasThresholds,
    confidence: float,
    n_resamples: int,
) -> AttributeReport:
    rates = group_rates(counts)
    eligible = eligible_groups(rates, min_group_size)
    values = metric_values(rates, eligible)
    labels = [
        " & ".join(f"{a}={names[i]}" for a, names, i in zip(attrs, level_names, row, strict=True))
        for row in levels
    ]
    masks = {metric: eligible.for_metric(metric) for metric in METRICS}
    groups = tuple(
        GroupStats(
            label=labels[g],
            values={a: names[i] for a, names, i in zip(attrs, level_names, levels[g], strict=True)},
            size=int(rates.size[g]),
            positives=int(rates.positives[g]),
            negatives=int(rates.negatives[g]),
            selection_rate=float(rates.selection_rate[g]),
            true_positive_rate=float(rates.true_positive_rate[g]),
            false_positive_rate=float(rates.false_positive_rate[g]),
            too_small_for=tuple(m for m in METRICS if not masks[m][g]),
        )
        for g in range(len(labels))
    )
    results = []
    for metric in METRICS:
        mask = masks[metric]
        judged = [labels[g] for g in np.flatnonzero(mask)]
        small = tuple(labels[g] for g in np.flatnonzero(~mask))
        value = float(values[metric])
        limit = float(getattr(thresholds, metric))
        base = rates.true_positive_rate if metric.startswith("equal") else rates.selection_rate
        per_group = {labels[g]: float(base[g]) for g in np.flatnonzero(mask)}
        verdict: Verdict
        if len(judged) < 2 or math.isnan(value):
            verdict = "insufficient data"
        else:
            verdict = "fair" if thresholds.passes(metric, value) else "biased"
        components: dict[str, float] = {}
        if metric == "equalized_odds_difference" and len(judged) >= 2:
            components = {
                "true_positive_rate_difference": float(np.ptp(rates.true_positive_rate[mask])),
                "false_positive_rate_difference": float(np.ptp(rates.false_positive_rate[mask])),
            }
        detail = _detail(metric, value, limit, per_group, components)
        interval = None
        if boot is not None and verdict != "insufficient data":
            ci = percentile_interval(boot[metric], confidence)
            interval = None if ci is None else ConfidenceInterval(ci[0], ci[1], confidence, n_resamples)
        shown = dict(per_group)
        if metric == "disparate_impact" and per_group and max(per_group.values()) > 0:
            top = max(per_group.values())
            shown = {g: r / top for g, r in per_group.items()}
        results.append(
            MetricResult(
                metric=metric,
                value=value,
                threshold=limit,
                comparison=">=" if is_ratio(metric) else "<=",
                verdict=verdict,
                detail=detail,
                interval=interval,
                groups_judged=tuple(judged),
                groups_too_small=small,
                group_values=shown,
                components=components,
            )
        )
    return AttributeReport(attributes=attrs, groups=groups, metrics=tuple(results))


def detect_bias(
    y_true: ArrayLike,
    y_pred: ArrayLike | None = None,
    *,
    protected: Mapping[str, ArrayLike] | pd.DataFrame,
    scores: ArrayLike | None = None,
    decision_threshold: float = 0.5,
    intersections: Sequence[Sequence[str]] | None = None,
    min_group_size: int = 30,
    thresholds: BiasThresholds | None = None,
    confidence: float = 0.95,
    n_resamples: int = 1000,
    seed: int | None = 0,
) -> BiasReport:
    """Measure group fairness of binary predictions for each protected attribute.

    Args:
        y_true: True labels, 0/1 (or booleans).
        y_pred: Predicted labels, 0/1. Give this or ``scores``.
        protected: Attribute name to one value per row (a mapping or a DataFrame).
        scores: Model scores; ``y_pred`` is then ``scores >= decision_threshold``.
        decision_threshold: The cut applied to ``scores``.
        intersections: Attribute combinations to judge jointly besides each
            attribute alone; default all attributes together (when there are
            two or more); ``[]`` for none.
        min_group_size: Rows (positives, negatives for the TPR/FPR metrics) a
            group needs to be judged.
        thresholds: Where fair ends; :class:`BiasThresholds` defaults if None.
        confidence: Level of the bootstrap intervals.
        n_resamples: Bootstrap resamples; 0 skips the intervals.
        seed: Seed of the bootstrap.

    Returns:
        A :class:`BiasReport`.

    Raises:
        ValidationError: Lengths differ, labels are not binary, values are
            missing, an attribute has a single group, or a setting is out of range.

    Example:
        >>> report = detect_bias([0, 1, 1, 0], [0, 1, 0, 0], protected={"g": ["a", "a", "b", "b"]},
        ...                      min_group_size=1, n_resamples=0)
        >>> report.get("g").metric("statistical_parity_difference").value
        0.5
    """
    _check_settings(min_group_size, confidence, n_resamples)
    thresholds = thresholds or BiasThresholds()
    yt = _binary("y_true", y_true)
    yp = _predictions(y_pred, scores, decision_threshold)
    if yp.size != yt.size:
        raise ValidationError(
            f"y_true has {yt.size} values but {'y_pred' if scores is None else 'scores'} has {yp.size}"
        )
    columns = dict(protected.items()) if isinstance(protected, pd.DataFrame) else dict(protected)
    if not columns:
        raise ValidationError("no protected attributes given")
    names = [str(n) for n in columns]
    factorized = [factorize_attribute(n, v, yt.size) for n, v in zip(names, columns.values(), strict=True)]
    codes = [c for c, _ in factorized]
    level_names = [labels for _, labels in factorized]
    joint_counts, member_levels = count_joint_groups(codes, [len(x) for x in level_names], yt * 2 + yp)
    groupings = plan_groupings(names, intersections)
    members = [membership(member_levels, grouping) for grouping in groupings]
    point = [marginalize(joint_counts, m, len(lv)) for m, lv in members]

    boots: list[dict[str, NDArray[np.float64]]] | None = None
    if n_resamples:
        eligibles = [eligible_groups(group_rates(counts), min_group_size) for counts in point]
        boots = bootstrap_metrics(joint_counts, members, eligibles, n_resamples, seed)

    results = tuple(
        _attribute_report(
            tuple(names[i] for i in grouping),
            levels,
            [level_names[i] for i in grouping],
            counts,
            None if boots is None else boots[i],
            min_group_size,
            thresholds,
            confidence,
            n_resamples,
        )
        for i, (grouping, (_, levels), counts) in enumerate(zip(groupings, members, point, strict=True))
    )
    return BiasReport(
        rows=int(yt.size),
        min_group_size=min_group_size,
        confidence=confidence,
        n_resamples=n_resamples,
        seed=seed,
        thresholds=thresholds,
        results=results,
    )


#: :func:`detect_bias` as a Prefect task (the report is returned, not stored).
detect_bias_task = task(name="detect-bias")(detect_bias)
