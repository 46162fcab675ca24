"""Prometheus metrics of the platform service: its HTTP traffic, the models' state, the pipeline's runs.

:func:`install_metrics` adds ``GET /metrics`` (the Prometheus text format) and
a middleware that counts every request. The names are stable (dashboards and
alerting rules in ``deployments/observability`` use them); every one has a
help text:

=============================================  =========================================================
metric                                         what it is
=============================================  =========================================================
``mlops_service_requests_total``               requests answered, by ``method``, ``route`` (the route
                                               template, not the raw path) and ``status``
``mlops_service_request_duration_seconds``     time to answer, by ``method`` and ``route`` (histogram)
``mlops_model_versions``                       versions per ``model`` and ``stage``
``mlops_open_alerts``                          open alerts per ``model``, ``kind``, ``severity``
``mlops_model_health_score``                   health score per ``model`` (0..100)
``mlops_model_health_deduction_points``        points taken off per ``model`` and ``reason``
``mlops_model_drift_detected``                 1 when the newest drift check of ``model`` found dataset
                                               drift (label ``version``)
``mlops_model_drifted_columns``                columns that drifted in that check
``mlops_model_data_quality_findings``          findings of the newest data-quality check
``mlops_model_latency_p99_seconds``            p99 per ``model`` and ``endpoint`` in the newest
                                               operations check
``mlops_model_error_rate``                     error rate per ``model`` and ``endpoint`` there
``mlops_alert_notifications``                  notices in the log per ``route`` and ``status``
``mlops_flow_runs``                            Prefect flow runs started in the last 24 h, per ``flow``
                                               and ``state``
``mlops_flow_run_last_duration_seconds``       run time of each ``flow``'s newest finished run
``mlops_flow_run_mean_duration_seconds``       mean run time of each ``flow``'s completed runs (24 h)
``mlops_flow_run_last_success_timestamp_seconds``  when each ``flow`` last completed (Unix time)
``mlops_prefect_api_up``                       1 when the Prefect API answered the last scrape
=============================================  =========================================================

The model and pipeline figures are read from the metadata database and the
Prefect API (when ``PREFECT_API_URL`` is set) at scrape time, at most every
``cache_seconds``. With ``MLOPS_METRICS_TOKEN`` set, ``/metrics`` wants
``Authorization: Bearer <token>`` (Prometheus' ``authorization`` scrape
setting); without it, it is open like the model server's.

Example:
    >>> import tempfile
    >>> from fastapi.testclient import TestClient
    >>> from blocks.settings import MlopsSettings
    >>> from service.app import create_app
    >>> app = create_app(settings=MlopsSettings(home=tempfile.mkdtemp()))
    >>> _ = install_metrics(app)
    >>> client = TestClient(app)
    >>> _ = client.get("/api/v1/health")
    >>> text = client.get("/metrics").text
    >>> 'mlops_service_requests_total{method="GET",route="/api/v1/health",status="200"} 1.0' in text
    True
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from fastapi import FastAPI, Request, Response
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from storage import schema as t
from storage.monitoring.health import model_health
from storage.registry.core import Registry

__all__ = ["PlatformCollector", "ServiceMetrics", "install_metrics"]

log = logging.getLogger(__name__)

#: Latency buckets of the service's requests, in seconds (1 ms to 30 s).
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class ServiceMetrics:
    """The request counters of one service app (its own registry: several apps never share them)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "mlops_service_requests", "Requests the platform service answered.",
            ["method", "route", "status"], registry=self.registry,
        )  # fmt: skip
        self.duration = Histogram(
            "mlops_service_request_duration_seconds", "Time the platform service took to answer a request.",
            ["method", "route"], buckets=BUCKETS, registry=self.registry,
        )  # fmt: skip

    def render(self) -> bytes:
        """The Prometheus text of every metric."""
        return generate_latest(self.registry)


def route_templates(app: FastAPI) -> dict[int, str]:
    """``id(route) -> full path template`` of every route, prefixes of included routers included.

    FastAPI from 0.150 keeps included routers as such: the route the router puts
    in ``scope["route"]`` then carries the path without the router's prefix.
    """
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # older FastAPI: included routes carry their full path
        return {id(r): str(getattr(r, "path", "")) for r in app.routes if getattr(r, "path", None)}
    return {id(c.original_route): str(c.path) for c in iter_route_contexts(app.routes) if c.path}


class _CountingMiddleware:
    """Pure ASGI: counts each HTTP request by its route template once the response has started."""

    def __init__(self, app: Any, metrics: ServiceMetrics, fastapi_app: FastAPI) -> None:
        self.app = app
        self.metrics = metrics
        self.fastapi_app = fastapi_app
        self._templates: dict[int, str] | None = None

    def template(self, scope: Any) -> str:
        """The route template of a routed request, ``other`` for an unmatched one."""
        route = scope.get("route")
        if route is None:
            return "other"
        if self._templates is None:  # every route exists by the first request
            self._templates = route_templates(self.fastapi_app)
        return self._templates.get(id(route)) or str(getattr(route, "path", "other"))

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = {"code": 500}

        async def counting_send(message: Any) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        finally:
            template = self.template(scope)
            method = scope.get("method", "")
            self.metrics.requests.labels(method, template, str(status["code"])).inc()
            self.metrics.duration.labels(method, template).observe(time.perf_counter() - start)


