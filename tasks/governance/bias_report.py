"""The bias report's records: thresholds, per-group counts, metric results and their verdicts.

:func:`tasks.governance.bias.detect_bias` returns a :class:`BiasReport`: one
:class:`AttributeReport` per protected attribute and intersection, each with
its groups (:class:`GroupStats`) and one :class:`MetricResult` per metric,
judged against :class:`BiasThresholds` (differences pass at or below their
threshold, ratios at or above it). Every record turns into JSON-ready data
with ``to_dict``.

Example:
    >>> limits = BiasThresholds()
    >>> limits.passes("disparate_impact", 0.85), limits.passes("statistical_parity_difference", 0.2)
    (True, False)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from storage.errors import ValidationError
from tasks.governance.bias_bootstrap import METRICS

Verdict = Literal["fair", "biased", "insufficient data"]
TOO_SMALL = "too small to judge"


@dataclass(frozen=True)
class BiasThresholds:
    """The line between fair and biased for each metric."""

    statistical_parity_difference: float = 0.1
    statistical_parity_ratio: float = 0.8
    disparate_impact: float = 0.8
    equal_opportunity_difference: float = 0.1
    equalized_odds_difference: float = 0.1

    def passes(self, metric: str, value: float) -> bool:
        """Whether ``value`` is on the fair side (differences <=, ratios >= the threshold)."""
        limit = getattr(self, metric)
        return bool(value >= limit) if is_ratio(metric) else bool(value <= limit)


def is_ratio(metric: str) -> bool:
    """Whether ``metric`` is a ratio (fair at or above its threshold) rather than a difference."""
    return metric in ("statistical_parity_ratio", "disparate_impact")


def _jsonable(value: Any) -> Any:
    """Dataclass fields as JSON: tuples become lists, NaN becomes None."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return None if isinstance(value, float) and math.isnan(value) else value


@dataclass(frozen=True)
class GroupStats:
    """One group's counts and rates; ``too_small_for`` names the metrics that leave it out."""

    label: str
    values: dict[str, str]
    size: int
    positives: int
    negatives: int
    selection_rate: float
    true_positive_rate: float
    false_positive_rate: float
    too_small_for: tuple[str, ...] = ()

    @property
    def status(self) -> str:
        """``"too small to judge"`` if any metric leaves the group out, else ``"judged"``."""
        return TOO_SMALL if self.too_small_for else "judged"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (NaN rates become None)."""
        return {**_jsonable(asdict(self)), "status": self.status}


@dataclass(frozen=True)
class ConfidenceInterval:
    """A percentile bootstrap interval."""

    low: float
    high: float
    confidence: float
    resamples: int


@dataclass(frozen=True)
class MetricResult:
    """One metric for one attribute or intersection, with its verdict and the threshold used."""

    metric: str
    value: float
    threshold: float
    comparison: Literal["<=", ">="]
    verdict: Verdict
    detail: str
    interval: ConfidenceInterval | None
    groups_judged: tuple[str, ...]
    groups_too_small: tuple[str, ...]
    group_values: dict[str, float] = field(default_factory=dict)
    components: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (NaN becomes None)."""
        return dict(_jsonable(asdict(self)))


@dataclass(frozen=True)
class AttributeReport:
    """The metrics for one protected attribute, or one intersection of attributes."""

    attributes: tuple[str, ...]
    groups: tuple[GroupStats, ...]
    metrics: tuple[MetricResult, ...]

    @property
    def name(self) -> str:
        """``"sex"``, or ``"sex & race"`` for an intersection."""
        return " & ".join(self.attributes)

    def metric(self, name: str) -> MetricResult:
        """The result of metric ``name``."""
        for result in self.metrics:
            if result.metric == name:
                return result
        raise ValidationError(f"unknown bias metric {name!r}; known: {', '.join(METRICS)}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return {
            "attributes": list(self.attributes),
            "name": self.name,
            "groups": [g.to_dict() for g in self.groups],
            "metrics": {m.metric: m.to_dict() for m in self.metrics},
        }


@dataclass(frozen=True)
class BiasReport:
    """Every attribute's and intersection's metrics, with the settings that produced them."""

    rows: int
    min_group_size: int
    confidence: float
    n_resamples: int
    seed: int | None
    thresholds: BiasThresholds
    results: tuple[AttributeReport, ...]

    def get(self, *attributes: str) -> AttributeReport:
        """The report for one attribute (``get("sex")``) or an intersection (``get("sex", "race")``)."""
        for result in self.results:
            if result.attributes == attributes or result.name == " & ".join(attributes):
                return result
        known = ", ".join(repr(r.name) for r in self.results)
        raise ValidationError(f"no bias results for {' & '.join(attributes)!r}; the report has {known}")

    @property
    def failures(self) -> tuple[tuple[str, MetricResult], ...]:
        """(attribute name, metric) for every metric judged biased."""
        return tuple((r.name, m) for r in self.results for m in r.metrics if m.verdict == "biased")

    @property
    def passed(self) -> bool:
        """No metric is biased and at least one could be judged."""
        judged = any(m.verdict != "insufficient data" for r in self.results for m in r.metrics)
        return judged and not self.failures

    @property
    def verdict(self) -> Verdict:
        """``"biased"`` if any metric is, ``"fair"`` if it passed, else ``"insufficient data"``."""
        return "biased" if self.failures else "fair" if self.passed else "insufficient data"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return {
            "rows": self.rows,
            "min_group_size": self.min_group_size,
            "confidence": self.confidence,
            "n_resamples": self.n_resamples,
            "seed": self.seed,
            "thresholds": asdict(self.thresholds),
            "verdict": self.verdict,
            "passed": self.passed,
            "results": [r.to_dict() for r in self.results],
        }
