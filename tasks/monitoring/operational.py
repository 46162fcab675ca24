"""Operational alerts: latency p95/p99 and error rate per endpoint, from the prediction log.

Every row of a version's window in the prediction log is counted for the
endpoint that answered it (the model name for requests that named the model
directly; shadow predictions are left out: no caller waited for them). Per
endpoint with at least ``min_requests`` requests the latency percentiles of
the answered requests and the error rate are compared with the endpoint's
limits (``blocks.monitoring.OperationsThresholds``):

* ``latency`` alerts, subject ``<endpoint>:p95`` / ``<endpoint>:p99``;
* ``error_rate`` alerts, subject ``<endpoint>``.

The verdict also gives the health score its inputs: the worst p99 over its
warning limit (``latency_ratio``) and the worst error rate over its warning
limit (``error_rate_ratio``), both stored in the ``operations_check`` report
that :func:`storage.monitoring.health.model_health` reads. The server's own
Prometheus metrics carry the same figures for every variant of an endpoint;
``deployments/observability`` alerts on those.

Example:
    >>> import pandas as pd
    >>> from blocks.monitoring import OperationsThresholds
    >>> log = pd.DataFrame({"endpoint": ["fraud"] * 100, "variant": ["stable"] * 100,
    ...     "latency_ms": [5.0] * 95 + [900.0] * 5, "status": ["ok"] * 98 + ["error"] * 2})
    >>> verdict = service_levels(log, OperationsThresholds(), model="fraud")
    >>> [(kind, severity, subject) for kind, severity, subject, _ in verdict.findings]
    [('latency', 'warning', 'fraud:p99'), ('error_rate', 'warning', 'fraud')]
    >>> round(verdict.latency_ratio, 2), verdict.error_rate_ratio
    (1.8, 2.0)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from prefect import task

from blocks.monitoring import Limit, MonitoringConfig, OperationsThresholds, resolve_monitoring_config
from storage.governance.reports import ReportStore
from storage.monitoring.alerts import AlertStore
from storage.monitoring.prediction_log import PredictionLog
from storage.registry.reads import VersionRef
from tasks.monitoring.alerting import record_findings
from tasks.registry.steps import open_registry

__all__ = [
    "OPERATIONS_EVENT",
    "EndpointLevels",
    "OperationsVerdict",
    "run_operations_check",
    "service_levels",
]

OPERATIONS_EVENT = "mlops.operations.degraded"


@dataclass(frozen=True)
class EndpointLevels:
    """What one endpoint served in the window."""

    endpoint: str
    requests: int
    errors: int
    error_rate: float
    p95_ms: float | None
    p99_ms: float | None
    judged: bool


@dataclass(frozen=True)
class OperationsVerdict:
    """Per-endpoint levels, the breached limits, and the health score's ratios."""

    endpoints: tuple[EndpointLevels, ...]
    findings: tuple[tuple[str, str, str, str], ...]  # kind, severity, subject, message
    latency_ratio: float
    error_rate_ratio: float

    @property
    def passed(self) -> bool:
        """No limit breached."""
        return not self.findings

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the ``operations_check`` report's payload)."""
        return {
            "endpoints": [asdict(e) for e in self.endpoints],
            "findings": [
                {"kind": k, "severity": s, "subject": subject, "message": m}
                for k, s, subject, m in self.findings
            ],
            "latency_ratio": self.latency_ratio,
            "error_rate_ratio": self.error_rate_ratio,
        }


def _ratio(value: float, limit: Limit | None) -> float:
    if limit is None:
        return 1.0
    if limit.warning <= 0:
        return 2.0 if value > 0 else 1.0
    return value / limit.warning


def _latency(kind: str, endpoint: str, value: float | None, limit: Limit | None) -> list[tuple[str, ...]]:
    if value is None or limit is None or (severity := limit.severity(value)) is None:
        return []
    bound = limit.critical if severity == "critical" and limit.critical is not None else limit.warning
    return [("latency", severity, f"{endpoint}:{kind}", f"{kind} latency {value:.1f} ms > {bound:g} ms")]


