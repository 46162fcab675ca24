"""Service levels per endpoint from the prediction log: percentiles, error rates, overrides, alerts."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from blocks.monitoring import MonitoringConfig
from flows.monitoring import check_operations
from storage.governance.reports import ReportStore
from storage.monitoring.alerts import AlertStore
from storage.monitoring.health import model_health
from storage.monitoring.prediction_log import PredictionLog
from storage.registry.core import Registry
from tasks.monitoring.operational import run_operations_check, service_levels

NOW = datetime.now(UTC).replace(microsecond=0)


def _frame(endpoint: str | None, latencies: np.ndarray, errors: int, variant: str = "stable") -> pd.DataFrame:
    status = ["error"] * errors + ["ok"] * (len(latencies) - errors)
    return pd.DataFrame({"endpoint": endpoint, "variant": variant, "latency_ms": latencies, "status": status})


def test_percentiles_and_error_rates_per_endpoint_match_numpy() -> None:
    rng = np.random.default_rng(3)
    a = _frame("fraud-live", rng.gamma(2.0, 40.0, 1_000), errors=30)
    b = _frame(None, rng.gamma(2.0, 5.0, 400), errors=0)  # named the model directly
    shadow = _frame("fraud-live", np.full(500, 5_000.0), errors=500, variant="shadow:fraud:2")
    config = MonitoringConfig.model_validate(
        {"operations": {"p95_ms": {"warning": 150}, "endpoints": {"fraud": {"p99_ms": {"warning": 20}}}}}
    ).operations
    verdict = service_levels(pd.concat([a, b, shadow]), config, model="fraud")
    levels = {e.endpoint: e for e in verdict.endpoints}
    ok_a = a.loc[a["status"] == "ok", "latency_ms"].to_numpy()
    assert levels["fraud-live"].requests == 1_000  # shadow rows left out
    assert levels["fraud-live"].error_rate == pytest.approx(0.03)
    assert levels["fraud-live"].p95_ms == pytest.approx(np.percentile(ok_a, 95))
    assert levels["fraud-live"].p99_ms == pytest.approx(np.percentile(ok_a, 99))
    assert levels["fraud"].p99_ms == pytest.approx(np.percentile(b["latency_ms"], 99))
    found = {(kind, severity, subject) for kind, severity, subject, _ in verdict.findings}
    assert found == {
        ("latency", "warning", "fraud-live:p95"),  # gamma(2, 40): p95 ≈ 190 ms > 150, p99 ≈ 265 < 500
        ("error_rate", "warning", "fraud-live"),  # 3% > 1%, not above the critical 5%
        ("latency", "warning", "fraud:p99"),  # the override for "fraud": p99 ≈ 33 ms > 20 (p95 ≈ 24 < 150)
    }
    assert verdict.error_rate_ratio == pytest.approx(3.0)
    assert verdict.latency_ratio == pytest.approx(levels["fraud"].p99_ms / 20)


def test_endpoints_with_few_requests_are_not_judged() -> None:
    verdict = service_levels(
        _frame("x", np.full(10, 9_999.0), errors=5), MonitoringConfig().operations, model="m"
    )
    assert verdict.passed and not verdict.endpoints[0].judged
    assert (verdict.latency_ratio, verdict.error_rate_ratio) == (0.0, 0.0)


def _log(latency: float, at: datetime, n: int = 100) -> None:
    PredictionLog.from_settings().append(
        [
            {
                "request_id": uuid.uuid4().hex,
                "model": "fraud",
                "version": 1,
                "ts": at,
                "features": json.dumps({"amount": 1.0}),
                "prediction": "0",
                "latency_ms": latency,
                "status": "ok",
                "endpoint": "fraud-live",
                "variant": "stable",
            }
            for _ in range(n)
        ]
    )


@pytest.mark.usefixtures("prefect_harness")
def test_check_operations_alerts_feeds_the_health_score_and_resolves_when_cleared() -> None:
    registry = Registry.from_settings()
    registry.create_model("fraud")
    registry.create_version("fraud", framework="sklearn")
    _log(2_500.0, NOW - timedelta(minutes=10))
    slow = check_operations("fraud", "1", window_hours=1)
    assert [(a["kind"], a["severity"], a["subject"]) for a in slow["new_alerts"]] == [
        ("latency", "critical", "fraud-live:p99")
    ]
    report = ReportStore(registry).latest("operations_check", "fraud", 1)
    assert report is not None and not report.passed and report.payload["latency_ratio"] == 5.0
    health = model_health(registry, "fraud", 1)
    assert [(d.reason, d.points) for d in health.deductions] == [("critical alert", 20.0), ("latency", 10.0)]
    assert check_operations("fraud", "1", window_hours=1)["new_alerts"] == []  # counted, not raised again
    _log(20.0, NOW - timedelta(hours=2, minutes=10))
    cleared = run_operations_check.fn("fraud", 1, window_hours=1, end=NOW - timedelta(hours=2))
    assert cleared["passed"] is True and cleared["latency_ratio"] == pytest.approx(20.0 / 500)
    assert AlertStore(registry).open_alerts("fraud") == []
    assert model_health(registry, "fraud", 1).score == 100.0
