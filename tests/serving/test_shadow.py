"""Shadow disagreement from the prediction log."""

from __future__ import annotations

import pandas as pd

from serving.shadow import outputs_disagree, shadow_report
from storage.prediction_log import PredictionLog


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


def test_numeric_tolerance_and_shapes() -> None:
    assert outputs_disagree([0.1, 0.2], [0.1, 0.2 + 1e-9]) == (
        False,
        outputs_disagree([0.1, 0.2], [0.1, 0.2 + 1e-9])[1],
    )
    assert outputs_disagree([0.1, 0.2], [0.1, 0.3])[0]
    assert outputs_disagree([1, 2], [1])[0]
    assert not outputs_disagree({"label": "cat"}, '{"label": "cat"}')[0]
