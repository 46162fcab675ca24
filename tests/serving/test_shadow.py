"""Shadow disagreement from the prediction log."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import pytest

from serving.shadow import outputs_disagree, shadow_report
from storage.monitoring.prediction_log import PredictionLog


def test_disagreement_rate_from_a_real_prediction_log(tmp_path: object) -> None:
    log = PredictionLog(str(tmp_path))
    rows = []
    for i in range(100):
        base = {"model": "m", "ts": "2026-01-01T10:00:00Z", "features": {"x": i}, "endpoint": "ep"}
        rows.append(
            {
                **base,
                "request_id": f"r{i}",
                "version": 1,
                "prediction": [i % 2],
                "variant": "live",
                "latency_ms": 1.0,
            }
        )
        shadow_out = [(i % 2) if i % 10 else 1 - (i % 2)]  # every tenth disagrees
        rows.append(
            {
                **base,
                "request_id": f"r{i}",
                "version": 2,
                "prediction": shadow_out,
                "variant": "shadow:m:2",
                "latency_ms": 3.0,
            }
        )
    rows.append(
        {
            **rows[0],
            "request_id": "x",
            "variant": "shadow:m:2",
            "status": "error",
            "prediction": {"error": "boom"},
        }
    )
    log.append(rows)
    (report,) = shadow_report(log.read(model="m"), endpoint="ep")
    assert (report.pairs, report.disagreements, report.shadow_errors) == (100, 10, 1)
    assert report.disagreement_rate == 0.1 and report.shadow_p50_ms == 3.0
    assert shadow_report(pd.DataFrame(), endpoint="ep") == []


def test_classifier_rows_compare_labels() -> None:
    assert outputs_disagree('{"label": 1, "score": 0.9}', '{"label": 0, "score": 0.4}') == (True, 0.5)
    assert outputs_disagree({"label": "cat", "score": 0.6}, {"label": "cat", "score": 0.6}) == (False, 0.0)


def test_numeric_tolerance_and_shapes() -> None:
    assert outputs_disagree([0.1, 0.2], [0.1, 0.2 + 1e-9]) == (
        False,
        outputs_disagree([0.1, 0.2], [0.1, 0.2 + 1e-9])[1],
    )
    assert outputs_disagree([0.1, 0.2], [0.1, 0.3])[0]
    assert outputs_disagree([1, 2], [1])[0]
    assert not outputs_disagree({"label": "cat"}, '{"label": "cat"}')[0]


@pytest.mark.slow
def test_shadow_report_through_the_real_server(tmp_path: Path) -> None:
    """Mirror every request of an endpoint to another version; the report pairs them from the log."""
    import httpx

    from serving.testing import demo_frame, register_demo
    from tests.serving.canary_models import ADMIN, served_registry

    with served_registry(tmp_path, log_predictions=True) as (url, reg):
        register_demo(reg, "fraud", "sklearn", n_estimators=3, seed=7)  # v3: a different model
        admin = httpx.Client(base_url=f"{url}/admin", headers=ADMIN, timeout=30)
        body = {
            "name": "shop",
            "policy": "shadow",
            "variants": [{"name": "live", "model": "fraud", "version": "1"}],
            "shadows": [
                {"name": "next", "model": "fraud", "version": "3"},
                {"name": "bad", "model": "fraud", "version": "2"},
            ],
            "shadow_percent": 100,
        }
        assert admin.post("/endpoints", json=body).status_code == 201
        rows = demo_frame(40, seed=5).to_dict(orient="records")
        with httpx.Client(base_url=url, timeout=30) as client:
            for i in range(0, 40, 4):
                r = client.post("/v1/models/shop/predict", json={"instances": rows[i : i + 4]})
                assert r.status_code == 200 and r.json()["variant"] == "live"
        deadline = time.monotonic() + 20
        reports: list[dict] = []
        while time.monotonic() < deadline:
            reports = admin.get("/endpoints/shop/shadow-report").json()
            if len(reports) == 2 and all(r["pairs"] + r["shadow_errors"] >= 40 for r in reports):
                break
            time.sleep(0.3)
        admin.close()
    by_name = {r["shadow"]: r for r in reports}
    assert set(by_name) == {"shadow:fraud:3", "shadow:fraud:2"}
    # every row is logged (request id <id>:<row>): 10 requests of 4 rows
    assert by_name["shadow:fraud:2"]["shadow_errors"] == 40 and by_name["shadow:fraud:2"]["pairs"] == 0
    good = by_name["shadow:fraud:3"]
    assert good["pairs"] == 40 and good["shadow_errors"] == 0
    assert 0 <= good["disagreement_rate"] < 0.5  # another model, mostly the same labels
    assert good["mean_abs_difference"] > 0  # with other scores
