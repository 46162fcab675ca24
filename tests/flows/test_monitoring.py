"""check-drift on the prediction log: evidence, de-duplicated alerts, events, untestable columns."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest
from prefect.client.orchestration import get_client

from flows.monitoring import check_drift, check_performance
from storage.errors import NotFoundError
from storage.governance.reports import ReportStore
from storage.monitoring.alerts import AlertStore, health_score
from storage.monitoring.prediction_log import PredictionLog
from storage.registry.core import Registry
from tasks.monitoring.profiles import build_profile
from tasks.monitoring.steps import load_reference_profile, store_reference_profile

pytestmark = pytest.mark.usefixtures("prefect_harness")
NOW = datetime.now(UTC).replace(microsecond=0)


def _frame(n: int, shift: float, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"amount": rng.normal(shift, 1.0, n), "age": rng.normal(40, 10, n)})


def _log(frame: pd.DataFrame, version: int = 1) -> None:
    PredictionLog.from_settings().append(
        [
            {
                "request_id": uuid.uuid4().hex,
                "model": "fraud",
                "version": version,
                "ts": NOW - timedelta(minutes=30),
                "entity_key": None,
                "features": json.dumps(row),
                "prediction": "0",
                "latency_ms": 3.0,
                "status": "ok",
            }
            for row in frame.to_dict("records")
        ]
    )


@pytest.fixture
def fraud() -> Registry:
    registry = Registry.from_settings()
    registry.create_model("fraud")
    registry.create_version("fraud", framework="sklearn")
    registry.transition_stage("fraud", 1, "staging")
    registry.transition_stage("fraud", 1, "production")
    store_reference_profile(registry, "fraud", 1, build_profile(_frame(20_000, 0.0, 1)))
    return registry


def _events(name: str, since: datetime) -> list[dict[str, Any]]:
    """Events called ``name`` from ``since`` on (the session's Prefect harness holds other tests' too)."""
    from prefect.events.worker import EventsWorker

    EventsWorker.drain_all()
    query = {"event": {"name": [name]}, "occurred": {"since": since.isoformat()}}
    for _ in range(240):  # up to a minute: the events worker is slow on a busy machine
        with get_client(sync_client=True) as client:
            answer = client.request("POST", "/events/filter", json={"filter": query, "limit": 50})
            found = answer.json()["events"]
        if found:
            return list(found)
        time.sleep(0.25)
    return []


def test_reference_profile_round_trips_through_the_artifact_store(fraud: Registry) -> None:
    profile = load_reference_profile(fraud, "fraud", 1)
    assert set(profile.columns) == {"amount", "age"} and profile.rows == 20_000
    fraud.create_version("fraud", framework="sklearn")
    with pytest.raises(NotFoundError, match="no reference profile stored for fraud version 2"):
        load_reference_profile(fraud, "fraud", 2)


def test_shifted_column_alerts_once_and_is_recorded_as_evidence(fraud: Registry) -> None:
    began = datetime.now(UTC)
    _log(_frame(5_000, 0.5, 7))  # seed 7: the unshifted column is far from significance (p 0.66)
    first = check_drift("fraud", window_hours=2)
    # One of two columns drifted: that reaches the dataset-drift share (0.5) too.
    assert first["drifted_columns"] == ["amount"] and first["dataset_drift"] is True
    assert sorted((a["severity"], a["subject"]) for a in first["new_alerts"]) == [
        ("critical", "dataset"),
        ("warning", "amount"),
    ]
    evidence = ReportStore(fraud).latest("drift_check", "fraud", 1)
    assert evidence is not None and not evidence.passed and "1 of 2 columns drifted" in evidence.summary
    again = check_drift("fraud", window_hours=2)
    assert again["new_alerts"] == []  # the same drift on the same columns: counted, not re-raised
    alerts = AlertStore(fraud).open_alerts("fraud")
    assert sorted((a.subject, a.count) for a in alerts) == [("amount", 2), ("dataset", 2)]
    assert health_score(alerts) == 75.0
    events = _events("mlops.drift.detected", began)
    assert sorted(e["payload"]["subject"] for e in events) == ["amount", "dataset"]


def test_no_shift_no_alert_and_untestable_columns_are_named(fraud: Registry) -> None:
    window = _frame(5_000, 0.0, 3).assign(age="n/a")  # a column of another type
    _log(window)
    result = check_drift("fraud", window_hours=2)
    assert result["drifted_columns"] == [] and result["new_alerts"] == []
    assert "age" in result["untestable"]


def test_delayed_labels_reveal_degraded_performance(fraud: Registry, tmp_path: Any) -> None:
    registry = Registry.from_settings()
    registry.create_model("churn")
    registry.create_version("churn", framework="sklearn", metrics={"accuracy": 0.9})
    rng = np.random.default_rng(4)
    truth = rng.integers(0, 2, 1_000)
    wrong = rng.random(1_000) < 0.3  # the model is now right 70% of the time
    predicted = np.where(wrong, 1 - truth, truth)
    ids = [uuid.uuid4().hex for _ in range(1_000)]
    PredictionLog.from_settings().append(
        [
            {
                "request_id": rid,
                "model": "churn",
                "version": 1,
                "ts": NOW - timedelta(minutes=40),
                "features": "{}",
                "prediction": json.dumps(int(p)),
                "latency_ms": 2.0,
                "status": "ok",
            }
            for rid, p in zip(ids, predicted, strict=True)
        ]
    )
    labels, began = tmp_path / "labels.csv", datetime.now(UTC)
    pd.DataFrame({"request_id": ids[:800], "label": truth[:800]}).to_csv(labels, index=False)  # 80% arrived
    result = check_performance("churn", str(labels), version="1", window_hours=2, tolerance=0.05)
    assert result["degraded"] is True and result["labelled"] == 800
    [alert] = AlertStore(registry).open_alerts("churn")
    assert (alert.kind, alert.subject, alert.severity) == ("performance", "accuracy", "critical")
    evidence = ReportStore(registry).latest("performance_check", "churn", 1)
    assert evidence is not None and not evidence.passed
    assert _events("mlops.performance.degraded", began)


def test_monitoring_report_flow_summarises_and_writes_evidently_html(fraud: Registry, tmp_path: Any) -> None:
    from flows.monitoring import monitoring_report_flow

    _log(_frame(1_000, 0.5, 7))
    check_drift("fraud", window_hours=2)
    report = monitoring_report_flow("fraud", "1", evidently=True, out_dir=str(tmp_path / "reports"))
    assert report["health"] == 75.0 and report["drift"]["passed"] is False
    assert report["operations"]["count"] == 1_000 and report["operations"]["latency_p99_ms"] == 3.0
    assert {a["subject"] for a in report["alerts"]} == {"amount", "dataset"}
    html = tmp_path / "reports" / "fraud-v1-evidently-drift.html"
    assert html.exists() and html.stat().st_size > 10_000


def test_reference_profile_built_in_chunks_on_dask_equals_one_pass(
    fraud: Registry, dask_cluster: Any, tmp_path: Any
) -> None:
    from prefect_dask import DaskTaskRunner

    from flows.monitoring import build_reference_profile

    frame = _frame(9_000, 0.0, 11).assign(plan=np.random.default_rng(2).choice(["a", "b", "c"], 9_000))
    paths = []
    for i, part in enumerate(np.array_split(frame, 3)):
        paths.append(str(tmp_path / f"part-{i}.parquet"))
        part.to_parquet(paths[-1])
    runner = DaskTaskRunner(address=dask_cluster.scheduler_address)
    stored = build_reference_profile.with_options(task_runner=runner)("fraud", "1", paths, ["plan"])
    assert stored["kind"] == "reference_profile"
    chunked = load_reference_profile(fraud, "fraud", 1)
    first = build_profile(pd.read_parquet(paths[0]), categorical=["plan"])
    whole = build_profile(frame.reset_index(drop=True), categorical=["plan"], edges=first.edges())
    assert chunked.rows == whole.rows == 9_000
    assert chunked.columns["plan"].to_dict() == whole.columns["plan"].to_dict()
    assert chunked.columns["amount"].counts.tolist() == whole.columns["amount"].counts.tolist()
    assert chunked.columns["amount"].sample.tolist() == whole.columns["amount"].sample.tolist()


def test_prediction_drift_is_checked_when_the_profile_recorded_predictions(fraud: Registry) -> None:
    rng = np.random.default_rng(8)
    training = _frame(10_000, 0.0, 9).assign(pred=(rng.random(10_000) < 0.2).astype(int))
    fraud.create_version("fraud", framework="sklearn")
    store_reference_profile(
        fraud, "fraud", 2, build_profile(training, categorical=["pred"], prediction="pred")
    )
    window = _frame(3_000, 0.0, 10)
    predictions = (rng.random(3_000) < 0.5).astype(int)  # the model now flags half the traffic
    PredictionLog.from_settings().append(
        [
            {
                "request_id": uuid.uuid4().hex,
                "model": "fraud",
                "version": 2,
                "ts": NOW - timedelta(minutes=20),
                "features": json.dumps(row),
                "prediction": json.dumps({"label": int(p), "score": 0.5}),
                "latency_ms": 3.0,
                "status": "ok",
            }
            for row, p in zip(window.to_dict("records"), predictions, strict=True)
        ]
    )
    result = check_drift("fraud", "2", window_hours=2)
    assert "pred" in result["drifted_columns"]  # the prediction rate moved from 0.2 to 0.5