def _gauge(name: str, documentation: str, labels: list[str]) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, labels=labels)


class PlatformCollector(Collector):
    """Model and pipeline gauges, read from the metadata database and Prefect at scrape time (cached)."""

    def __init__(self, registry: Registry, *, cache_seconds: float = 15.0) -> None:
        self.registry = registry
        self.cache_seconds = cache_seconds
        self._lock = threading.Lock()
        self._cached: tuple[float, list[Metric]] | None = None

    def describe(self) -> Iterator[Metric]:
        """Nothing up front: the label sets are only known at scrape time."""
        return iter(())

    def collect(self) -> Iterator[Metric]:
        """Every gauge (see the module docs)."""
        with self._lock:
            now = time.monotonic()
            if self._cached is None or now - self._cached[0] > self.cache_seconds:
                self._cached = (now, [*self._models(), *self._flows()])
            return iter(self._cached[1])

    def _models(self) -> list[Metric]:
        versions = _gauge(
            "mlops_model_versions", "Registered versions per model and stage.", ["model", "stage"]
        )
        alerts = _gauge(
            "mlops_open_alerts", "Open alerts per model, kind and severity.", ["model", "kind", "severity"]
        )
        health = _gauge("mlops_model_health_score", "Health score of a model (100 = healthy).", ["model"])
        deductions = _gauge(
            "mlops_model_health_deduction_points", "Points taken off a model's health score, by reason.",
            ["model", "reason"],
        )  # fmt: skip
        drift = _gauge(
            "mlops_model_drift_detected",
            "1 when the newest drift check found dataset drift.",
            ["model", "version"],
        )
        drifted = _gauge(
            "mlops_model_drifted_columns",
            "Columns that drifted in the newest drift check.",
            ["model", "version"],
        )
        quality = _gauge(
            "mlops_model_data_quality_findings",
            "Findings of the newest data-quality check.",
            ["model", "version"],
        )
        p99 = _gauge(
            "mlops_model_latency_p99_seconds", "p99 latency per endpoint in the newest operations check.",
            ["model", "endpoint"],
        )  # fmt: skip
        errors = _gauge(
            "mlops_model_error_rate",
            "Error rate per endpoint in the newest operations check.",
            ["model", "endpoint"],
        )
        notices = _gauge(
            "mlops_alert_notifications",
            "Alert notices in the notification log, by route and status.",
            ["route", "status"],
        )
        try:
            with self.registry.db.read() as conn:
                names = [r.name for r in conn.execute(sa.select(t.models.c.name).order_by(t.models.c.name))]
                for r in conn.execute(
                    sa.select(t.models.c.name, t.model_versions.c.stage, sa.func.count())
                    .join(t.models, t.models.c.id == t.model_versions.c.model_id)
                    .group_by(t.models.c.name, t.model_versions.c.stage)
                ):
                    versions.add_metric([r[0], r[1]], r[2])
                a = t.alerts.c
                for r in conn.execute(
                    sa.select(t.models.c.name, a.kind, a.severity, sa.func.count())
                    .join(t.models, t.models.c.id == a.model_id)
                    .where(a.status == "open")
                    .group_by(t.models.c.name, a.kind, a.severity)
                ):
                    alerts.add_metric([r[0], r[1], r[2]], r[3])
                n = t.alert_notifications.c
                for r in conn.execute(
                    sa.select(n.route_name, n.status, sa.func.count()).group_by(n.route_name, n.status)
                ):
                    notices.add_metric([r[0], r[1]], r[2])
                newest = self._newest_reports(conn)
            for model in names:
                score = model_health(self.registry, model)
                health.add_metric([model], score.score)
                for reason, points in _summed(score.deductions):
                    deductions.add_metric([model, reason], points)
            for (model, kind), (version, payload) in newest.items():
                labels = [model, str(version)]
                if kind == "drift_check":
                    drift.add_metric(labels, 1.0 if payload.get("dataset_drift") else 0.0)
                    drifted.add_metric(labels, len(payload.get("drifted_columns", [])))
                elif kind == "data_quality":
                    quality.add_metric(labels, len(payload.get("findings", [])))
                else:
                    for e in payload.get("endpoints", []):
                        if e.get("p99_ms") is not None:
                            p99.add_metric([model, e["endpoint"]], float(e["p99_ms"]) / 1000.0)
                        errors.add_metric([model, e["endpoint"]], float(e.get("error_rate") or 0.0))
        except (
            Exception
        ):  # a scrape never fails because the database hiccuped: the request metrics still go out
            log.exception("could not read the platform's model metrics")
            return []
        return [versions, alerts, health, deductions, drift, drifted, quality, p99, errors, notices]

    @staticmethod
    def _newest_reports(conn: Any) -> dict[tuple[str, str], tuple[int, dict[str, Any]]]:
        r = t.evidence_reports.c
        kinds = ("drift_check", "data_quality", "operations_check")
        newest = (
            sa.select(sa.func.max(r.id))
            .where(r.kind.in_(kinds))
            .group_by(r.model_id, r.kind)
            .scalar_subquery()
        )
        rows = conn.execute(
            sa.select(t.models.c.name, r.kind, t.model_versions.c.number, r.payload)
            .join(t.models, t.models.c.id == r.model_id)
            .join(t.model_versions, t.model_versions.c.id == r.version_id)
            .where(r.id.in_(newest))
        )
        return {(row[0], row[1]): (int(row[2]), dict(row[3] or {})) for row in rows}

    def _flows(self) -> list[Metric]:
        up = _gauge("mlops_prefect_api_up", "1 when the Prefect API answered the last scrape.", [])
        runs = _gauge(
            "mlops_flow_runs",
            "Prefect flow runs started in the last 24 hours, by flow and state.",
            ["flow", "state"],
        )
        last = _gauge(
            "mlops_flow_run_last_duration_seconds", "Run time of the newest finished run of a flow.", ["flow"]
        )
        mean = _gauge(
            "mlops_flow_run_mean_duration_seconds",
            "Mean run time of a flow's completed runs in the last 24 hours.",
            ["flow"],
        )  # fmt: skip
        success = _gauge(
            "mlops_flow_run_last_success_timestamp_seconds",
            "When a flow last completed (Unix time).",
            ["flow"],
        )
        try:
            found = _recent_flow_runs()
        except Exception as exc:  # Prefect down or not configured: the gauge says so
            log.debug("no flow-run metrics: %s", exc)
            up.add_metric([], 0.0)
            return [up]
        if found is None:
            return []
        up.add_metric([], 1.0)
        by_state: dict[tuple[str, str], int] = {}
        for flow, state, _seconds, _end in found:
            by_state[(flow, state)] = by_state.get((flow, state), 0) + 1
        for (flow, state), count in sorted(by_state.items()):
            runs.add_metric([flow, state], count)
        for flow in sorted({f for f, *_ in found}):
            done = sorted(
                ((end, d, s) for f, s, d, end in found if f == flow and end is not None), key=lambda x: x[0]
            )
            if done:
                last.add_metric([flow], done[-1][1])
            completed = [(end, d) for end, d, s in done if s == "COMPLETED"]
            if completed:
                mean.add_metric([flow], sum(d for _, d in completed) / len(completed))
                success.add_metric([flow], completed[-1][0].timestamp())
        return [up, runs, last, mean, success]


