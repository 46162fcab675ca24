"""Fairness metrics from confusion counts, and their bootstrap.

Rows become counts once: each protected attribute is factorized to group
codes, and one ``np.bincount`` over the joint code counts the confusion cells
of every combination of groups that occurs.

Every bias metric depends on the data only through each group's confusion
counts ``[tn, fp, fn, tp]`` (cell ``2 * y_true + y_pred``). This module works
on count arrays of shape ``(..., groups, 4)``, so the point estimate (no
leading axis) and 1,000 bootstrap resamples (a leading axis of 1,000) go
through the same code.

Resampling the n rows with replacement gives each row a count that is
multinomial(n, 1/n each); summed into cells, the cell counts are
multinomial(n, cell count / n). Drawing those cell counts directly is the
same bootstrap, and costs (groups x 4) numbers per resample instead of n.
The draw is made once over the joint groups (all attributes together) and
summed into each attribute or intersection, so one resample is one resampled
data set for every grouping of the report.

Example:
    >>> import numpy as np
    >>> counts = np.array([[40, 10, 10, 40], [45, 5, 30, 20]])  # two groups
    >>> rates = group_rates(counts)
    >>> [round(float(r), 2) for r in rates.selection_rate]
    [0.5, 0.25]
    >>> eligible = eligible_groups(rates, min_group_size=30)
    >>> round(float(metric_values(rates, eligible)["statistical_parity_difference"]), 2)
    0.25
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from storage.errors import ValidationError

#: The metrics of a bias report, in report order.
METRICS: tuple[str, ...] = (
    "statistical_parity_difference",
    "statistical_parity_ratio",
    "disparate_impact",
    "equal_opportunity_difference",
    "equalized_odds_difference",
)

FloatArray = NDArray[np.float64]
_CELLS_PER_CHUNK = 4_000_000  # bootstrap counts held at once (resamples x joint groups x 4)


@dataclass(frozen=True)
class Rates:
    """Per-group rates (shape ``(..., groups)``); NaN where the denominator is 0."""

    size: FloatArray
    positives: FloatArray
    negatives: FloatArray
    selection_rate: FloatArray
    true_positive_rate: FloatArray
    false_positive_rate: FloatArray


def group_rates(counts: NDArray[np.floating] | NDArray[np.integer]) -> Rates:
    """Selection rate, TPR and FPR of each group from ``[tn, fp, fn, tp]`` counts.

    Args:
        counts: Array of shape ``(..., groups, 4)``.

    Returns:
        The rates, each of shape ``(..., groups)``. A TPR with no positives (or
        an FPR with no negatives) is NaN, never 0.
    """
    c = np.asarray(counts, dtype=np.float64)
    tn, fp, fn, tp = c[..., 0], c[..., 1], c[..., 2], c[..., 3]
    size = tn + fp + fn + tp
    positives = fn + tp
    negatives = tn + fp
    with np.errstate(invalid="ignore", divide="ignore"):
        return Rates(
            size=size,
            positives=positives,
            negatives=negatives,
            selection_rate=(fp + tp) / size,
            true_positive_rate=tp / positives,
            false_positive_rate=fp / negatives,
        )


def _spread(values: FloatArray, eligible: NDArray[np.bool_]) -> tuple[FloatArray, FloatArray]:
    """Max and min over the eligible groups, ignoring NaN (NaN when none is left)."""
    v = values[..., eligible]
    if v.shape[-1] == 0:
        nan = np.full(v.shape[:-1], np.nan)
        return nan, nan
    return np.fmax.reduce(v, axis=-1), np.fmin.reduce(v, axis=-1)


@dataclass(frozen=True)
class Eligible:
    """Which groups each kind of metric may judge (boolean masks over groups)."""

    selection: NDArray[np.bool_]
    """Groups with at least the minimum rows (parity, disparate impact)."""
    opportunity: NDArray[np.bool_]
    """Groups with at least the minimum positives (equal opportunity)."""
    odds: NDArray[np.bool_]
    """Groups with at least the minimum positives and negatives (equalized odds)."""

    def for_metric(self, metric: str) -> NDArray[np.bool_]:
        """The mask that ``metric`` uses."""
        if metric == "equal_opportunity_difference":
            return self.opportunity
        return self.odds if metric == "equalized_odds_difference" else self.selection


def eligible_groups(rates: Rates, min_group_size: int) -> Eligible:
    """The groups large enough to judge, per kind of metric."""
    positives_ok = rates.positives >= min_group_size
    return Eligible(
        selection=rates.size >= min_group_size,
        opportunity=positives_ok,
        odds=positives_ok & (rates.negatives >= min_group_size),
    )


def metric_values(rates: Rates, eligible: Eligible) -> dict[str, FloatArray]:
    """The report's metrics over the groups eligible for each.

    Args:
        rates: Per-group rates from :func:`group_rates`.
        eligible: The groups each metric may use (fixed from the observed data,
            also for bootstrap resamples).

    Returns:
        Metric name to value (shape of the leading axes), as fairlearn defines
        them: parity difference is max − min selection rate, the ratios are
        min / max selection rate, equal opportunity is max − min TPR, equalized
        odds is the larger of the TPR and FPR differences. NaN where fewer than
        one eligible group has a defined rate.
    """
    sr_max, sr_min = _spread(rates.selection_rate, eligible.selection)
    tpr_max, tpr_min = _spread(rates.true_positive_rate, eligible.opportunity)
    eo_tpr_max, eo_tpr_min = _spread(rates.true_positive_rate, eligible.odds)
    fpr_max, fpr_min = _spread(rates.false_positive_rate, eligible.odds)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = sr_min / sr_max
    return {
        "statistical_parity_difference": sr_max - sr_min,
        "statistical_parity_ratio": ratio,
        "disparate_impact": ratio,
        "equal_opportunity_difference": tpr_max - tpr_min,
        "equalized_odds_difference": np.fmax(eo_tpr_max - eo_tpr_min, fpr_max - fpr_min),
    }


def resample_counts(
    joint_counts: NDArray[np.integer], n_resamples: int, rng: np.random.Generator
) -> NDArray[np.int64]:
    """Bootstrap resamples of the joint cell counts.

    Args:
        joint_counts: ``(groups, 4)`` counts of the observed data.
        n_resamples: How many resampled data sets to draw.
        rng: The random generator (seeded by the caller).

    Returns:
        ``(n_resamples, groups, 4)`` counts, each resample a multinomial draw of
        the total over the observed cell shares: the same distribution as
        counting rows drawn with replacement.
    """
    flat = np.asarray(joint_counts, dtype=np.int64).ravel()
    total = int(flat.sum())
    draws = rng.multinomial(total, flat / total, size=n_resamples)
    return draws.reshape(n_resamples, *np.shape(joint_counts)).astype(np.int64)


def marginalize(joint: NDArray[np.integer], membership: NDArray[np.intp], n_groups: int) -> FloatArray:
    """Sum joint-group counts ``(..., joint groups, 4)`` into coarser groups.

    ``membership[j]`` is the coarse group of joint group ``j``.
    """
    indicator = np.zeros((n_groups, membership.size))
    indicator[membership, np.arange(membership.size)] = 1.0
    return np.asarray(indicator @ np.asarray(joint, dtype=np.float64))


def percentile_interval(samples: FloatArray, confidence: float) -> tuple[float, float] | None:
    """The percentile bootstrap interval of ``samples``, or None if all are NaN."""
    finite = samples[~np.isnan(samples)]
    if finite.size == 0:
        return None
    alpha = 1.0 - confidence
    low, high = np.quantile(finite, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def factorize_attribute(name: str, values: ArrayLike, rows: int) -> tuple[NDArray[np.intp], list[str]]:
    """Group codes 0..k-1 and the group names of one protected attribute."""
    series = values if isinstance(values, pd.Series | pd.Categorical) else np.asarray(values, dtype=object)
    if isinstance(series, np.ndarray) and series.ndim != 1:
        raise ValidationError(
            f"protected attribute {name!r} must be one-dimensional; got shape {series.shape}"
        )
    if len(series) != rows:
        raise ValidationError(f"protected attribute {name!r} has {len(series)} values but y_true has {rows}")
    try:
        codes, uniques = pd.factorize(series, sort=True)
    except TypeError:  # values of types that do not sort together
        codes, uniques = pd.factorize(series)
    missing = int((codes < 0).sum())
    if missing:
        raise ValidationError(f"protected attribute {name!r} has {missing} missing values (NaN/None)")
    labels = [str(v) for v in np.asarray(uniques, dtype=object)]
    if len(labels) < 2:
        raise ValidationError(
            f"protected attribute {name!r} has a single group {labels[0]!r}: nothing to compare"
        )
    return np.asarray(codes, dtype=np.intp), labels


def plan_groupings(names: list[str], intersections: Sequence[Sequence[str]] | None) -> list[tuple[int, ...]]:
    """Attribute positions of each grouping: every attribute alone, then the intersections."""
    singles = [(i,) for i in range(len(names))]
    if intersections is None:
        return singles + ([tuple(range(len(names)))] if len(names) > 1 else [])
    out: list[tuple[int, ...]] = list(singles)
    for combo in intersections:
        if isinstance(combo, str) or len(combo) < 2:
            raise ValidationError(f"an intersection names at least two attributes; got {combo!r}")
        unknown = [a for a in combo if a not in names]
        if unknown:
            raise ValidationError(f"intersection {list(combo)!r} names unknown attributes {unknown!r}")
        key = tuple(sorted({names.index(a) for a in combo}))
        if key not in out:
            out.append(key)
    return out


def joint_counts(
    codes: list[NDArray[np.intp]], levels: list[int], cell: NDArray[np.int8]
) -> tuple[NDArray[np.int64], NDArray[np.intp]]:
    """Confusion counts per observed joint group ``(J, 4)`` and each one's level per attribute ``(J, k)``."""
    joint = np.zeros(cell.size, dtype=np.int64)
    for c, k in zip(codes, levels, strict=True):
        joint *= k
        joint += c
    space = math.prod(levels)
    if space <= max(4 * cell.size, 1 << 16):
        counts = np.bincount(joint * 4 + cell, minlength=space * 4).reshape(space, 4)
        observed = np.flatnonzero(counts.sum(axis=1))
        counts = counts[observed]
    else:  # too many combinations to count densely: number the observed ones
        dense, observed = pd.factorize(joint, sort=True)
        counts = np.bincount(dense * 4 + cell, minlength=len(observed) * 4).reshape(len(observed), 4)
    member_levels = np.stack(np.unravel_index(np.asarray(observed, dtype=np.int64), levels), axis=1)
    return counts.astype(np.int64), member_levels.astype(np.intp)


