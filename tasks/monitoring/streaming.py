"""Drift over time in what a model sees and gets wrong: label drift, a streaming detector, concept drift.

:func:`label_drift` compares the label (target) distribution with the
reference's. :func:`concept_drift` combines the windowed performance of
:mod:`tasks.monitoring.performance` with a :class:`PageHinkley` detector run over the
error stream of labelled predictions (:func:`error_stream`).

The Page-Hinkley detector
-------------------------

Feed one observation at a time (1.0 for a wrong prediction and 0.0 for a right
one, or an absolute error for regression); :meth:`PageHinkley.update` returns
True on the observation at which the mean is judged to have risen.

The test (Page 1954; Hinkley 1971), for an increase of the mean: with
``x̄_t`` the running mean of the observations so far,

    m_t = Σ_{i≤t} (x_i − x̄_i − δ),    M_t = min_{i≤t} m_i,    alarm when m_t − M_t > λ.

``δ`` (``delta``) is the size of change tolerated and ``λ`` (``threshold``)
the alarm level. Under no change ``m_t − M_t`` is a reflected random walk with
drift ``−δ``; its mean time to a false alarm grows like ``exp(2δλ/σ²)``: for
a Bernoulli error stream at rate 0.1 (σ² = 0.09) the defaults
``δ = 0.005, λ = 50`` give hundreds of thousands of observations. After a
jump of the mean by ``Δ`` the statistic grows by about ``Δ − δ`` per
observation, so the delay is roughly ``λ / (Δ − δ)`` (250 for a jump of 0.2).
No alarm is raised before ``min_samples`` observations. ``direction="down"``
tests for a decrease (on the negated stream), ``"both"`` for either.

After an alarm the statistics restart from the next observation (so a second
change can be found); ``detected_at`` keeps the first alarm and
``detections`` every one, as 0-based observation indices.

Example:
    >>> import numpy as np
    >>> from tasks.monitoring.streaming import PageHinkley
    >>> rng = np.random.default_rng(0)
    >>> errors = np.r_[rng.random(1000) < 0.1, rng.random(1000) < 0.4].astype(float)
    >>> ph = PageHinkley()
    >>> alarms = [i for i, e in enumerate(errors) if ph.update(e)]
    >>> 1000 < ph.detected_at < 1300, alarms[0] == ph.detected_at
    (True, True)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from storage.errors import ValidationError
from tasks.monitoring.drift import chi_square, ks_test
from tasks.monitoring.performance import (
    PerformanceFinding,
    Task,
    _Record,
    _require,
    _utc,
    compare_to_reference,
    join_ground_truth,
    parse_predictions,
    windowed_performance,
)

Direction = Literal["up", "down", "both"]

__all__ = [
    "ConceptDrift",
    "LabelDrift",
    "PageHinkley",
    "PageHinkleyState",
    "concept_drift",
    "error_stream",
    "label_drift",
]


@dataclass(frozen=True)
class PageHinkleyState:
    """A snapshot of a :class:`PageHinkley` detector (JSON-ready with ``to_dict``)."""

    delta: float
    threshold: float
    min_samples: int
    direction: str
    n_seen: int
    mean: float
    statistic: float
    detected_at: int | None
    detections: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "delta": self.delta,
            "threshold": self.threshold,
            "min_samples": self.min_samples,
            "direction": self.direction,
            "n_seen": self.n_seen,
            "mean": self.mean,
            "statistic": self.statistic,
            "detected_at": self.detected_at,
            "detections": list(self.detections),
        }


class PageHinkley:
    """Page-Hinkley test for a change in the mean of a stream (see the module docs).

    Args:
        delta: Change of the mean tolerated (δ), at least 0.
        threshold: Alarm level (λ), above 0.
        min_samples: Observations since the last (re)start before an alarm may be raised.
        direction: ``"up"`` (a rising error rate), ``"down"`` or ``"both"``.

    Raises:
        ValidationError: a negative delta, a threshold not above 0, min_samples below 1 or an
            unknown direction.

    Example:
        >>> ph = PageHinkley(threshold=1.0, min_samples=1)
        >>> [ph.update(x) for x in [0, 0, 0, 1, 1, 1]]
        [False, False, False, False, True, False]
        >>> ph.detected_at
        4
    """

    def __init__(
        self,
        delta: float = 0.005,
        threshold: float = 50.0,
        min_samples: int = 30,
        direction: Direction = "up",
    ) -> None:
        if not (math.isfinite(delta) and delta >= 0):
            raise ValidationError(f"delta {delta!r} must be a finite number >= 0")
        if not (math.isfinite(threshold) and threshold > 0):
            raise ValidationError(f"threshold {threshold!r} must be a finite number > 0")
        if isinstance(min_samples, bool) or not isinstance(min_samples, int) or min_samples < 1:
            raise ValidationError(f"min_samples {min_samples!r} must be a whole number >= 1")
        if direction not in ("up", "down", "both"):
            raise ValidationError(f"direction {direction!r} is not one of up, down, both")
        self.delta = float(delta)
        self.threshold = float(threshold)
        self.min_samples = min_samples
        self.direction: Direction = direction
        self.detected_at: int | None = None
        self.detections: list[int] = []
        self.n_seen_ = 0
        self._restart()

    def _restart(self) -> None:
        self.n_ = 0
        self.mean_ = 0.0
        self.sum_up_ = 0.0
        self.min_up_ = 0.0
        self.sum_down_ = 0.0
        self.max_down_ = 0.0

    @property
    def statistic(self) -> float:
        """The current test statistic (the larger of the tested directions)."""
        up = self.sum_up_ - self.min_up_ if self.direction in ("up", "both") else 0.0
        down = self.max_down_ - self.sum_down_ if self.direction in ("down", "both") else 0.0
        return max(up, down)

    def update(self, x: float) -> bool:
        """Add one observation; True when it raises an alarm.

        Raises:
            ValidationError: ``x`` is not a finite number.
        """
        if isinstance(x, bool):
            x = float(x)
        try:
            value = float(x)
        except (TypeError, ValueError):
            raise ValidationError(f"observation {x!r} is not a number") from None
        if not math.isfinite(value):
            raise ValidationError(f"observation {x!r} at index {self.n_seen_} is not finite")
        index = self.n_seen_
        self.n_seen_ += 1
        self.n_ += 1
        self.mean_ += (value - self.mean_) / self.n_
        self.sum_up_ += value - self.mean_ - self.delta
        self.min_up_ = min(self.min_up_, self.sum_up_)
        self.sum_down_ += value - self.mean_ + self.delta
        self.max_down_ = max(self.max_down_, self.sum_down_)
        if self.n_ < self.min_samples or self.statistic <= self.threshold:
            return False
        if self.detected_at is None:
            self.detected_at = index
        self.detections.append(index)
        self._restart()
        return True

    def update_many(self, values: Iterable[float]) -> list[int]:
        """Feed every value in order; returns the indices of the alarms they raised.

        Example:
            >>> PageHinkley(threshold=1.0, min_samples=1).update_many([0, 0, 0, 1, 1, 1])
            [4]
        """
        return [self.n_seen_ - 1 for x in values if self.update(x)]

    def state(self) -> PageHinkleyState:
        """A frozen snapshot of the parameters and the statistics."""
        return PageHinkleyState(
            delta=self.delta,
            threshold=self.threshold,
            min_samples=self.min_samples,
            direction=self.direction,
            n_seen=self.n_seen_,
            mean=self.mean_,
            statistic=self.statistic,
            detected_at=self.detected_at,
            detections=tuple(self.detections),
        )


@dataclass(frozen=True)
class LabelDrift(_Record):
    """The current label (target) distribution against the reference's."""

    method: str
    statistic: float
    p_value: float
    effect_size: float
    drifted: bool
    reason: str
    alpha: float
    min_effect: float
    reference_count: int
    current_count: int
    reference_distribution: dict[str, float] = field(default_factory=dict)
    current_distribution: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class ConceptDrift(_Record):
    """Performance against the reference per window, plus a streaming detector on the error stream.

    ``concept_drift`` is True when performance degraded (a warning or critical
    finding, or a detector alarm) while the inputs were not reported to drift
    (``input_drift`` False or unknown).
    """

    concept_drift: bool
    performance_degraded: bool
    degraded_since: pd.Timestamp | None
    detector_alarm_at: pd.Timestamp | None
    detector_alarm_index: int | None
    input_drift: bool | None
    labelled_rows: int
    findings: tuple[PerformanceFinding, ...]
    summary: str


