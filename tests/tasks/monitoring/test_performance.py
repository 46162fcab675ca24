"""Performance and operational metrics: every metric against sklearn/numpy, windows, findings, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from storage.errors import ValidationError
from storage.monitoring.prediction_log import PredictionLog
from tasks.monitoring.performance import (
    compare_to_reference,
    join_ground_truth,
    operational_metrics,
    operational_metrics_task,
    parse_predictions,
    windowed_performance,
)

TOL = 1e-12
T0 = pd.Timestamp("2026-03-01", tz="UTC")


def _log(n: int, seed: int, hours: float = 5.0, gap: tuple[float, float] | None = (2.0, 3.0)) -> pd.DataFrame:
    """A prediction-log frame over ``hours`` (no rows in ``gap`` hours), with mixed prediction shapes."""
    rng = np.random.default_rng(seed)
    offsets = np.sort(rng.uniform(0, hours * 3600, n))
    if gap is not None:
        offsets = offsets[(offsets < gap[0] * 3600) | (offsets >= gap[1] * 3600)]
    n = offsets.size
    scores = rng.random(n)
    shape = rng.integers(0, 3, n)
    preds = [
        json.dumps({"label": int(s >= 0.5), "score": float(s)})
        if k == 0
        else json.dumps(float(s))
        if k == 1
        else json.dumps(int(s >= 0.5))
        for s, k in zip(scores, shape, strict=True)
    ]
    return pd.DataFrame(
        {
            "request_id": [f"r{seed}-{i}" for i in range(n)],
            "model": "m",
            "version": 1,
            "ts": T0 + pd.to_timedelta(offsets, unit="s"),
            "entity_key": None,
            "features": "{}",
            "prediction": preds,
            "latency_ms": rng.gamma(2.0, 10.0, n),
            "status": np.where(rng.random(n) < 0.05, "error", "ok"),
        }
    )


# ---------------------------------------------------------------- operational metrics


@pytest.mark.parametrize("seed", [0, 1])
def test_operational_metrics_match_numpy(seed: int) -> None:
    log = _log(3000, seed)
    out = operational_metrics(log, "1h")
    assert list(out.index) == list(pd.date_range(T0, periods=5, freq="1h"))
    assert out.loc[T0 + pd.Timedelta("2h"), "count"] == 0  # the empty window is reported, not skipped
    assert np.isnan(out.loc[T0 + pd.Timedelta("2h"), "latency_p95_ms"])
    labels, _ = parse_predictions(log)
    log = log.assign(pos=[float(v == 1) for v in labels], hour=log["ts"].dt.floor("1h"))
    for start, rows in log.groupby("hour"):
        row, ok = out.loc[start], rows[rows["status"] == "ok"]
        assert row["count"] == len(rows)
        assert row["throughput_per_s"] == pytest.approx(len(rows) / 3600, abs=TOL)
        assert row["error_rate"] == pytest.approx((rows["status"] == "error").mean(), abs=TOL)
        for q in (50, 95, 99):
            assert row[f"latency_p{q}_ms"] == pytest.approx(np.percentile(ok["latency_ms"], q), abs=1e-9)
        assert row["positive_rate"] == pytest.approx(ok["pos"].mean(), abs=TOL)
        assert row["window_end"] == start + pd.Timedelta("1h")


def test_operational_metrics_reads_the_real_log(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path)
    log.append(
        [
            {
                "request_id": f"r{i}",
                "model": "m",
                "version": 1,
                "ts": T0 + pd.Timedelta(minutes=10 * i),
                "prediction": {"label": i % 2, "score": 0.4 + 0.1 * (i % 2)},
                "latency_ms": float(i),
                "status": "error" if i == 0 else "ok",
            }
            for i in range(12)
        ]
    )
    frame = log.read(model="m")
    out = operational_metrics_task.fn(frame, "1h")
    assert out["count"].tolist() == [6, 6]
    assert out["error_rate"].tolist() == pytest.approx([1 / 6, 0.0])
    assert out["positive_rate"].tolist() == pytest.approx([3 / 5, 0.5])
    joined = join_ground_truth(frame, pd.DataFrame({"request_id": [f"r{i}" for i in range(12)], "label": 1}))
    assert len(joined) == 11 and joined.attrs["error_rows"] == 1


def test_operational_metrics_edge_cases() -> None:
    empty = _log(0, 0)
    assert operational_metrics(empty).empty
    log = _log(50, 0)
    assert operational_metrics(log, "30min", positive_label=None)["positive_rate"].isna().all()
    with pytest.raises(ValidationError, match="latency_ms"):
        operational_metrics(log.drop(columns="latency_ms"))
    with pytest.raises(ValidationError, match="'maybe'"):
        operational_metrics(log.assign(status="maybe"))
    for bad in ("soon", "0h", "-1h"):
        with pytest.raises(ValidationError, match="window"):
            operational_metrics(log, bad)
    with pytest.raises(ValidationError, match="r0-3"):
        operational_metrics(log.assign(prediction=np.where(log.index == 3, "[1, 2]", log["prediction"])))


# ---------------------------------------------------------------- ground truth


def test_join_counts_unmatched_and_rejects_duplicates() -> None:
    log = _log(200, 1, gap=None)
    ok = log[log["status"] == "ok"]
    labels = pd.DataFrame({"request_id": [*ok["request_id"][:150], "ghost-1", "ghost-2"], "label": 1})
    labels["ts"] = T0 + pd.Timedelta("1d")
    joined = join_ground_truth(log, labels)
    assert len(joined) == 150 and "label_ts" in joined.columns
    assert joined.attrs == {
        "unmatched_predictions": len(ok) - 150,
        "unmatched_labels": 2,
        "error_rows": len(log) - len(ok),
    }
    dup = pd.concat([labels, labels.iloc[[3, 7, 7]]])
    with pytest.raises(ValidationError, match="more than once") as err:
        join_ground_truth(log, dup)
    assert str(labels["request_id"].iloc[3]) in str(err.value) and str(labels["request_id"].iloc[7]) in str(
        err.value
    )
    with pytest.raises(ValidationError, match="label"):
        join_ground_truth(log, labels.drop(columns="label"))
    with pytest.raises(ValidationError, match="missing labels"):
        join_ground_truth(log, labels.assign(label=[None if i == 0 else 1 for i in range(len(labels))]))


# ---------------------------------------------------------------- windowed performance against sklearn


def _labelled(seed: int, positive: object = 1, negative: object = 0) -> pd.DataFrame:
    log = _log(4000, seed, hours=72, gap=None)
    rng = np.random.default_rng(seed + 100)
    scores = np.array([json.loads(p)["score"] if p.startswith("{") else np.nan for p in log["prediction"]])
    hit = rng.random(len(log)) < np.where(np.isnan(scores), 0.5, scores)
    truth = [positive if h else negative for h in hit]
    preds = [
        json.dumps({"label": positive if s >= 0.5 else negative, "score": s}) for s in np.nan_to_num(scores)
    ]
    return join_ground_truth(
        log.assign(prediction=preds), pd.DataFrame({"request_id": log["request_id"], "label": truth})
    )


@pytest.mark.parametrize(
    ("seed", "positive", "negative"), [(0, 1, 0), (1, "fraud", "legit"), (2, True, False)]
)
def test_classification_metrics_equal_sklearn(seed: int, positive: object, negative: object) -> None:
    joined = _labelled(seed, positive, negative)
    out = windowed_performance(
        joined, "classification", "1d", positive_label=positive, negative_label=negative
    )
    assert len(out) == 3 and (out["reason"] == "").all()
    labels, scores = parse_predictions(joined, positive_label=positive, negative_label=negative)
    day = joined["ts"].dt.floor("1d")
    for start, row in out.iterrows():
        at = (day == start).to_numpy()
        y, p = joined["label"][at].tolist(), [labels[i] for i in np.flatnonzero(at)]
        yb = np.array(y) == positive
        kw = {"pos_label": positive, "zero_division": np.nan}
        assert row["count"] == at.sum()
        assert row["accuracy"] == pytest.approx(skm.accuracy_score(y, p), abs=TOL)
        assert row["precision"] == pytest.approx(skm.precision_score(y, p, **kw), abs=TOL)
        assert row["recall"] == pytest.approx(skm.recall_score(y, p, **kw), abs=TOL)
        assert row["f1"] == pytest.approx(skm.f1_score(y, p, **kw), abs=TOL)
        assert row["auc_roc"] == pytest.approx(skm.roc_auc_score(yb, scores[at]), abs=TOL)


def test_auc_and_precision_are_nan_with_a_reason() -> None:
    ts = [T0, T0, T0 + pd.Timedelta("1d"), T0 + pd.Timedelta("1d"), T0 + pd.Timedelta("3d")]
    joined = pd.DataFrame(
        {
            "request_id": list("abcde"),
            "ts": ts,
            "label": [1, 1, 0, 1, 0],
            "prediction": ["0.9", "0.7", "1", '{"label": 0, "score": 0.2}', "0.1"],
        }
    )
    out = windowed_performance(joined, window="1d")
    assert out["count"].tolist() == [2, 2, 0, 1]
    assert np.isnan(out["auc_roc"].iloc[0]) and "only one class" in out["reason"].iloc[0]
    assert np.isnan(out["auc_roc"].iloc[1]) and "without a score" in out["reason"].iloc[1]
    assert out["reason"].iloc[2] == "empty window" and out.iloc[2][["accuracy", "f1"]].isna().all()
    assert np.isnan(out["precision"].iloc[3]) and np.isnan(out["recall"].iloc[3])
    assert "no positive predictions" in out["reason"].iloc[3] and out["accuracy"].iloc[3] == 1.0
    assert windowed_performance(joined.iloc[:0]).empty


@pytest.mark.parametrize("seed", [0, 1])
def test_regression_metrics_equal_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 2000
    y = rng.normal(10, 3, n)
    yhat = y + rng.normal(0, 1, n)
    preds = [json.dumps(float(v)) if i % 2 else json.dumps({"value": float(v)}) for i, v in enumerate(yhat)]
    ts = T0 + pd.to_timedelta(np.sort(rng.uniform(0, 3 * 86400, n)), unit="s")
    joined = pd.DataFrame(
        {"request_id": [f"r{i}" for i in range(n)], "ts": ts, "prediction": preds, "label": y}
    )
    out = windowed_performance(joined, "regression", "1d")
    day = ts.floor("1d")
    for start, row in out.iterrows():
        at = np.asarray(day == start)
        assert row["rmse"] == pytest.approx(skm.root_mean_squared_error(y[at], yhat[at]), abs=TOL)
        assert row["mae"] == pytest.approx(skm.mean_absolute_error(y[at], yhat[at]), abs=TOL)
    with pytest.raises(ValidationError, match="r3"):
        windowed_performance(
            joined.assign(prediction=np.where(joined.index == 3, '"x"', preds)), "regression"
        )
    with pytest.raises(ValidationError, match="label"):
        windowed_performance(joined.assign(label="high"), "regression")
    with pytest.raises(ValidationError, match="task"):
        windowed_performance(joined, "ranking")  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["null", "[0.1]", '{"other": 1}', '{"score": "high"}', "not json"])
def test_unparseable_predictions_name_the_request(bad: str) -> None:
    frame = pd.DataFrame({"request_id": ["ok-1", "bad-7"], "prediction": ["1", bad]})
    with pytest.raises(ValidationError, match="bad-7"):
        parse_predictions(frame)


# ---------------------------------------------------------------- findings


def _windows(**columns: list[float]) -> pd.DataFrame:
    n = len(next(iter(columns.values())))
    index = pd.date_range(T0, periods=n, freq="1d", name="window_start")
    frame = pd.DataFrame({"window_end": index + pd.Timedelta("1d"), "count": 100, **columns}, index=index)
    return frame


def test_findings_severity_and_direction() -> None:
    w = _windows(accuracy=[0.90, 0.85, 0.849, 0.80, 0.70], rmse=[1.0, 1.05, 1.15, 1.3, 0.5])
    found = compare_to_reference(w, {"accuracy": 0.9, "rmse": 1.0}, tolerance={"accuracy": 0.05, "rmse": 0.1})
    got = [(f.window_start, f.metric, f.severity) for f in found]
    day = pd.date_range(T0, periods=5, freq="1d")
    assert got == [
        (day[2], "accuracy", "warning"),  # just beyond the tolerance
        (day[2], "rmse", "warning"),
        (day[3], "accuracy", "critical"),  # 0.10 below: exactly twice the tolerance
        (day[3], "rmse", "critical"),
        (day[4], "accuracy", "critical"),
    ]
    f = found[0]
    assert (f.kind, f.reference, f.observed, f.tolerance, f.window_end) == (
        "degraded",
        0.9,
        0.849,
        0.05,
        day[3],
    )
    assert "accuracy fell to 0.849" in f.message and "rmse rose" in found[1].message
    doc = json.loads(json.dumps([x.to_dict() for x in found], allow_nan=False))
    assert doc[0]["window_start"] == "2026-03-03T00:00:00+00:00"


def test_findings_for_empty_and_uncomputable_windows() -> None:
    w = _windows(auc_roc=[0.8, np.nan, np.nan])
    w.loc[w.index[2], "count"] = 0
    w["reason"] = ["", "auc_roc: window has only one class", "empty window"]
    found = compare_to_reference(w, {"auc_roc": 0.8}, tolerance={"auc_roc": 0.02})
    assert [(f.kind, f.severity) for f in found] == [("not_computable", "info"), ("empty_window", "info")]
    assert "only one class" in found[0].message
    assert json.loads(json.dumps(found[1].to_dict(), allow_nan=False))["observed"] is None


def test_findings_reject_bad_configuration() -> None:
    w = _windows(accuracy=[0.9])
    with pytest.raises(ValidationError, match="'accuracy' has a reference but no tolerance"):
        compare_to_reference(w, {"accuracy": 0.9}, tolerance={})
    with pytest.raises(ValidationError, match="'f1' is not among"):
        compare_to_reference(w, {"f1": 0.9}, tolerance={"f1": 0.1})
    with pytest.raises(ValidationError, match="tolerance"):
        compare_to_reference(w, {"accuracy": 0.9}, tolerance={"accuracy": -0.1})