def membership(
    member_levels: NDArray[np.intp], grouping: tuple[int, ...]
) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """Each joint group's group in ``grouping``, and each group's levels."""
    sub = member_levels[:, list(grouping)]
    uniq, inverse = np.unique(sub, axis=0, return_inverse=True)
    return inverse.reshape(-1).astype(np.intp), uniq


def bootstrap_metrics(
    joint: NDArray[np.int64],
    members: list[tuple[NDArray[np.intp], NDArray[np.intp]]],
    eligibles: list[Eligible],
    n_resamples: int,
    seed: int | None,
) -> list[dict[str, FloatArray]]:
    """Every metric of every grouping on ``n_resamples`` resampled data sets.

    Args:
        joint: ``(J, 4)`` counts of the joint groups.
        members: Per grouping, each joint group's group and the groups' levels (:func:`membership`).
        eligibles: Per grouping, the groups judged on the observed data (kept for every resample).
        n_resamples: How many resamples.
        seed: Seed of the generator.

    Returns:
        Per grouping, metric name to an array of ``n_resamples`` values.
    """
    rng = np.random.default_rng(seed)
    step = max(1, _CELLS_PER_CHUNK // joint.size)
    parts: list[list[dict[str, FloatArray]]] = [[] for _ in members]
    for start in range(0, n_resamples, step):
        draws = resample_counts(joint, min(step, n_resamples - start), rng)
        for i, ((member_of, levels), eligible) in enumerate(zip(members, eligibles, strict=True)):
            parts[i].append(metric_values(group_rates(marginalize(draws, member_of, len(levels))), eligible))
    return [{m: np.concatenate([p[m] for p in chunks]) for m in METRICS} for chunks in parts]