# ---------------------------------------------------------------- label drift


def label_drift(
    reference_labels: Sequence[Any] | pd.Series,
    current_labels: Sequence[Any] | pd.Series,
    *,
    kind: Literal["categorical", "numeric"] = "categorical",
    alpha: float = 0.05,
    min_effect: float = 0.01,
) -> LabelDrift:
    """Whether the label distribution moved: χ² of homogeneity (classes) or KS (numeric labels).

    Uses :func:`tasks.monitoring.drift.chi_square` (effect size Cramér's V) or
    :func:`tasks.monitoring.drift.ks_test` (effect size D); drift needs ``p ≤ alpha`` and an
    effect of at least ``min_effect``, as in :mod:`tasks.monitoring.drift`. Classes are
    compared as strings; missing labels are dropped. An empty side gives a
    result with ``drifted=False`` and the ``reason``, not an error.

    Example:
        >>> ref, cur = [0] * 900 + [1] * 100, [0] * 700 + [1] * 300
        >>> result = label_drift(ref, cur)
        >>> result.drifted, result.current_distribution
        (True, {'0': 0.7, '1': 0.3})
    """
    if kind not in ("categorical", "numeric"):
        raise ValidationError(f"kind {kind!r} is not one of categorical, numeric")
    ref, cur = pd.Series(reference_labels).dropna(), pd.Series(current_labels).dropna()
    method = "chi2" if kind == "categorical" else "ks"
    empty = [name for name, side in (("reference", ref), ("current", cur)) if len(side) == 0]
    if empty:
        why = f"no {' or '.join(empty)} labels to compare"
        return LabelDrift(
            method, math.nan, math.nan, math.nan, False, why, alpha, min_effect, len(ref), len(cur)
        )
    if kind == "numeric":
        try:
            r, c = np.sort(ref.to_numpy(dtype=float)), np.sort(cur.to_numpy(dtype=float))
        except (TypeError, ValueError):
            raise ValidationError("numeric label drift needs numeric labels") from None
        result = ks_test(r, c)
        ref_dist, cur_dist = {"mean": float(r.mean())}, {"mean": float(c.mean())}
    else:
        rc, cc = ref.astype(str).value_counts(), cur.astype(str).value_counts()
        names = sorted(set(rc.index) | set(cc.index))
        rc, cc = rc.reindex(names, fill_value=0), cc.reindex(names, fill_value=0)
        result = chi_square(rc.to_numpy(), cc.to_numpy())
        ref_dist = {k: int(v) / len(ref) for k, v in rc.items()}
        cur_dist = {k: int(v) / len(cur) for k, v in cc.items()}
    p = float(result.p_value) if result.p_value is not None else math.nan
    drifted = bool(p <= alpha and result.effect_size >= min_effect)
    why = f"{method} p={p:.3g}, effect {result.effect_size:.3g} (drift needs p<={alpha} and >={min_effect})"
    sizes = (alpha, min_effect, len(ref), len(cur))
    return LabelDrift(
        method, result.statistic, p, result.effect_size, drifted, why, *sizes, ref_dist, cur_dist
    )


