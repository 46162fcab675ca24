"""deployments/observability: Prometheus config and rules (promtool), Grafana dashboards, and a real
Prometheus scraping a running model server and the platform service."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from fastapi.testclient import TestClient

ROOT = Path(__file__).resolve().parents[2]
OBS = ROOT / "deployments" / "observability"
RULES = OBS / "rules" / "mlops.rules.yml"
DASHBOARDS = OBS / "grafana" / "dashboards"
PROMTOOL = shutil.which("promtool")
PROMETHEUS = shutil.which("prometheus")
NO_PROMTOOL = "promtool is not installed (Debian: apt-get install prometheus; .ci/run installs it)"
NO_PROMETHEUS = "prometheus is not installed (Debian: apt-get install prometheus; .ci/run installs it)"
_METRIC = re.compile(r"\b(mlops_[a-z0-9_]+|mlops:[a-z0-9_:]+)")


def _promtool(*args: str, cwd: Path = OBS) -> str:
    assert PROMTOOL is not None
    done = subprocess.run([PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.mark.skipif(PROMTOOL is None, reason=NO_PROMTOOL)
def test_promtool_accepts_the_rules_and_the_config_and_the_rule_tests_pass() -> None:
    assert "SUCCESS: 17 rules found" in _promtool("check", "rules", "rules/mlops.rules.yml")
    assert "is valid prometheus config file syntax" in _promtool("check", "config", "prometheus.yml")
    assert "SUCCESS" in _promtool("test", "rules", "mlops.rules.test.yml", cwd=OBS / "rules")


def _dashboards_module() -> Any:
    spec = importlib.util.spec_from_file_location("mlops_dashboards", OBS / "grafana" / "dashboards.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_committed_dashboards_are_what_the_code_writes() -> None:
    module = _dashboards_module()
    for name, build in module.DASHBOARDS.items():
        assert (DASHBOARDS / name).read_text() == module.render(build), f"rerun dashboards.py: {name} differs"


def _expressions() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for path in sorted(DASHBOARDS.glob("*.json")):
        board = json.loads(path.read_text())
        found[path.name] = [t["expr"] for p in board["panels"] for t in p.get("targets", [])] + [
            v["definition"] for v in board["templating"]["list"] if v.get("definition")
        ]
    rules = yaml.safe_load(RULES.read_text())
    found[RULES.name] = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    return found


def test_the_dashboards_show_what_each_view_promises() -> None:
    boards = {p.stem: json.loads(p.read_text()) for p in DASHBOARDS.glob("*.json")}
    assert set(boards) == {"mlops-serving", "mlops-models", "mlops-pipeline"}
    exprs = _expressions()
    serving = " ".join(exprs["mlops-serving.json"])
    for needle in (
        "rate(mlops_requests_total",
        "histogram_quantile(0.99",
        'status="error"',
        "mlops_errors_total",
    ):
        assert needle in serving
    assert "sum by (endpoint, variant)" in serving
    models = " ".join(exprs["mlops-models.json"])
    for needle in ("mlops_model_health_score", "mlops_model_drift_detected", "mlops_open_alerts"):
        assert needle in models
    pipeline = " ".join(exprs["mlops-pipeline.json"])
    assert "mlops_flow_runs" in pipeline and "mlops_flow_run_mean_duration_seconds" in pipeline
    for board in boards.values():
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)) and board["uid"] and board["title"].startswith("MLOps / ")


def _exported_metric_names() -> set[str]:
    """Every sample name the model server and the platform service expose, from real scrapes."""
    from prometheus_client.parser import text_string_to_metric_families

    from service.app import create_app
    from service.metrics import install_metrics
    from serving.metrics import ServingMetrics
    from storage.governance.reports import ReportStore
    from storage.monitoring.alerts import AlertStore
    from storage.monitoring.routes import AlertRouteStore
    from storage.registry.core import Registry

    serving = ServingMetrics()
    serving.observe("e", "v", "m", "1", 0.01)
    serving.error("e", "v", "m", 500)
    serving.set_replicas("e", 1)
    serving.shadow.labels("e", "m", "ok").inc()
    registry = Registry.from_settings()
    registry.create_model("m")
    registry.create_version("m", framework="sklearn")
    AlertStore(registry).raise_alert("m", 1, kind="latency", severity="warning", subject="e:p99", message="x")
    reports = ReportStore(registry)
    reports.save("drift_check", "m", 1, passed=True, summary="", payload={"dataset_drift": False})
    reports.save("data_quality", "m", 1, passed=True, summary="", payload={"findings": []})
    endpoints = [{"endpoint": "e", "p99_ms": 700.0, "error_rate": 0.0}]
    reports.save("operations_check", "m", 1, passed=False, summary="", payload={"endpoints": endpoints})
    AlertRouteStore(registry).add("r", "slack-webhook/x")
    AlertRouteStore(registry).plan()
    app = create_app(registry=registry)
    install_metrics(app, cache_seconds=0)
    client = TestClient(app)
    client.get("/api/v1/health")
    texts = [serving.render().decode(), client.get("/metrics").text]
    names = {s.name for text in texts for f in text_string_to_metric_families(text) for s in f.samples}
    return names | {n.removesuffix("_bucket") for n in names}


@pytest.mark.usefixtures("prefect_harness")
def test_every_metric_the_dashboards_and_rules_query_is_exported() -> None:
    names = _exported_metric_names()
    rules = yaml.safe_load(RULES.read_text())
    recorded = {r["record"] for g in rules["groups"] for r in g["rules"] if "record" in r}
    # the flow-run gauges appear once Prefect has runs; the harness may have none yet
    flows = {
        "mlops_flow_runs",
        "mlops_flow_run_last_duration_seconds",
        "mlops_flow_run_mean_duration_seconds",
        "mlops_flow_run_last_success_timestamp_seconds",
    }
    assert "mlops_prefect_api_up" in names
    for source, exprs in _expressions().items():
        used = {m for e in exprs for m in _METRIC.findall(e)}
        unknown = used - names - recorded - flows
        assert not unknown, f"{source} queries metrics nobody exports: {sorted(unknown)}"


#: Names, types and help texts dashboards, rules and people rely on: a change here is a breaking change.
SERVING_FAMILIES = {
    "mlops_requests": ("counter", "Inference requests answered."),
    "mlops_request_latency_seconds": ("histogram", "Time to answer an inference request."),
    "mlops_errors": ("counter", "Inference requests that failed, by HTTP status."),
    "mlops_rows": ("counter", "Rows predicted."),
    "mlops_in_flight_requests": ("gauge", "Inference requests being answered."),
    "mlops_replicas": ("gauge", "Replica processes serving an endpoint."),
    "mlops_shadow_predictions": ("counter", "Shadow predictions, by outcome (ok, error, dropped)."),
    "mlops_prediction_log_dropped_rows": ("gauge", "Rows the prediction log writer dropped (queue full)."),
    "mlops_prediction_log_waiting_rows": ("gauge", "Rows waiting to be written to the prediction log."),
    "mlops_prediction_log_longest_write_seconds": (
        "gauge",
        "Longest prediction log write so far, from taking the rows to their file being in place.",
    ),
}
SERVICE_FAMILIES = {
    "mlops_service_requests": ("counter", "Requests the platform service answered."),
    "mlops_service_request_duration_seconds": (
        "histogram",
        "Time the platform service took to answer a request.",
    ),
    "mlops_model_versions": ("gauge", "Registered versions per model and stage."),
    "mlops_open_alerts": ("gauge", "Open alerts per model, kind and severity."),
    "mlops_model_health_score": ("gauge", "Health score of a model (100 = healthy)."),
    "mlops_model_health_deduction_points": ("gauge", "Points taken off a model's health score, by reason."),
    "mlops_model_drift_detected": ("gauge", "1 when the newest drift check found dataset drift."),
    "mlops_model_drifted_columns": ("gauge", "Columns that drifted in the newest drift check."),
    "mlops_model_data_quality_findings": ("gauge", "Findings of the newest data-quality check."),
    "mlops_model_latency_p99_seconds": ("gauge", "p99 latency per endpoint in the newest operations check."),
    "mlops_model_error_rate": ("gauge", "Error rate per endpoint in the newest operations check."),
    "mlops_alert_notifications": ("gauge", "Alert notices in the notification log, by route and status."),
    "mlops_prefect_api_up": ("gauge", "1 when the Prefect API answered the last scrape."),
    "mlops_flow_runs": ("gauge", "Prefect flow runs started in the last 24 hours, by flow and state."),
    "mlops_flow_run_last_duration_seconds": ("gauge", "Run time of the newest finished run of a flow."),
    "mlops_flow_run_mean_duration_seconds": (
        "gauge",
        "Mean run time of a flow's completed runs in the last 24 hours.",
    ),
    "mlops_flow_run_last_success_timestamp_seconds": ("gauge", "When a flow last completed (Unix time)."),
}


def _families(text: str) -> dict[str, tuple[str, str]]:
    from prometheus_client.parser import text_string_to_metric_families

    return {
        f.name: (f.type, f.documentation)
        for f in text_string_to_metric_families(text)
        if not f.name.endswith("_created")
    }


@pytest.mark.usefixtures("prefect_harness")
def test_metric_names_types_and_help_texts_are_stable() -> None:
    from service.app import create_app
    from service.metrics import install_metrics
    from serving.metrics import ServingMetrics
    from storage.registry.core import Registry

    assert _families(ServingMetrics().render().decode()) == SERVING_FAMILIES
    app = create_app(registry=Registry.from_settings())
    install_metrics(app, cache_seconds=0)
    assert _families(TestClient(app).get("/metrics").text) == SERVICE_FAMILIES


# ------------------------------------------------------------------ a real Prometheus


def _free_port() -> int:
    from serving.server import free_port

    return free_port()


@pytest.fixture
def prometheus_binary() -> str:
    if PROMETHEUS is None:
        pytest.skip(NO_PROMETHEUS)
    return PROMETHEUS


def _wait_for(check: Any, deadline_s: float, what: str) -> Any:
    """Poll ``check`` (a quick HTTP query) until it returns a truthy value or the deadline passes."""
    deadline = time.monotonic() + deadline_s
    pause = 0.05
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except httpx.HTTPError as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(pause)
        pause = min(pause * 2, 0.5)
    raise AssertionError(f"timed out waiting for {what}: last answer {last!r}")


@pytest.fixture
def prometheus(prometheus_binary: str, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A Prometheus on 127.0.0.1 with a temporary storage folder; yields its URL and its config path."""
    port = _free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text("global: {}\n")  # replaced by each test before the first reload
    storage = tmp_path / "tsdb"
    process = subprocess.Popen(
        [
            prometheus_binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={storage}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--web.enable-lifecycle",
            "--log.level=warn",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_for(
            lambda: httpx.get(f"{url}/-/ready", timeout=2).status_code == 200, 60, "Prometheus to start"
        )
        yield url, config
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _query(url: str, promql: str) -> list[dict[str, Any]]:
    body = httpx.get(f"{url}/api/v1/query", params={"query": promql}, timeout=5).json()
    assert body["status"] == "success", body
    return list(body["data"]["result"])


def test_prometheus_scrapes_the_model_server_and_loads_the_rules(prometheus: tuple[str, Path]) -> None:
    from service.app import create_app as create_service
    from service.metrics import install_metrics
    from serving.app import create_app as create_server
    from serving.config import ServeSettings
    from serving.server import running_server
    from serving.testing import demo_frame, register_demo
    from storage.registry.core import Registry

    url, config = prometheus
    registry = Registry.from_settings()
    register_demo(registry, "fraud", "sklearn")
    service = create_service(registry=registry)
    install_metrics(service)
    rows = demo_frame(7, seed=3).to_dict("records")
    with (
        running_server(
            create_server(ServeSettings(log_predictions=False), registry=registry)
        ) as model_server,
        running_server(service) as platform,
    ):
        for row in rows:
            assert (
                httpx.post(f"{model_server}/v1/models/fraud/predict", json=[row], timeout=30).status_code
                == 200
            )
        assert (
            httpx.post(
                f"{model_server}/v1/models/fraud/predict", json=[{"amount": "x"}], timeout=30
            ).status_code
            == 400
        )
        scrape = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(RULES)],
            "scrape_configs": [
                {"job_name": "mlops-model-server", "static_configs": [{"targets": [model_server.removeprefix("http://")]}]},
                {"job_name": "mlops-platform-service", "static_configs": [{"targets": [platform.removeprefix("http://")]}]},
            ],
        }  # fmt: skip
        config.write_text(yaml.safe_dump(scrape))
        assert httpx.post(f"{url}/-/reload", timeout=30).status_code == 200

        served = _wait_for(
            lambda: _query(url, 'sum(mlops_requests_total{endpoint="fraud", status="ok"})'),
            60,
            "the served requests in Prometheus",
        )
        assert float(served[0]["value"][1]) == len(rows)
        errors = _wait_for(
            lambda: _query(url, 'mlops_errors_total{endpoint="fraud"}'), 30, "the failed request"
        )
        assert [(e["metric"]["code"], float(e["value"][1])) for e in errors] == [("400", 1.0)]
        up = _wait_for(
            lambda: _query(url, 'up{job="mlops-platform-service"} == 1'), 30, "the platform service"
        )
        assert len(up) == 1
        versions = _wait_for(
            lambda: _query(url, 'mlops_model_versions{model="fraud"}'), 30, "the model gauges"
        )
        assert float(versions[0]["value"][1]) == 1.0

    groups = httpx.get(f"{url}/api/v1/rules", timeout=5).json()["data"]["groups"]
    assert {g["name"] for g in groups} == {
        "mlops-serving-recording", "mlops-serving-alerts", "mlops-models-alerts", "mlops-pipeline-alerts",
    }  # fmt: skip
    assert all(r["health"] != "err" for g in groups for r in g["rules"])