def service_levels(log: pd.DataFrame, thresholds: OperationsThresholds, *, model: str) -> OperationsVerdict:
    """Judge a window of prediction-log rows (columns endpoint, variant, latency_ms, status)."""
    frame = log.copy()
    endpoint = frame["endpoint"] if "endpoint" in frame else pd.Series([None] * len(frame), index=frame.index)
    frame["endpoint"] = endpoint.fillna(model).astype(str)
    variant = frame["variant"] if "variant" in frame else pd.Series([None] * len(frame), index=frame.index)
    frame = frame[~variant.fillna("").astype(str).str.startswith("shadow:")]
    levels: list[EndpointLevels] = []
    findings: list[tuple[str, str, str, str]] = []
    latency_ratio = error_ratio = 0.0
    for name, rows in sorted(frame.groupby("endpoint"), key=lambda kv: str(kv[0])):
        limits = thresholds.for_endpoint(str(name))
        ok = rows.loc[rows["status"] == "ok", "latency_ms"].to_numpy(dtype=float)
        errors = int((rows["status"] != "ok").sum())
        rate = errors / len(rows) if len(rows) else 0.0
        p95, p99 = (float(np.percentile(ok, q)) if ok.size else None for q in (95, 99))
        judged = len(rows) >= limits.min_requests
        levels.append(EndpointLevels(str(name), len(rows), errors, rate, p95, p99, judged))
        if not judged:
            continue
        for entry in (
            *_latency("p95", str(name), p95, limits.p95_ms),
            *_latency("p99", str(name), p99, limits.p99_ms),
        ):
            findings.append((entry[0], entry[1], entry[2], entry[3]))
        if limits.error_rate is not None and (severity := limits.error_rate.severity(rate)) is not None:
            bound = limits.error_rate.critical if severity == "critical" else limits.error_rate.warning
            findings.append(
                (
                    "error_rate",
                    severity,
                    str(name),
                    f"error rate {rate:.2%} ({errors} of {len(rows)}) > {bound:.2%}",
                )
            )
        if p99 is not None:
            latency_ratio = max(latency_ratio, _ratio(p99, limits.p99_ms))
        error_ratio = max(error_ratio, _ratio(rate, limits.error_rate))
    return OperationsVerdict(tuple(levels), tuple(findings), latency_ratio, error_ratio)


@task(name="check-operations-window")
def run_operations_check(
    model: str,
    version: VersionRef | None = None,
    window_hours: float = 1.0,
    end: datetime | None = None,
    config: dict[str, Any] | MonitoringConfig | None = None,
    config_block: str | None = None,
) -> dict[str, Any]:
    """Judge the version's latency and error rate per endpoint; record, alert, resolve, notify."""
    registry = open_registry()
    thresholds = resolve_monitoring_config(config, config_block).operations
    target = registry.get_version(model, version if version is not None else "production")
    stop = end or datetime.now(UTC)
    log = PredictionLog.from_settings().read(
        model=model, start=stop - timedelta(hours=window_hours), end=stop
    )
    log = log[log["version"] == target.number]
    verdict = service_levels(log, thresholds, model=model)
    judged = {e.endpoint for e in verdict.endpoints if e.judged}
    summary = (
        f"{len(verdict.findings)} breach(es) on {len(judged)} endpoint(s), {len(log)} requests"
        if judged
        else f"no endpoint had enough requests ({len(log)} in the window)"
    )
    ReportStore(registry).save(
        "operations_check",
        model,
        target.number,
        passed=verdict.passed,
        summary=summary,
        payload=verdict.to_dict(),
    )
    open_now = [a for a in AlertStore(registry).open_alerts(model) if a.version == target.number]
    new_alerts: list[dict[str, Any]] = []
    for kind in ("latency", "error_rate"):
        unjudged = [a.subject for a in open_now if a.kind == kind and a.subject.split(":")[0] not in judged]
        new_alerts += record_findings(
            registry,
            model,
            target.number,
            kind=kind,
            findings=[(s, subject, m) for k, s, subject, m in verdict.findings if k == kind],
            event=OPERATIONS_EVENT,
            keep=unjudged,
            notify=kind == "error_rate",
        )
    return {
        "model": model,
        "version": target.number,
        "requests": len(log),
        "passed": verdict.passed,
        "endpoints": [asdict(e) for e in verdict.endpoints],
        "latency_ratio": verdict.latency_ratio,
        "error_rate_ratio": verdict.error_rate_ratio,
        "new_alerts": new_alerts,
    }
