"""Operational metrics and model performance from the prediction log and delayed ground truth.

Every function here is pure: frames in, frames or frozen records out. The
inputs are the prediction log's frame (see :mod:`storage.monitoring.prediction_log`:
``request_id, model, version, ts, entity_key, features, prediction,
latency_ms, status``) and a ground-truth frame ``request_id, label[, ts]``
that arrives later and is joined by request id.

Predictions accepted (the ``prediction`` column is JSON):

==============  ====================================  ==========================================
JSON            classification                        regression
==============  ====================================  ==========================================
integer, bool,  the predicted label, no score         integer/float: the predicted value
string
float           the positive class's score; label is  the predicted value
                ``positive_label`` if score ≥
                ``threshold`` else ``negative_label``
object          ``{"label": ..., "score": ...}``,     ``{"value": ...}``
                either key may be missing
==============  ====================================  ==========================================

Anything else (null, a list, an object with neither key) is a
:class:`~storage.errors.ValidationError` naming the request id.

Windows are fixed-length (``"1h"``, ``"1d"``, any ``pandas.Timedelta``
string), aligned on the epoch, half-open ``[start, end)``, on the prediction's
``ts``; every window between the first and last row is reported, empty ones
with ``count == 0`` and NaN metrics. Latency percentiles are numpy's
``linear`` percentiles over the ``ok`` rows. Classification metrics treat
``positive_label`` as the positive class (precision, recall, F1, AUC-ROC) and
equal ``sklearn.metrics`` (``zero_division=nan``); a metric that cannot be
computed is NaN and the window's ``reason`` says why. Label drift and concept
drift (these metrics plus a streaming detector on the error stream) are in
:mod:`tasks.monitoring.streaming`.

Example:
    >>> import pandas as pd
    >>> from tasks.monitoring.performance import join_ground_truth, windowed_performance
    >>> log = pd.DataFrame({"request_id": ["a", "b", "c"], "ts": pd.to_datetime(["2026-01-01"] * 3, utc=True),
    ...     "prediction": ['{"label": 1, "score": 0.9}', "0.2", "1"], "status": ["ok"] * 3})
    >>> joined = join_ground_truth(log, pd.DataFrame({"request_id": ["a", "b", "c"], "label": [1, 0, 0]}))
    >>> row = windowed_performance(joined).iloc[0]
    >>> int(row["count"]), round(float(row["accuracy"]), 3), row["reason"]
    (3, 0.667, 'auc_roc: window has rows without a score')
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any, Literal

import numpy as np
import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE
from scipy import stats

from storage.errors import ValidationError

Task = Literal["classification", "regression"]
CLASSIFICATION_METRICS = ("accuracy", "precision", "recall", "f1", "auc_roc")
REGRESSION_METRICS = ("rmse", "mae")
LOWER_IS_BETTER = frozenset(REGRESSION_METRICS)
_SLACK = 1e-12  # so that 0.9 - 0.8 counts as a drop of 0.1 despite floating point

__all__ = [
    "PerformanceFinding",
    "compare_to_reference",
    "join_ground_truth",
    "operational_metrics",
    "parse_predictions",
    "windowed_performance",
]


def _jsonable(value: Any) -> Any:
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


class _Record:
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (timestamps as ISO-8601 strings, NaN as None)."""
        return dict(_jsonable(asdict(self)))  # type: ignore[call-overload]


@dataclass(frozen=True)
class PerformanceFinding(_Record):
    """One metric of one window against its reference: degraded, or not computable.

    ``kind`` is ``degraded`` (severity warning or critical), ``empty_window`` or
    ``not_computable`` (severity info).
    """

    kind: str
    severity: str
    metric: str
    window_start: pd.Timestamp
    window_end: pd.Timestamp
    reference: float
    observed: float
    tolerance: float
    message: str


# ---------------------------------------------------------------- inputs


def _require(frame: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValidationError(f"{what} lacks column(s) {missing}; it has {list(frame.columns)}")


def _utc(series: pd.Series, what: str) -> pd.Series:
    try:
        ts = pd.to_datetime(series, utc=True)
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"{what} column 'ts' is not a timestamp: {exc}") from None
    if ts.isna().any():
        raise ValidationError(f"{what} column 'ts' has {int(ts.isna().sum())} missing timestamp(s)")
    return ts


