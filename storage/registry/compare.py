"""Side-by-side comparison of model versions and winner selection.

Example:
    >>> from storage.registry.compare import pick_winner
    >>> pick_winner({1: 0.91, 2: 0.93}, direction="max", min_improvement=0.01)
    (2, 'version 2 has auc 0.93, 0.02 better than version 1 (bar 0.01)')
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from blocks.metrics import metric_value
from storage.errors import ValidationError
from storage.registry.records import ModelVersion, Record

Direction = Literal["max", "min"]


@dataclass(frozen=True)
class Comparison(Record):
    """Versions side by side on the chosen metrics, and the winner (or None)."""

    model: str
    metrics: list[str]
    rows: list[dict[str, Any]]
    primary: str
    direction: str
    min_improvement: float
    winner: int | None
    reason: str


def pick_winner(
    scores: Mapping[int, float],
    *,
    direction: Direction = "max",
    min_improvement: float = 0.0,
    baseline: int | None = None,
    metric: str = "auc",
) -> tuple[int | None, str]:
    """Choose the best version by one score, or none when the margin is too small.

    With ``baseline`` (e.g. the champion), the best other version must beat the
    baseline by at least ``min_improvement``; otherwise it must beat the runner-up.
    """
    if direction not in ("max", "min"):
        raise ValidationError(f"direction {direction!r} must be 'max' or 'min'")
    if len(scores) < 2:
        raise ValidationError("comparison needs at least two versions")
    sign = 1.0 if direction == "max" else -1.0
    ranked = sorted(scores, key=lambda v: (-sign * scores[v], v))
    if baseline is not None:
        if baseline not in scores:
            raise ValidationError(f"baseline version {baseline} is not among the compared versions")
        best = next(v for v in ranked if v != baseline)
        other = baseline
    else:
        best, other = ranked[0], ranked[1]
    gain = sign * (scores[best] - scores[other])
    if gain < min_improvement or gain <= 0:
        return None, (
            f"no winner: version {best} {metric} {scores[best]:.6g} vs version {other} "
            f"{scores[other]:.6g}, improvement {gain:.6g} is below the bar {min_improvement:g}"
        )
    return best, (
        f"version {best} has {metric} {scores[best]:.6g}, {gain:.6g} better than "
        f"version {other} (bar {min_improvement:g})"
    )


def compare_versions(
    versions: Sequence[ModelVersion],
    *,
    primary: str,
    metrics: Sequence[str] | None = None,
    direction: Direction = "max",
    min_improvement: float = 0.0,
    baseline: int | None = None,
) -> Comparison:
    """Compare versions of one model on ``metrics`` and pick a winner by ``primary``."""
    if not versions:
        raise ValidationError("comparison needs at least two versions")
    if not math.isfinite(min_improvement) or min_improvement < 0:
        raise ValidationError(f"min_improvement {min_improvement!r} must be a number >= 0")
    shown = list(metrics) if metrics else sorted({k for v in versions for k in v.metrics})
    if primary not in shown:
        shown.insert(0, primary)
    # A metric under another spelling (f1_score for f1, auc for auc_roc) counts as the same metric.
    missing = [v.number for v in versions if metric_value(v.metrics, primary) is None]
    if missing:
        raise ValidationError(f"metric {primary!r} is missing from version(s) {', '.join(map(str, missing))}")
    rows = [
        {
            "version": v.number,
            "semver": v.semver,
            "stage": v.stage,
            **{m: metric_value(v.metrics, m) for m in shown},
        }
        for v in versions
    ]
    winner, reason = pick_winner(
        {v.number: metric_value(v.metrics, primary) for v in versions},
        direction=direction,
        min_improvement=min_improvement,
        baseline=baseline,
        metric=primary,
    )
    return Comparison(
        model=versions[0].model,
        metrics=shown,
        rows=rows,
        primary=primary,
        direction=direction,
        min_improvement=min_improvement,
        winner=winner,
        reason=reason,
    )