def _summed(deductions: Any) -> list[tuple[str, float]]:
    totals: dict[str, float] = {}
    for d in deductions:
        totals[d.reason] = totals.get(d.reason, 0.0) + d.points
    return sorted(totals.items())


def _recent_flow_runs(hours: float = 24.0) -> list[tuple[str, str, float, datetime | None]] | None:
    """(flow, state, run seconds, end time) of the runs started in the last ``hours``.

    None when no Prefect API is configured.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterId, FlowRunFilter, FlowRunFilterStartTime
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():
        return None
    since = datetime.now(UTC) - timedelta(hours=hours)
    with get_client(sync_client=True) as client:
        flow_runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(start_time=FlowRunFilterStartTime(after_=since)),  # type: ignore[arg-type]
            limit=200,
        )
        ids = sorted({r.flow_id for r in flow_runs}, key=str)
        flows = client.read_flows(flow_filter=FlowFilter(id=FlowFilterId(any_=ids))) if ids else []
    names = {f.id: f.name for f in flows}
    return [
        (
            names.get(r.flow_id, str(r.flow_id)),
            r.state_type.value if r.state_type is not None else "UNKNOWN",
            float(r.total_run_time.total_seconds()),
            r.end_time,
        )
        for r in flow_runs
    ]


def install_metrics(
    app: FastAPI, *, registry: Registry | None = None, path: str = "/metrics", cache_seconds: float = 15.0
) -> ServiceMetrics:
    """Add ``GET /metrics`` and the request-counting middleware to the service ``app``.

    Call it in ``create_app`` before the app starts serving. The registry is
    ``app.state.registry`` unless given.
    """
    metrics = ServiceMetrics()
    reg = registry if registry is not None else app.state.registry
    metrics.registry.register(PlatformCollector(reg, cache_seconds=cache_seconds))
    app.add_middleware(_CountingMiddleware, metrics=metrics, fastapi_app=app)

    @app.get(path, include_in_schema=False)
    def prometheus_metrics(request: Request) -> Response:
        expected = os.environ.get("MLOPS_METRICS_TOKEN")
        if expected and request.headers.get("authorization") != f"Bearer {expected}":
            return Response(
                "a bearer token is needed for /metrics\n", status_code=401, media_type="text/plain"
            )
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    app.state.metrics = metrics
    return metrics