def _window(window: str) -> pd.Timedelta:
    try:
        width = pd.Timedelta(window)
    except (TypeError, ValueError):
        raise ValidationError(f"window {window!r} is not a fixed length such as '1h' or '1d'") from None
    if width <= pd.Timedelta(0):
        raise ValidationError(f"window {window!r} must be longer than zero")
    return width


def _windows(ts: pd.Series, window: str) -> tuple[np.ndarray, pd.DatetimeIndex]:
    """Each row's window number (0 for the first window), and every window start from first to last."""
    width = _window(window)
    starts = ts.dt.floor(width)
    if len(ts) == 0:
        return np.zeros(0, dtype=int), pd.DatetimeIndex([], tz="UTC", name="window_start")
    index = pd.date_range(starts.min(), starts.max(), freq=width, name="window_start")
    return ((starts - starts.min()) // width).to_numpy(dtype=int), index


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _one(value: Any, task: Task, rid: Any, threshold: float, pos: Any, neg: Any) -> tuple[Any, float]:
    if task == "regression":
        number: Any = value.get("value") if isinstance(value, dict) else value
        if _number(number):
            return float(number), math.nan
    elif isinstance(value, dict):
        label, score = value.get("label"), value.get("score")
        if score is None or _number(score):
            s = math.nan if score is None else float(score)
            if isinstance(label, int | float | str):
                return label, s
            if label is None and score is not None:
                return (pos if s >= threshold else neg), s
    elif isinstance(value, float):
        return (pos if value >= threshold else neg), value
    elif isinstance(value, int | str):
        return value, math.nan
    raise ValidationError(
        f"request {rid!r}: prediction {value!r} is not a {task} output (see tasks.monitoring.performance)"
    )


def parse_predictions(
    frame: pd.DataFrame,
    task: Task = "classification",
    *,
    threshold: float = 0.5,
    positive_label: Any = 1,
    negative_label: Any = 0,
) -> tuple[list[Any], np.ndarray]:
    """The predicted labels (or values) and scores (NaN when absent) of ``frame["prediction"]``.

    Raises:
        ValidationError: a prediction that is not JSON or not a shape listed in the module docs.

    Example:
        >>> frame = pd.DataFrame({"request_id": ["a", "b", "c"],
        ...                       "prediction": ['{"score": 0.7}', '"spam"', "0.2"]})
        >>> labels, scores = parse_predictions(frame, positive_label="spam", negative_label="ham")
        >>> labels, scores.tolist()
        (['spam', 'spam', 'ham'], [0.7, nan, 0.2])
    """
    _require(frame, ["request_id", "prediction"], "the prediction frame")
    labels: list[Any] = []
    scores = np.full(len(frame), np.nan)
    for i, (rid, text) in enumerate(zip(frame["request_id"], frame["prediction"], strict=True)):
        try:
            value = json.loads(text) if isinstance(text, str) else text
        except ValueError:
            raise ValidationError(f"request {rid!r}: prediction {str(text)[:80]!r} is not JSON") from None
        labels.append(None)
        labels[i], scores[i] = _one(value, task, rid, threshold, positive_label, negative_label)
    return labels, scores


# ---------------------------------------------------------------- operational metrics


def operational_metrics(
    log_frame: pd.DataFrame, window: str = "1h", *, positive_label: Any = 1, threshold: float = 0.5
) -> pd.DataFrame:
    """Per window: count, throughput, error rate, latency p50/p95/p99 (ok rows) and positive rate.

    Args:
        log_frame: Rows of the prediction log (``ts``, ``status``, ``latency_ms``, ``prediction``,
            ``request_id``).
        window: Window length, e.g. ``"1h"``.
        positive_label: The positive class for ``positive_rate`` (the share of ok rows predicting
            it); None for a regression model (``positive_rate`` is then NaN).
        threshold: Score at or above which a bare float prediction counts as positive.

    Returns:
        One row per window, indexed by ``window_start``: ``window_end, count, errors,
        throughput_per_s, error_rate, latency_p50_ms, latency_p95_ms, latency_p99_ms,
        positive_rate``.

    Example:
        >>> log = pd.DataFrame({"request_id": list("abcd"),
        ...     "ts": pd.to_datetime(["2026-01-01 10:05", "2026-01-01 10:50", "2026-01-01 12:00",
        ...                           "2026-01-01 12:01"], utc=True),
        ...     "prediction": ["1", "0", "1", "null"], "latency_ms": [10.0, 20.0, 30.0, 5.0],
        ...     "status": ["ok", "ok", "ok", "error"]})
        >>> m = operational_metrics(log, "1h")
        >>> m["count"].tolist(), m["error_rate"].tolist(), m["latency_p50_ms"].tolist()
        ([2, 0, 2], [0.0, nan, 0.5], [15.0, nan, 30.0])
        >>> m["positive_rate"].tolist()
        [0.5, nan, 1.0]
    """
    _require(
        log_frame, ["request_id", "ts", "prediction", "latency_ms", "status"], "the prediction log frame"
    )
    bad = sorted(set(log_frame["status"]) - {"ok", "error"}, key=str)
    if bad:
        raise ValidationError(f"column 'status' has value(s) {bad}; expected ok or error")
    width = _window(window)
    codes, index = _windows(_utc(log_frame["ts"], "the prediction log frame"), window)
    ok = (log_frame["status"] == "ok").to_numpy()
    positive = np.full(len(log_frame), np.nan)
    if positive_label is not None and ok.any():
        labels, _ = parse_predictions(log_frame[ok], threshold=threshold, positive_label=positive_label)
        positive[ok] = [float(label == positive_label) for label in labels]
    work = pd.DataFrame(
        {
            "start": codes,
            "error": ~ok,
            "latency": np.where(ok, log_frame["latency_ms"].to_numpy(dtype=float), np.nan),
            "positive": positive,
        }
    )
    groups, every = work.groupby("start"), range(len(index))
    out = pd.DataFrame(index=index)
    out["window_end"] = index + width
    out["count"] = groups.size().reindex(every, fill_value=0).to_numpy(dtype=int)
    out["errors"] = groups["error"].sum().reindex(every, fill_value=0).to_numpy(dtype=int)
    out["throughput_per_s"] = out["count"] / width.total_seconds()
    out["error_rate"] = (out["errors"] / out["count"]).where(out["count"] > 0)
    for q in (50, 95, 99):
        out[f"latency_p{q}_ms"] = groups["latency"].quantile(q / 100).reindex(every).to_numpy()
    out["positive_rate"] = groups["positive"].mean().reindex(every).to_numpy()
    return out


# ---------------------------------------------------------------- ground truth and performance


def join_ground_truth(log_frame: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    """The log's ok rows that have a label, joined by ``request_id``.

    The result has the log's columns plus ``label`` (and ``label_ts`` when the
    labels have a ``ts``). ``result.attrs`` counts what did not join:
    ``unmatched_predictions`` (ok rows without a label), ``unmatched_labels``
    (labels for no logged request) and ``error_rows`` (rows with status error).

    Raises:
        ValidationError: a missing column, or request ids labelled more than once (named).

    Example:
        >>> log = pd.DataFrame({"request_id": ["a", "b"], "prediction": ["1", "0"], "status": ["ok", "ok"]})
        >>> joined = join_ground_truth(log, pd.DataFrame({"request_id": ["a", "z"], "label": [1, 0]}))
        >>> joined["request_id"].tolist(), joined.attrs
        (['a'], {'unmatched_predictions': 1, 'unmatched_labels': 1, 'error_rows': 0})
    """
    _require(log_frame, ["request_id", "prediction", "status"], "the prediction log frame")
    _require(labels, ["request_id", "label"], "the ground-truth frame")
    dup = labels["request_id"][labels["request_id"].duplicated()].unique().tolist()
    if dup:
        raise ValidationError(f"the ground truth labels request id(s) more than once: {sorted(dup)[:20]}")
    if labels["label"].isna().any():
        missing = labels.loc[labels["label"].isna(), "request_id"].tolist()
        raise ValidationError(f"the ground truth has missing labels for request id(s) {missing[:20]}")
    ok = log_frame[log_frame["status"] == "ok"]
    truth = labels[["request_id", "label", *(["ts"] if "ts" in labels.columns else [])]]
    joined = ok.merge(truth.rename(columns={"ts": "label_ts"}), on="request_id", how="inner", validate="m:1")
    joined.attrs = {
        "unmatched_predictions": int(len(ok) - len(joined)),
        "unmatched_labels": int((~labels["request_id"].isin(log_frame["request_id"])).sum()),
        "error_rows": int(len(log_frame) - len(ok)),
    }
    return joined.reset_index(drop=True)


def _auc(positive: np.ndarray, scores: np.ndarray) -> float:
    ranks = stats.rankdata(scores)
    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _classification(
    y: list[Any], p: list[Any], s: np.ndarray, pos: Any
) -> tuple[dict[str, float], list[str]]:
    n = len(y)
    truth = np.array([v == pos for v in y], dtype=bool)
    pred = np.array([v == pos for v in p], dtype=bool)
    tp = int((truth & pred).sum())
    m = dict.fromkeys(CLASSIFICATION_METRICS, math.nan)
    why: list[str] = []
    m["accuracy"] = sum(a == b for a, b in zip(y, p, strict=True)) / n
    if pred.any():
        m["precision"] = tp / int(pred.sum())
    else:
        why.append("precision: no positive predictions")
    if truth.any():
        m["recall"] = tp / int(truth.sum())
    else:
        why.append("recall: no positive labels")
    if truth.any() or pred.any():
        m["f1"] = 2 * tp / (int(truth.sum()) + int(pred.sum()))
    if np.isnan(s).any():
        why.append("auc_roc: window has rows without a score")
    elif truth.all() or not truth.any():
        why.append("auc_roc: window has only one class")
    else:
        m["auc_roc"] = _auc(truth, s)
    return m, why


def windowed_performance(
    joined: pd.DataFrame,
    task: Task = "classification",
    window: str = "1d",
    *,
    positive_label: Any = 1,
    negative_label: Any = 0,
    threshold: float = 0.5,
) -> pd.DataFrame:
    """Per window of ``ts``: ``count`` and accuracy/precision/recall/F1/AUC-ROC or RMSE/MAE.

    Args:
        joined: The output of :func:`join_ground_truth` (``request_id, ts, prediction, label``).
        task: ``"classification"`` or ``"regression"``.
        window: Window length, e.g. ``"1d"``.
        positive_label: The positive class; ``negative_label`` is the label of a bare score below
            ``threshold``.

    Returns:
        One row per window, indexed by ``window_start``, with ``window_end``, ``count``, the metrics
        and ``reason`` ("" when every metric was computed).

    Raises:
        ValidationError: a missing column, an unknown task, an unparseable prediction or a
            non-numeric regression label.
    """
    if task not in ("classification", "regression"):
        raise ValidationError(f"task {task!r} is not one of classification, regression")
    _require(joined, ["request_id", "ts", "prediction", "label"], "the joined frame")
    width = _window(window)
    codes, index = _windows(_utc(joined["ts"], "the joined frame"), window)
    predicted, scores = parse_predictions(
        joined, task, threshold=threshold, positive_label=positive_label, negative_label=negative_label
    )
    labels = joined["label"].tolist()
    if task == "regression":
        try:
            truth = np.asarray(labels, dtype=float)
        except (TypeError, ValueError):
            raise ValidationError("column 'label' must be numeric for a regression model") from None
    metrics = CLASSIFICATION_METRICS if task == "classification" else REGRESSION_METRICS
    rows: dict[pd.Timestamp, dict[str, Any]] = {}
    positions = pd.Series(np.arange(len(joined))).groupby(codes).indices
    for code, start in enumerate(index):
        at = positions.get(code, np.array([], dtype=int))
        row: dict[str, Any] = {"window_end": start + width, "count": len(at)}
        row.update(dict.fromkeys(metrics, math.nan))
        if len(at) == 0:
            row["reason"] = "empty window"
        elif task == "classification":
            m, why = _classification(
                [labels[i] for i in at], [predicted[i] for i in at], scores[at], positive_label
            )
            row.update(m, reason="; ".join(why))
        else:
            err = np.asarray([predicted[i] for i in at], dtype=float) - truth[at]
            row.update(rmse=float(np.sqrt(np.mean(err**2))), mae=float(np.mean(np.abs(err))), reason="")
        rows[start] = row
    columns = ["window_end", "count", *metrics, "reason"]
    out = pd.DataFrame.from_dict(rows, orient="index", columns=columns)
    out.index = pd.DatetimeIndex(out.index if len(out) else [], tz="UTC", name="window_start")
    return out


def _finding(
    out: list[PerformanceFinding],
    start: Any,
    end: Any,
    kind: str,
    severity: str,
    metric: str,
    ref: float,
    obs: float,
    tol: float,
    msg: str,
) -> None:
    out.append(PerformanceFinding(kind, severity, metric, start, end, ref, obs, tol, msg))


def compare_to_reference(
    window_metrics: pd.DataFrame, reference: Mapping[str, float], *, tolerance: Mapping[str, float]
) -> list[PerformanceFinding]:
    """Findings for every window metric worse than its reference by more than its tolerance.

    Higher is better except for RMSE and MAE. A metric is degraded when it is
    worse than the reference by more than its tolerance (``warning``), and by at
    least twice the tolerance (``critical``), both up to 1e-12 so that decimal
    references compare as written. Empty windows and metrics that
    could not be computed give an ``info`` finding.

    Raises:
        ValidationError: a reference metric without a tolerance, a negative tolerance, or a
            metric the windows do not have.

    Example:
        >>> import pandas as pd
        >>> w = pd.DataFrame({"window_end": [pd.Timestamp("2026-01-02", tz="UTC")], "count": [100],
        ...                   "accuracy": [0.80]}, index=pd.DatetimeIndex(["2026-01-01"], tz="UTC"))
        >>> findings = compare_to_reference(w, {"accuracy": 0.9}, tolerance={"accuracy": 0.05})
        >>> [(f.severity, f.metric, f.observed) for f in findings]
        [('critical', 'accuracy', 0.8)]
    """
    for metric in reference:
        if metric not in tolerance:
            raise ValidationError(f"metric {metric!r} has a reference but no tolerance")
        if not tolerance[metric] >= 0:
            raise ValidationError(f"tolerance of {metric!r} is {tolerance[metric]!r}; it must be >= 0")
        if metric not in window_metrics.columns:
            raise ValidationError(
                f"metric {metric!r} is not among the window metrics {list(window_metrics.columns)}"
            )
    findings: list[PerformanceFinding] = []
    for start, row in window_metrics.iterrows():
        end = row.get("window_end", start)
        add = partial(_finding, findings, start, end)

        if row.get("count", 1) == 0:
            add("empty_window", "info", "", math.nan, math.nan, math.nan, f"window {start} has no rows")
            continue
        for metric, ref in reference.items():
            obs, tol = float(row[metric]), float(tolerance[metric])
            if math.isnan(obs):
                why = str(row.get("reason", "")) or "not computable"
                add("not_computable", "info", metric, ref, obs, tol, f"{metric} in window {start}: {why}")
                continue
            worse = obs - ref if metric in LOWER_IS_BETTER else ref - obs
            if worse <= tol + _SLACK:
                continue
            severity = "critical" if worse >= 2 * tol - _SLACK else "warning"
            word = "rose" if metric in LOWER_IS_BETTER else "fell"
            msg = f"{metric} {word} to {obs:.4g} in window {start} (reference {ref:.4g}, tolerance {tol:.4g})"
            add("degraded", severity, metric, ref, obs, tol, msg)
    return findings


# ---------------------------------------------------------------- Prefect tasks


@task(name="operational-metrics", cache_policy=NO_CACHE)
def operational_metrics_task(log_frame: pd.DataFrame, window: str = "1h", **options: Any) -> pd.DataFrame:
    """Prefect task: :func:`operational_metrics`."""
    return operational_metrics(log_frame, window, **options)
