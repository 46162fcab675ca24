"""Monitoring reports (JSON and Evidently's HTML) go to the report root, a folder or the object store."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from prefect import flow

from storage.monitoring.prediction_log import PredictionLog
from storage.objectstore import Place
from storage.registry.core import Registry
from tasks.monitoring.profiles import build_profile
from tasks.monitoring.report import evidently_html, publish_monitoring_report, report_place
from tasks.monitoring.steps import store_reference_profile

pytestmark = pytest.mark.usefixtures("prefect_harness")


@pytest.fixture(params=["local", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """MLOPS_STORAGE_URL: a local folder, and a bucket on the test's S3 server."""
    url = str(tmp_path / "shared") if request.param == "local" else str(request.getfixturevalue("s3_url"))
    monkeypatch.setenv("MLOPS_STORAGE_URL", url)
    return url


def frame(n: int, shift: float, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"amount": rng.normal(shift, 1.0, n), "age": rng.normal(40, 10, n)})


@pytest.fixture
def scored() -> Registry:
    """A production version with a reference profile and a drifted hour in the prediction log."""
    registry = Registry.from_settings()
    registry.create_model("fraud-eu")
    registry.create_version("fraud-eu", framework="sklearn")
    registry.transition_stage("fraud-eu", 1, "staging")
    registry.transition_stage("fraud-eu", 1, "production")
    store_reference_profile(registry, "fraud-eu", 1, build_profile(frame(2_000, 0.0, 1)))
    now = datetime.now(UTC)
    PredictionLog.from_settings().append(
        [
            {
                "request_id": uuid.uuid4().hex,
                "model": "fraud-eu",
                "version": 1,
                "ts": now - timedelta(minutes=20),
                "entity_key": None,
                "features": json.dumps(row),
                "prediction": "0",
                "latency_ms": 2.0,
                "status": "ok",
            }
            for row in frame(300, 1.0, 2).to_dict("records")
        ]
    )
    return registry


@flow(name="monitoring-report-probe")
def publish(model: str, version: str) -> dict[str, Any]:
    return publish_monitoring_report(model, version, evidently=True)


def test_reports_default_to_the_monitoring_folder_of_the_report_root(storage: str, scored: Registry) -> None:
    report = publish("fraud-eu", "1")
    folder = f"{storage}/reports/monitoring"
    assert report["report_uri"] == f"{folder}/fraud-eu-v1-monitoring.json"
    assert report["evidently_html"] == f"{folder}/fraud-eu-v1-evidently-drift.html"
    place = Place(folder)
    assert place.names() == ["fraud-eu-v1-evidently-drift.html", "fraud-eu-v1-monitoring.json"]
    written = json.loads(place.read_bytes(place.path("fraud-eu-v1-monitoring.json")))
    assert written["model"] == "fraud-eu" and written["operations"]["count"] == 300
    html = place.read_bytes(place.path("fraud-eu-v1-evidently-drift.html"))
    assert len(html) > 10_000 and b"amount" in html


def test_an_explicit_url_wins_over_the_report_root(storage: str, scored: Registry, tmp_path: Path) -> None:
    elsewhere = f"{storage}/elsewhere/run-7"
    uri = evidently_html(scored, "fraud-eu", 1, elsewhere)
    assert uri == f"{elsewhere}/fraud-eu-v1-evidently-drift.html"
    assert Place(elsewhere).exists(Place(elsewhere).path("fraud-eu-v1-evidently-drift.html"))
    assert report_place().names() == []
    assert not (tmp_path / "mlops-home" / "reports").exists()