# ---------------------------------------------------------------- concept drift


def error_stream(joined: pd.DataFrame, task: Task = "classification", **parse: Any) -> pd.Series:
    """Per labelled row in ``ts`` order: 1.0/0.0 for a wrong/right label, or the absolute error.

    Example:
        >>> ts = pd.to_datetime(["2026-01-02", "2026-01-01"], utc=True)
        >>> j = pd.DataFrame({"request_id": ["a", "b"], "ts": ts, "prediction": ["1", "1"], "label": [1, 0]})
        >>> error_stream(j).tolist()
        [1.0, 0.0]
    """
    _require(joined, ["request_id", "ts", "prediction", "label"], "the joined frame")
    ordered = joined.assign(ts=_utc(joined["ts"], "the joined frame")).sort_values(["ts", "request_id"])
    predicted, _ = parse_predictions(ordered, task, **parse)
    if task == "regression":
        errors = np.abs(np.asarray(predicted, dtype=float) - ordered["label"].to_numpy(dtype=float))
    else:
        errors = np.array([float(p != y) for p, y in zip(predicted, ordered["label"].tolist(), strict=True)])
    return pd.Series(errors, index=pd.DatetimeIndex(ordered["ts"]), name="error")


def concept_drift(
    joined: pd.DataFrame,
    reference_metrics: Mapping[str, float],
    *,
    tolerance: Mapping[str, float],
    task: Task = "classification",
    window: str = "1d",
    detector: PageHinkley | None = None,
    input_drift: bool | None = None,
    **parse: Any,
) -> ConceptDrift:
    """Performance per window against the reference, and a Page-Hinkley detector on the error stream.

    Args:
        joined: Labelled predictions (:func:`join_ground_truth`).
        reference_metrics: The version's metrics at training time, e.g. ``{"accuracy": 0.92}``.
        tolerance: Allowed drop per metric (see :func:`compare_to_reference`).
        task: ``"classification"`` or ``"regression"``.
        window: Window length for the windowed metrics.
        detector: A fresh detector to feed the error stream (default ``PageHinkley()``, tuned for
            0/1 errors; pass one scaled to the absolute error for regression).
        input_drift: Whether data drift was found on the inputs over the same period, if known.
        **parse: ``positive_label``, ``negative_label``, ``threshold`` (see :func:`parse_predictions`).

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> ts = pd.date_range("2026-01-01", periods=4000, freq="1min", tz="UTC")
        >>> y = rng.integers(0, 2, 4000)
        >>> wrong = rng.random(4000) < np.where(np.arange(4000) < 2000, 0.1, 0.4)
        >>> j = pd.DataFrame({"request_id": [f"r{i}" for i in range(4000)], "ts": ts,
        ...                   "prediction": [str(int(v)) for v in np.where(wrong, 1 - y, y)], "label": y})
        >>> r = concept_drift(j, {"accuracy": 0.9}, tolerance={"accuracy": 0.05}, input_drift=False)
        >>> r.concept_drift, str(r.degraded_since), r.detector_alarm_at > ts[2000]
        (True, '2026-01-02 00:00:00+00:00', True)
    """
    metrics = windowed_performance(joined, task, window, **parse)
    findings = compare_to_reference(metrics, reference_metrics, tolerance=tolerance)
    degraded = [f for f in findings if f.kind == "degraded"]
    since = min((f.window_start for f in degraded), default=None)
    errors = error_stream(joined, task, **parse)
    ph = detector if detector is not None else PageHinkley()
    ph.update_many(errors.to_numpy())
    alarm_ts = errors.index[ph.detected_at] if ph.detected_at is not None else None
    worse = bool(degraded) or alarm_ts is not None
    concept = worse and input_drift is not True
    if len(errors) == 0:
        summary = "no labelled predictions to judge"
    elif not worse:
        summary = f"no degradation over {len(errors)} labelled predictions"
    else:
        parts = [
            f"performance degraded from window {since}" if since is not None else "",
            f"error stream alarm at {alarm_ts}" if alarm_ts is not None else "",
        ]
        if input_drift is None:
            cause = "input drift unknown: possible concept drift"
        elif input_drift:
            cause = "inputs drifted too (data drift)"
        else:
            cause = "inputs did not drift: concept drift"
        summary = "; ".join(p for p in parts if p) + f"; {cause}"
    return ConceptDrift(
        concept, worse, since, alarm_ts, ph.detected_at, input_drift, len(errors), tuple(findings), summary
    )


@task(name="concept-drift", cache_policy=NO_CACHE)
def concept_drift_task(
    log_frame: pd.DataFrame, labels: pd.DataFrame, reference_metrics: Mapping[str, float], **options: Any
) -> dict[str, Any]:
    """Prefect task: join the labels, then :func:`concept_drift`, returning a JSON-ready dict."""
    return concept_drift(join_ground_truth(log_frame, labels), reference_metrics, **options).to_dict()
