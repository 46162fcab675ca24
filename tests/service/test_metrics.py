"""The platform service's /metrics: request counts by route template, model gauges from the store,
flow runs from Prefect, the optional bearer token."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from service.app import create_app
from service.metrics import install_metrics
from storage.governance.reports import ReportStore
from storage.monitoring.alerts import AlertStore
from storage.monitoring.health import model_health
from storage.monitoring.routes import AlertRouteStore
from storage.registry.core import Registry


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _value(samples: dict[Any, float], name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def _client(registry: Registry) -> TestClient:
    app = create_app(registry=registry)
    install_metrics(app, cache_seconds=0)
    return TestClient(app)


def test_requests_are_counted_by_route_template(registry: Registry) -> None:
    client = _client(registry)
    for name in ("a", "b", "c"):
        client.get(f"/api/v1/models/{name}")  # no key: 401, three paths, one template
    client.get("/api/v1/health")
    samples = _samples(client.get("/metrics").text)
    unauthorized = [
        v for (n, labels), v in samples.items()
        if n == "mlops_service_requests_total" and ("route", "/api/v1/models/{name}") in labels
    ]  # fmt: skip
    assert unauthorized == [3.0]
    assert (
        _value(samples, "mlops_service_requests_total", method="GET", route="/api/v1/health", status="200")
        == 1.0
    )
    count = _value(
        samples, "mlops_service_request_duration_seconds_count", method="GET", route="/api/v1/health"
    )
    assert count == 1.0
    assert not any("/models/a" in str(labels) for _, labels in samples)


def test_model_gauges_equal_what_the_store_holds(registry: Registry) -> None:
    registry.create_model("fraud")
    for _ in range(3):
        registry.create_version("fraud", framework="sklearn")
    registry.transition_stage("fraud", 2, "staging")
    alerts = AlertStore(registry)
    alerts.raise_alert("fraud", 2, kind="drift", severity="critical", subject="dataset", message="2 of 3")
    alerts.raise_alert("fraud", 2, kind="drift", severity="warning", subject="amount", message="KS")
    alerts.raise_alert(
        "fraud", 2, kind="data_quality", severity="warning", subject="age:null_rate", message="n"
    )
    reports = ReportStore(registry)
    reports.save("drift_check", "fraud", 1, passed=True, summary="old", payload={"dataset_drift": False})
    reports.save(
        "drift_check", "fraud", 2, passed=False, summary="new",
        payload={"dataset_drift": True, "drifted_columns": ["amount", "age"]},
    )  # fmt: skip
    reports.save("data_quality", "fraud", 2, passed=False, summary="q", payload={"findings": [{}, {}, {}]})
    reports.save(
        "operations_check", "fraud", 2, passed=False, summary="slow",
        payload={"endpoints": [{"endpoint": "fraud-live", "p99_ms": 750.0, "error_rate": 0.04}],
                 "latency_ratio": 1.5, "error_rate_ratio": 4.0},
    )  # fmt: skip
    routes = AlertRouteStore(registry)
    routes.add("ops", "slack-webhook/ops")
    for planned in routes.plan():
        routes.record(planned.notification.id, status="sent", attempts=1)

    samples = _samples(_client(registry).get("/metrics").text)
    assert _value(samples, "mlops_model_versions", model="fraud", stage="development") == 2.0
    assert _value(samples, "mlops_model_versions", model="fraud", stage="staging") == 1.0
    assert _value(samples, "mlops_open_alerts", model="fraud", kind="drift", severity="warning") == 1.0
    assert _value(samples, "mlops_open_alerts", model="fraud", kind="drift", severity="critical") == 1.0
    assert _value(samples, "mlops_open_alerts", model="fraud", kind="data_quality", severity="warning") == 1.0
    expected = model_health(registry, "fraud")
    assert (
        _value(samples, "mlops_model_health_score", model="fraud")
        == expected.score
        == 100 - 20 - 5 - 5 - 5 - 10
    )
    assert (
        _value(samples, "mlops_model_health_deduction_points", model="fraud", reason="warning alert") == 10.0
    )
    assert _value(samples, "mlops_model_health_deduction_points", model="fraud", reason="error rate") == 10.0
    assert _value(samples, "mlops_model_drift_detected", model="fraud", version="2") == 1.0
    assert (
        _value(samples, "mlops_model_drift_detected", model="fraud", version="1") is None
    )  # only the newest
    assert _value(samples, "mlops_model_drifted_columns", model="fraud", version="2") == 2.0
    assert _value(samples, "mlops_model_data_quality_findings", model="fraud", version="2") == 3.0
    assert _value(samples, "mlops_model_latency_p99_seconds", model="fraud", endpoint="fraud-live") == 0.75
    assert _value(samples, "mlops_model_error_rate", model="fraud", endpoint="fraud-live") == 0.04
    assert _value(samples, "mlops_alert_notifications", route="ops", status="sent") == 3.0


def test_a_metrics_token_is_required_when_set(registry: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLOPS_METRICS_TOKEN", "s3cret")
    client = _client(registry)
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert (
        "mlops_service_requests_total"
        in client.get("/metrics", headers={"Authorization": "Bearer s3cret"}).text
    )


@pytest.mark.usefixtures("prefect_harness")
def test_flow_runs_and_durations_come_from_prefect(registry: Registry) -> None:
    from prefect import flow

    name = f"metrics-probe-{uuid.uuid4().hex[:8]}"  # the harness is shared by the whole session

    @flow(name=name)
    def probe(fail: bool = False) -> int:
        if fail:
            raise RuntimeError("planned failure")
        return 1

    probe()
    probe()
    probe(fail=True, return_state=True)
    samples = _samples(_client(registry).get("/metrics").text)
    assert _value(samples, "mlops_prefect_api_up") == 1.0
    assert _value(samples, "mlops_flow_runs", flow=name, state="COMPLETED") == 2.0
    assert _value(samples, "mlops_flow_runs", flow=name, state="FAILED") == 1.0
    mean = _value(samples, "mlops_flow_run_mean_duration_seconds", flow=name)
    assert mean is not None and 0.0 <= mean < 60.0
    assert _value(samples, "mlops_flow_run_last_duration_seconds", flow=name) is not None
    assert (_value(samples, "mlops_flow_run_last_success_timestamp_seconds", flow=name) or 0) > 1.7e9
