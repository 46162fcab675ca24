"""``mlops monitor drift`` and ``mlops alerts``."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from mlops.cli_monitoring import parse_window
from storage.errors import ValidationError
from storage.monitoring.prediction_log import PredictionLog
from storage.registry.core import Registry
from tasks.monitoring.profiles import build_profile
from tasks.monitoring.steps import store_reference_profile
from tests.mlops.test_cli import failed, ok, ok_json


def test_window_parsing() -> None:
    assert (parse_window("30m"), parse_window("24h"), parse_window("7d")) == (0.5, 24.0, 168.0)
    with pytest.raises(ValidationError, match="window '1w' is malformed"):
        parse_window("1w")


def test_drift_alerts_and_resolve_from_the_command_line() -> None:
    registry = Registry.from_settings()
    registry.create_model("fraud")
    registry.create_version("fraud", framework="sklearn")
    rng = np.random.default_rng(0)
    store_reference_profile(
        registry, "fraud", 1, build_profile(pd.DataFrame({"amount": rng.normal(0, 1, 10_000)}))
    )
    now = datetime.now(UTC)
    PredictionLog.from_settings().append(
        [
            {
                "request_id": uuid.uuid4().hex,
                "model": "fraud",
                "version": 1,
                "ts": now - timedelta(minutes=5),
                "features": json.dumps({"amount": float(x)}),
                "prediction": "1",
                "latency_ms": 2.0,
                "status": "ok",
            }
            for x in rng.normal(1.0, 1, 2_000)
        ]
    )
    result = ok_json("monitor", "drift", "fraud", "--version", "1", "--window", "1h")
    assert result["drifted_columns"] == ["amount"] and result["dataset_drift"] is True
    listed = ok_json("alerts", "list", "--model", "fraud")
    assert {a["subject"] for a in listed["alerts"]} == {"amount", "dataset"}
    assert listed["health"] == {"fraud": 75.0}
    first = listed["alerts"][0]["id"]
    assert "resolved alert" in ok("alerts", "resolve", str(first)).stdout
    assert len(ok_json("alerts", "list", "--model", "fraud")["alerts"]) == 1
    assert "alert 999 does not exist" in failed("alerts", "resolve", "999").stderr


def test_monitor_report_without_checks_says_so() -> None:
    registry = Registry.from_settings()
    registry.create_model("quiet")
    registry.create_version("quiet", framework="sklearn")
    found = ok_json("monitor", "report", "quiet", "--version", "1")
    assert (found["health"], found["drift"], found["alerts"]) == (100.0, None, [])
    assert "no check recorded" in ok("monitor", "report", "quiet", "--version", "1").stdout
