"""Prometheus metrics of one server: requests, latency, errors, rows, in-flight, replicas, models.

Every app has its own :class:`prometheus_client.CollectorRegistry`, so several
apps in one process (tests, replicas) never share counters. Labels:
``endpoint`` (the endpoint, or the model name when a request names a model
directly), ``variant`` (the endpoint's variant, ``""`` otherwise), ``model``
and ``version``.

Names come from request URLs, so a client could make a label series of every
name it sends (each unknown model is a 404 labelled with its name): series
that memory and every scrape would carry for good. Errors for names that
never answered a request are labelled with their name for the first
:data:`MAX_ERROR_NAMES` such names, then as ``(other)``; a label value is
cut to :data:`MAX_LABEL_CHARS` characters.

The model cache is read at each scrape (:meth:`ServingMetrics.watch_models`):
``mlops_loaded_versions``, ``mlops_loaded_model_bytes`` (estimated, see
:mod:`serving.models`), ``mlops_model_memory_limit_bytes`` and the counters
``mlops_model_loads_total`` and ``mlops_model_evictions_total``.

Example:
    >>> m = ServingMetrics()
    >>> m.observe("fraud", "", "fraud", "3", 0.004, rows=1)
    >>> m.error("fraud", "", "fraud", 400)
    >>> text = m.render().decode()
    >>> 'mlops_requests_total{endpoint="fraud",model="fraud",status="ok",variant="",version="3"} 1.0' in text
    True
    >>> 'mlops_errors_total{code="400",endpoint="fraud",model="fraud",variant=""} 1.0' in text
    True
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from serving.models import CacheStats

#: Names that never answered a request get their own error labels up to this many, then ``(other)``.
MAX_ERROR_NAMES = 100
#: Longest label value (longer names are cut, with ``...``).
MAX_LABEL_CHARS = 128
OTHER = "(other)"
#: Latency buckets in seconds (0.5 ms to 10 s).
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

__all__ = ["BUCKETS", "CONTENT_TYPE_LATEST", "ServingMetrics"]


def _cut(value: str) -> str:
    return value if len(value) <= MAX_LABEL_CHARS else value[: MAX_LABEL_CHARS - 3] + "..."


class ModelCacheCollector(Collector):
    """The model cache's figures, read when scraped."""

    def __init__(self, stats: Callable[[], CacheStats]) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        s = self.stats()
        yield GaugeMetricFamily("mlops_loaded_versions", "Model versions loaded now.", value=s.versions)
        yield GaugeMetricFamily(
            "mlops_loaded_model_bytes", "Estimated resident bytes of the loaded versions.", value=s.bytes
        )
        limit = float("inf") if s.max_bytes is None else s.max_bytes
        yield GaugeMetricFamily(
            "mlops_model_memory_limit_bytes", "Bound on the loaded versions' estimated bytes.", value=limit
        )
        yield CounterMetricFamily("mlops_model_loads", "Model versions loaded.", value=s.loads)
        yield CounterMetricFamily(
            "mlops_model_evictions", "Loaded versions dropped to stay within the bound.", value=s.evictions
        )


class ServingMetrics:
    """The counters, histograms and gauges of one server."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "mlops_requests", "Inference requests answered.",
            ["endpoint", "variant", "model", "version", "status"], registry=r,
        )  # fmt: skip
        self.latency = Histogram(
            "mlops_request_latency_seconds", "Time to answer an inference request.",
            ["endpoint", "variant", "model"], buckets=BUCKETS, registry=r,
        )  # fmt: skip
        self.errors = Counter(
            "mlops_errors", "Inference requests that failed, by HTTP status.",
            ["endpoint", "variant", "model", "code"], registry=r,
        )  # fmt: skip
        self.rows = Counter("mlops_rows", "Rows predicted.", ["endpoint", "variant", "model"], registry=r)
        self.in_flight = Gauge("mlops_in_flight_requests", "Inference requests being answered.", registry=r)
        self.replicas = Gauge(
            "mlops_replicas", "Replica processes serving an endpoint.", ["endpoint"], registry=r
        )
        self.shadow = Counter(
            "mlops_shadow_predictions", "Shadow predictions, by outcome (ok, error, dropped).",
            ["endpoint", "model", "outcome"], registry=r,
        )  # fmt: skip
        self.log_dropped = Gauge(
            "mlops_prediction_log_dropped_rows",
            "Rows the prediction log writer dropped (queue full).",
            registry=r,
        )
        self._children: dict[tuple[str, str, str, str], tuple[Any, Any, Any]] = {}
        self._answered: set[str] = set()  # names that answered a request
        self._error_names: set[str] = set()  # names that only failed, up to MAX_ERROR_NAMES
        self.log_waiting = Gauge(
            "mlops_prediction_log_waiting_rows",
            "Rows waiting to be written to the prediction log.",
            registry=r,
        )
        self.log_longest_write = Gauge(
            "mlops_prediction_log_longest_write_seconds",
            "Longest prediction log write so far, from taking the rows to their file being in place.",
            registry=r,
        )

    def observe(
        self, endpoint: str, variant: str, model: str, version: str, seconds: float, *, rows: int = 1
    ) -> None:
        """Count one answered request."""
        key = (endpoint, variant, model, version)
        children = self._children.get(key)
        if children is None:  # label lookups cost more than the counting: keep them per label set
            self._answered.update((endpoint, model))
            children = self._children[key] = (
                self.requests.labels(endpoint, variant, model, version, "ok"),
                self.latency.labels(endpoint, variant, model),
                self.rows.labels(endpoint, variant, model),
            )
        requests, latency, counted = children
        requests.inc()
        latency.observe(seconds)
        counted.inc(rows)

    def error(self, endpoint: str, variant: str, model: str, code: int, version: str = "") -> None:
        """Count one failed request (names that never answered are bounded: see the module docs)."""
        endpoint, model = self._bounded(endpoint), self._bounded(model)
        version = _cut(version)
        self.errors.labels(endpoint, variant, model, str(code)).inc()
        self.requests.labels(endpoint, variant, model, version, "error").inc()

    def _bounded(self, name: str) -> str:
        if name in self._answered or name in self._error_names:
            return _cut(name)
        if len(self._error_names) >= MAX_ERROR_NAMES:
            return OTHER
        self._error_names.add(name)
        return _cut(name)

    def watch_models(self, stats: Callable[[], CacheStats]) -> None:
        """Report the model cache's ``stats()`` at every scrape (see the module docs)."""
        self.registry.register(ModelCacheCollector(stats))

    def set_replicas(self, endpoint: str, count: int) -> None:
        """Report how many replicas serve ``endpoint``."""
        self.replicas.labels(endpoint).set(count)

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
