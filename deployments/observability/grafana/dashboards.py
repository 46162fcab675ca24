"""The Grafana dashboards of the platform, as code; run this file after a change to rewrite them.

Writes ``dashboards/mlops-serving.json`` (request rate, latency and errors by
endpoint and variant), ``mlops-models.json`` (health and its deductions,
alerts, drift, data quality, service levels) and ``mlops-pipeline.json``
(Prefect flow runs and durations, the platform service's traffic). The JSON
files are committed; ``tests/deployments/test_observability.py`` checks they
equal what this script writes and that every metric they query exists.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

OUT = pathlib.Path(__file__).resolve().parent / "dashboards"
DS = {"type": "prometheus", "uid": "${datasource}"}
R = "$__rate_interval"


def _datasource_variable() -> dict[str, Any]:
    return {
        "name": "datasource",
        "label": "Prometheus",
        "type": "datasource",
        "query": "prometheus",
        "current": {},
        "hide": 0,
        "refresh": 1,
    }


def _query_variable(name: str, label: str, metric: str, label_name: str) -> dict[str, Any]:
    query = f"label_values({metric}, {label_name})"
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DS,
        "query": {"query": query, "refId": f"{name}-values"},
        "definition": query,
        "refresh": 2,
        "includeAll": True,
        "multi": True,
        "allValue": ".*",
        "current": {"text": "All", "value": "$__all"},
        "hide": 0,
        "sort": 1,
    }


def _mapping(zero: str, one: str, *, one_is_bad: bool = True) -> dict[str, Any]:
    good, bad = "green", "red"
    options = {
        "0": {"text": zero, "color": good if one_is_bad else bad},
        "1": {"text": one, "color": bad if one_is_bad else good},
    }
    return {"defaults": {"mappings": [{"type": "value", "options": options}]}, "overrides": []}


class Board:
    """Panels laid out left to right in rows of 24 columns."""

    def __init__(self) -> None:
        self.panels: list[dict[str, Any]] = []
        self.y = self.x = self.next_id = 0

    def row(self, title: str) -> None:
        """Start a row with a title."""
        if self.x:
            self.y, self.x = self.y + 8, 0
        self.next_id += 1
        self.panels.append(
            {
                "id": self.next_id,
                "type": "row",
                "title": title,
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y},
                "panels": [],
            }
        )
        self.y += 1

    def add(
        self,
        kind: str,
        title: str,
        targets: list[tuple[str, str]],
        unit: str,
        *,
        w: int = 12,
        description: str = "",
        extra: dict[str, Any] | None = None,
    ) -> None:
        """Add a panel of ``kind`` querying each ``(expression, legend)``."""
        h = 8
        if self.x + w > 24:
            self.y, self.x = self.y + h, 0
        self.next_id += 1
        instant = {"instant": True, "format": "table"} if kind == "table" else {}
        panel: dict[str, Any] = {
            "id": self.next_id,
            "type": kind,
            "title": title,
            "description": description,
            "datasource": DS,
            "gridPos": {"h": h, "w": w, "x": self.x, "y": self.y},
            "targets": [
                {"datasource": DS, "refId": chr(65 + i), "expr": expr, "legendFormat": legend, **instant}
                for i, (expr, legend) in enumerate(targets)
            ],
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
            "options": {},
        }
        if kind == "timeseries":
            panel["options"] = {
                "legend": {"displayMode": "table", "placement": "bottom", "calcs": ["lastNotNull", "max"]},
                "tooltip": {"mode": "multi"},
            }
        panel.update(extra or {})
        self.panels.append(panel)
        self.x += w
        if self.x >= 24:
            self.y, self.x = self.y + h, 0

    def dashboard(
        self, uid: str, title: str, description: str, variables: list[dict[str, Any]], tag: str
    ) -> dict[str, Any]:
        """The dashboard JSON."""
        return {
            "uid": uid,
            "title": title,
            "description": description,
            "tags": ["mlops", tag],
            "timezone": "utc",
            "schemaVersion": 39,
            "version": 1,
            "editable": True,
            "refresh": "30s",
            "time": {"from": "now-6h", "to": "now"},
            "templating": {"list": [_datasource_variable(), *variables]},
            "annotations": {"list": []},
            "panels": self.panels,
            "links": [
                {"title": "MLOps dashboards", "type": "dashboards", "tags": ["mlops"], "asDropdown": True}
            ],
        }


def serving() -> dict[str, Any]:
    """Model server: rate, latency and errors by endpoint and variant."""
    e = 'endpoint=~"$endpoint"'
    by = "endpoint, variant"
    b = Board()
    b.row("Traffic")
    b.add(
        "timeseries",
        "Requests per second by endpoint and variant",
        [(f"sum by ({by}) (rate(mlops_requests_total{{{e}}}[{R}]))", "{{endpoint}} {{variant}}")],
        "reqps",
        description="mlops_requests_total: every answered and failed inference request.",
    )
    b.add(
        "timeseries",
        "Rows predicted per second",
        [(f"sum by ({by}) (rate(mlops_rows_total{{{e}}}[{R}]))", "{{endpoint}} {{variant}}")],
        "rowsps",
    )
    b.row("Latency")
    for q in ("0.5", "0.95", "0.99"):
        buckets = f"sum by (le, {by}) (rate(mlops_request_latency_seconds_bucket{{{e}}}[{R}]))"
        b.add(
            "timeseries",
            f"Latency p{round(float(q) * 100)} by endpoint and variant",
            [(f"histogram_quantile({q}, {buckets})", "{{endpoint}} {{variant}}")],
            "s",
            w=8,
        )
    b.add(
        "heatmap",
        "Latency distribution",
        [(f"sum by (le) (increase(mlops_request_latency_seconds_bucket{{{e}}}[{R}]))", "{{le}}")],
        "s",
        w=24,
        extra={"options": {"calculate": False, "yAxis": {"unit": "s"}}},
    )
    b.row("Errors")
    errors = f'sum by ({by}) (rate(mlops_requests_total{{status="error", {e}}}[{R}]))'
    total = f"sum by ({by}) (rate(mlops_requests_total{{{e}}}[{R}]))"
    b.add(
        "timeseries",
        "Error ratio by endpoint and variant",
        [(f"{errors} / {total}", "{{endpoint}} {{variant}}")],
        "percentunit",
    )
    b.add(
        "timeseries",
        "Errors per second by HTTP status",
        [
            (
                f"sum by ({by}, code) (rate(mlops_errors_total{{{e}}}[{R}]))",
                "{{endpoint}} {{variant}} {{code}}",
            )
        ],
        "reqps",
    )
    b.row("Server")
    b.add(
        "timeseries",
        "In-flight requests",
        [("sum by (instance) (mlops_in_flight_requests)", "{{instance}}")],
        "short",
        w=8,
    )
    b.add(
        "timeseries",
        "Replicas per endpoint",
        [(f"max by (endpoint) (mlops_replicas{{{e}}})", "{{endpoint}}")],
        "short",
        w=8,
    )
    b.add(
        "timeseries",
        "Prediction log backlog and drops",
        [
            ("sum by (instance) (mlops_prediction_log_waiting_rows)", "waiting {{instance}}"),
            ("sum by (instance) (mlops_prediction_log_dropped_rows)", "dropped {{instance}}"),
        ],
        "short",
        w=8,
    )
    b.add(
        "timeseries",
        "Shadow predictions by outcome",
        [
            (
                f"sum by (endpoint, model, outcome) (rate(mlops_shadow_predictions_total{{{e}}}[{R}]))",
                "{{endpoint}} {{model}} {{outcome}}",
            )
        ],
        "ops",
        w=24,
    )
    variables = [_query_variable("endpoint", "Endpoint", "mlops_requests_total", "endpoint")]
    return b.dashboard(
        "mlops-serving",
        "MLOps / Serving",
        "Model server: request rate, latency and errors by endpoint and variant.",
        variables,
        "serving",
    )


def models() -> dict[str, Any]:
    """Models: health and deductions, alerts, drift, data quality, service levels."""
    m = 'model=~"$model"'
    b = Board()
    b.row("Health")
    thresholds = [
        {"color": "red", "value": None},
        {"color": "orange", "value": 60},
        {"color": "green", "value": 90},
    ]
    b.add(
        "bargauge",
        "Health score",
        [(f"mlops_model_health_score{{{m}}}", "{{model}}")],
        "none",
        extra={
            "fieldConfig": {
                "defaults": {"min": 0, "max": 100, "thresholds": {"mode": "absolute", "steps": thresholds}},
                "overrides": [],
            },
            "options": {"orientation": "horizontal", "displayMode": "gradient"},
        },
    )
    b.add("timeseries", "Health score over time", [(f"mlops_model_health_score{{{m}}}", "{{model}}")], "none")
    b.add(
        "table",
        "Health deductions",
        [(f"mlops_model_health_deduction_points{{{m}}}", "")],
        "none",
        w=24,
        description="Points taken off each model's score by reason: alerts, performance, latency, errors.",
    )
    b.row("Alerts")
    b.add(
        "timeseries",
        "Open alerts by severity",
        [(f"sum by (model, severity) (mlops_open_alerts{{{m}}})", "{{model}} {{severity}}")],
        "short",
    )
    b.add(
        "table",
        "Open alerts by kind",
        [(f"sum by (model, kind, severity) (mlops_open_alerts{{{m}}})", "")],
        "short",
    )
    b.add(
        "timeseries",
        "Alert notices by route and status",
        [("sum by (route, status) (mlops_alert_notifications)", "{{route}} {{status}}")],
        "short",
        w=24,
        description="The notification log: sent, pending (retrying) and failed notices.",
    )
    b.row("Drift and data quality")
    version = "{{model}} v{{version}}"
    b.add(
        "stat",
        "Dataset drift (newest check)",
        [(f"mlops_model_drift_detected{{{m}}}", version)],
        "none",
        w=8,
        extra={"fieldConfig": _mapping("no drift", "DRIFT")},
    )
    b.add("timeseries", "Drifted columns", [(f"mlops_model_drifted_columns{{{m}}}", version)], "short", w=8)
    b.add(
        "timeseries",
        "Data-quality findings",
        [(f"mlops_model_data_quality_findings{{{m}}}", version)],
        "short",
        w=8,
    )
    b.row("Service levels (check-operations)")
    endpoint = "{{model}} {{endpoint}}"
    b.add(
        "timeseries", "p99 latency per endpoint", [(f"mlops_model_latency_p99_seconds{{{m}}}", endpoint)], "s"
    )
    b.add(
        "timeseries", "Error rate per endpoint", [(f"mlops_model_error_rate{{{m}}}", endpoint)], "percentunit"
    )
    b.add("table", "Registered versions by stage", [(f"mlops_model_versions{{{m}}}", "")], "short", w=24)
    variables = [_query_variable("model", "Model", "mlops_model_versions", "model")]
    return b.dashboard(
        "mlops-models",
        "MLOps / Models",
        "Models: health score and its deductions, alerts, drift, data quality, service levels.",
        variables,
        "models",
    )


def pipeline() -> dict[str, Any]:
    """Pipeline: Prefect flow runs and durations, the platform service's traffic."""
    f = 'flow=~"$flow"'
    b = Board()
    b.row("Flow runs")
    b.add(
        "bargauge",
        "Runs in the last 24 h by flow and state",
        [(f"sum by (flow, state) (mlops_flow_runs{{{f}}})", "{{flow}} {{state}}")],
        "short",
        extra={"options": {"orientation": "horizontal", "displayMode": "basic"}},
    )
    b.add(
        "timeseries",
        "Failed and crashed runs (24 h)",
        [(f'sum by (flow) (mlops_flow_runs{{state=~"FAILED|CRASHED", {f}}})', "{{flow}}")],
        "short",
    )
    b.row("Durations")
    b.add(
        "timeseries",
        "Newest finished run's duration",
        [(f"mlops_flow_run_last_duration_seconds{{{f}}}", "{{flow}}")],
        "s",
    )
    b.add(
        "timeseries",
        "Mean duration of completed runs (24 h)",
        [(f"mlops_flow_run_mean_duration_seconds{{{f}}}", "{{flow}}")],
        "s",
    )
    b.add(
        "table",
        "Time since the last completed run",
        [(f"time() - mlops_flow_run_last_success_timestamp_seconds{{{f}}}", "")],
        "s",
        w=16,
    )
    b.add(
        "stat",
        "Prefect API reachable",
        [("min(mlops_prefect_api_up)", "")],
        "none",
        w=8,
        extra={"fieldConfig": _mapping("DOWN", "up", one_is_bad=False)},
    )
    b.row("Platform service")
    b.add(
        "timeseries",
        "Service requests per second by route and status",
        [(f"sum by (route, status) (rate(mlops_service_requests_total[{R}]))", "{{route}} {{status}}")],
        "reqps",
    )
    buckets = f"sum by (le, route) (rate(mlops_service_request_duration_seconds_bucket[{R}]))"
    b.add(
        "timeseries",
        "Service latency p95 by route",
        [(f"histogram_quantile(0.95, {buckets})", "{{route}}")],
        "s",
    )
    variables = [_query_variable("flow", "Flow", "mlops_flow_runs", "flow")]
    return b.dashboard(
        "mlops-pipeline",
        "MLOps / Pipeline",
        "Prefect flow runs and their durations; the platform service's traffic.",
        variables,
        "pipeline",
    )


DASHBOARDS = {"mlops-serving.json": serving, "mlops-models.json": models, "mlops-pipeline.json": pipeline}


def render(build: Any) -> str:
    """One dashboard as the committed JSON text."""
    return json.dumps(build(), indent=2) + "\n"


def main() -> None:
    """Write every dashboard next to this file."""
    OUT.mkdir(exist_ok=True)
    for name, build in DASHBOARDS.items():
        (OUT / name).write_text(render(build))


if __name__ == "__main__":
    main()
