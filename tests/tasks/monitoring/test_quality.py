"""Data quality against the reference profile: nulls, range, unseen categories, schema; in check-drift."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from blocks.monitoring import MonitoringConfig, QualityThresholds
from storage.governance.reports import ReportStore
from storage.monitoring.alerts import AlertStore
from storage.monitoring.prediction_log import PredictionLog
from storage.registry.core import Registry
from tasks.monitoring.profiles import build_profile
from tasks.monitoring.quality import check_quality
from tasks.monitoring.steps import run_drift_check, store_reference_profile

NOW = datetime.now(UTC).replace(microsecond=0)


def _reference(n: int = 5_000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"tenure": rng.normal(24, 6, n), "plan": rng.choice(["a", "b", "c"], n)})


def test_each_measure_equals_a_direct_count() -> None:
    ref_frame = _reference()
    ref_frame.loc[:249, "tenure"] = np.nan  # 5% missing in the reference
    profile = build_profile(ref_frame, categorical=["plan"])
    rng = np.random.default_rng(1)
    cur = pd.DataFrame({"tenure": rng.normal(24, 12, 2_000), "plan": rng.choice(["a", "b", "d"], 2_000)})
    cur.loc[:599, "tenure"] = np.nan
    report = check_quality(profile, cur)
    by_name = {c.column: c for c in report.columns}
    tenure, plan = by_name["tenure"], by_name["plan"]
    # The trusted references: plain pandas/numpy counts on the two frames.
    assert tenure.null_rate == pytest.approx(cur["tenure"].isna().mean())
    assert tenure.reference_null_rate == pytest.approx(ref_frame["tenure"].isna().mean())
    present = cur["tenure"].dropna().to_numpy()
    lo, hi = np.nanmin(ref_frame["tenure"]), np.nanmax(ref_frame["tenure"])
    assert tenure.out_of_range_share == pytest.approx(((present < lo) | (present > hi)).mean())
    assert plan.unseen_share == pytest.approx((cur["plan"] == "d").mean())
    assert plan.unseen_examples == ["d"]
    subjects = {f.subject: f.severity for f in report.findings}
    # null increase 0.30 - 0.05 = 0.25 is not above the critical 0.25: a warning
    assert subjects["tenure:null_rate"] == "warning"
    assert subjects["plan:unseen"] == "critical"  # about a third unseen
    assert "tenure:out_of_range" in subjects


def test_schema_changes_missing_column_and_type() -> None:
    profile = build_profile(_reference(), categorical=["plan"])
    cur = pd.DataFrame({"tenure": ["12", "n/a"] * 20, "extra": [1] * 40})
    report = check_quality(profile, cur)
    found = {f.subject: (f.severity, f.message) for f in report.findings}
    assert (
        found["plan:missing"][0] == "critical" and "missing from all 40 requests" in found["plan:missing"][1]
    )
    assert found["tenure:type"][0] == "critical" and "20 non-numeric" in found["tenure:type"][1]
    assert report.new_columns == ("extra",)
    numbers_for_text = check_quality(profile, pd.DataFrame({"tenure": [20.0] * 40, "plan": [1] * 40}))
    assert [f.subject for f in numbers_for_text.findings] == ["plan:type", "plan:unseen"]


def test_thresholds_come_from_the_config_and_small_windows_are_not_judged() -> None:
    profile = build_profile(_reference(), categorical=["plan"])
    cur = pd.DataFrame({"tenure": [np.nan] * 10 + [24.0] * 30, "plan": ["a"] * 40})
    assert [f.subject for f in check_quality(profile, cur).findings] == ["tenure:null_rate"]
    lenient = MonitoringConfig.model_validate(
        {"quality": {"null_rate_increase": {"warning": 0.3}, "ignore_columns": ["plan"]}}
    ).quality
    assert check_quality(profile, cur, lenient).passed
    assert check_quality(profile, cur.head(10), QualityThresholds(min_rows=20)).passed
    assert [c.column for c in check_quality(profile, cur, lenient).columns] == ["tenure"]


def _log(rows: list[dict[str, object]], at: datetime = NOW - timedelta(minutes=5)) -> None:
    PredictionLog.from_settings().append(
        [
            {
                "request_id": uuid.uuid4().hex,
                "model": "churn",
                "version": 1,
                "ts": at,
                "features": json.dumps(row),
                "prediction": "0",
                "latency_ms": 2.0,
                "status": "ok",
            }
            for row in rows
        ]
    )


def test_a_window_with_sixty_percent_missing_values_raises_a_data_quality_alert() -> None:
    registry = Registry.from_settings()
    registry.create_model("churn")
    registry.create_version("churn", framework="sklearn")
    store_reference_profile(registry, "churn", 1, build_profile(_reference(), categorical=["plan"]))
    rng = np.random.default_rng(5)
    rows = [
        {"tenure": None if i % 5 < 3 else float(rng.normal(24, 6)), "plan": str(rng.choice(["a", "b", "c"]))}
        for i in range(1_000)
    ]
    _log(rows)
    result = run_drift_check.fn("churn", 1, window_hours=1)
    quality = result["data_quality"]
    assert quality["passed"] is False
    assert [(a["kind"], a["severity"], a["subject"]) for a in quality["new_alerts"]] == [
        ("data_quality", "critical", "tenure:null_rate")
    ]
    assert "null rate 60.00%" in quality["new_alerts"][0]["message"]
    evidence = ReportStore(registry).latest("data_quality", "churn", 1)
    assert evidence is not None and not evidence.passed and "tenure:null_rate" in evidence.summary
    assert [a.subject for a in AlertStore(registry).open_alerts("churn") if a.kind == "data_quality"] == [
        "tenure:null_rate"
    ]
    # The same window again: counted, not raised again.
    assert run_drift_check.fn("churn", 1, window_hours=1)["data_quality"]["new_alerts"] == []
    # An empty window judges nothing; a clean window resolves the alert.
    assert run_drift_check.fn("churn", 1, window_hours=1, end=NOW + timedelta(hours=3))["rows"] == 0
    assert [a.subject for a in AlertStore(registry).open_alerts("churn") if a.kind == "data_quality"] == [
        "tenure:null_rate"
    ]
    _log([{"tenure": float(v), "plan": "a"} for v in rng.normal(24, 6, 500)], at=NOW - timedelta(hours=3))
    clean = run_drift_check.fn("churn", 1, window_hours=2, end=NOW - timedelta(hours=2))
    assert clean["rows"] == 500 and clean["data_quality"]["passed"] is True
    resolved = AlertStore(registry).list(model="churn", status="resolved")
    assert [(a.kind, a.subject) for a in resolved] == [("data_quality", "tenure:null_rate")]
