"""The monitoring report of a model version: drift, performance, alerts, health, importance.

It gathers what the checks stored (the newest ``drift_check``,
``data_quality``, ``operations_check`` and ``performance_check`` reports, open
alerts, the health score with each deduction, the version's global feature
importance) into one JSON-ready dict and a Markdown summary. For people who
want Evidently's interactive view, :func:`evidently_html` writes its
``DataDriftPreset`` report for a sample of the same data (kept off the hot
path: Evidently is far slower than the platform's own drift engine).

Example:
    >>> from tasks.monitoring.report import report_markdown
    >>> print(report_markdown({"model": "m", "version": 1, "health": 95.0, "drift": None,
    ...     "performance": None, "alerts": [], "global_importance": {}}).splitlines()[0])
    # Monitoring: m version 1 — health 95
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from prefect import task

from blocks.settings import get_settings
from storage.governance.reports import ReportStore
from storage.monitoring.alerts import AlertStore
from storage.monitoring.health import model_health
from storage.monitoring.prediction_log import PredictionLog
from storage.objectstore import Place
from storage.registry.core import Registry
from storage.registry.reads import VersionRef
from tasks.console_links import console_line
from tasks.monitoring.profiles import NumericProfile
from tasks.monitoring.steps import feature_window, load_reference_profile


def _stored(registry: Registry, kind: str, model: str, number: int) -> dict[str, Any] | None:
    found = ReportStore(registry).latest(kind, model, number)
    if found is None:
        return None
    return {"passed": found.passed, "summary": found.summary, "at": found.created_at.isoformat()}


def operations(model: str, version: int, window_hours: float = 24.0) -> dict[str, Any] | None:
    """Requests, throughput, error rate and latency percentiles of a version over the last window."""
    from tasks.monitoring.performance import operational_metrics

    stop = datetime.now(UTC)
    log = PredictionLog.from_settings().read(
        model=model, start=stop - timedelta(hours=window_hours), end=stop
    )
    log = log[log["version"] == version]
    if log.empty:
        return None
    row = operational_metrics(log, f"{max(1, round(window_hours * 60))}min").iloc[-1]
    keys = ("count", "throughput_per_s", "error_rate", "latency_p50_ms", "latency_p95_ms", "latency_p99_ms")
    return {k: (None if pd.isna(row[k]) else float(row[k])) for k in keys}


def monitoring_report(
    registry: Registry, model: str, version: VersionRef | None = None, *, window_hours: float = 24.0
) -> dict[str, Any]:
    """Drift, performance, operations, open alerts, health score and global importance of a version."""
    target = registry.get_version(model, version if version is not None else "production")
    alerts = [a for a in AlertStore(registry).open_alerts(model) if a.version in (None, target.number)]
    health = model_health(registry, model, target.number)
    return {
        "model": model,
        "version": target.number,
        "stage": target.stage,
        "health": health.score,
        "health_breakdown": health.to_dict()["deductions"],
        "drift": _stored(registry, "drift_check", model, target.number),
        "data_quality": _stored(registry, "data_quality", model, target.number),
        "service_levels": _stored(registry, "operations_check", model, target.number),
        "performance": _stored(registry, "performance_check", model, target.number),
        "operations": operations(model, target.number, window_hours),
        "alerts": [a.to_dict() for a in alerts],
        "global_importance": target.extra.get("global_importance", {}),
    }


def report_markdown(report: dict[str, Any]) -> str:
    """The report as Markdown, for a Prefect artifact or a terminal."""

    def line(found: dict[str, Any] | None) -> str:
        if found is None:
            return "no check recorded"
        return f"{'ok' if found['passed'] else 'ALERT'} — {found['summary']} ({found['at']})"

    top = sorted(report["global_importance"].items(), key=lambda kv: -kv[1])[:5]
    lines = [
        f"# Monitoring: {report['model']} version {report['version']} — health {report['health']:.0f}",
        "",
        f"- **drift**: {line(report['drift'])}",
        f"- **data quality**: {line(report.get('data_quality'))}",
        f"- **service levels**: {line(report.get('service_levels'))}",
        f"- **performance**: {line(report['performance'])}",
        f"- **operations**: {_operations_line(report.get('operations'))}",
        f"- **health deductions**: {len(report.get('health_breakdown') or [])}",
        *[f"  - −{d['points']:g} {d['reason']}: {d['detail']}" for d in report.get("health_breakdown") or []],
        f"- **open alerts**: {len(report['alerts'])}",
        *[
            f"  - {a['severity']} {a['kind']} `{a['subject']}` ×{a['count']}: {a['message']}"
            for a in report["alerts"]
        ],
        f"- **most important features**: {', '.join(f'{k} ({v:.3g})' for k, v in top) or 'not recorded'}",
    ]
    link = console_line("monitoring", report["model"])
    if link:
        lines += ["", link]
    return "\n".join(lines) + "\n"


def _operations_line(ops: dict[str, Any] | None) -> str:
    if not ops:
        return "no requests in the window"
    return (
        f"{ops['count']:.0f} requests, error rate {ops['error_rate']:.2%}, latency p50/p95/p99 "
        f"{ops['latency_p50_ms']:.1f}/{ops['latency_p95_ms']:.1f}/{ops['latency_p99_ms']:.1f} ms"
    )


def evidently_html(
    registry: Registry,
    model: str,
    version: VersionRef,
    out_dir: str | os.PathLike[str] | None = None,
    *,
    window_hours: float = 24.0,
    max_rows: int = 5_000,
) -> str:
    """Evidently's ``DataDriftPreset`` report (HTML) for the reference sample and the current window.

    Written atomically to ``out_dir`` (a folder or fsspec URL, default
    :func:`report_place`); returns the file's URI.
    """
    from evidently import Report
    from evidently.presets import DataDriftPreset

    number = registry.get_version(model, version).number
    profile = load_reference_profile(registry, model, number)
    # The stored sample is sorted: evenly spaced positions keep its distribution.
    numeric = {n: c for n, c in profile.columns.items() if isinstance(c, NumericProfile)}
    reference = pd.DataFrame(
        {
            n: c.sample[np.linspace(0, len(c.sample) - 1, min(max_rows, len(c.sample))).astype(int)]
            for n, c in numeric.items()
        }
    )
    stop = datetime.now(UTC)
    current = feature_window(
        PredictionLog.from_settings(), model, number, stop - timedelta(hours=window_hours), stop
    )
    current = current[[c for c in reference.columns if c in current.columns]].head(max_rows)
    snapshot = Report([DataDriftPreset()]).run(
        current_data=current, reference_data=reference[current.columns]
    )
    place = report_place(out_dir)
    path = place.path(f"{model.replace('/', '_')}-v{number}-evidently-drift.html")
    place.write_bytes(path, snapshot.get_html_str(as_iframe=False).encode("utf-8"))
    return place.uri(path)


def report_place(out_dir: str | os.PathLike[str] | None = None) -> Place:
    """Where monitoring reports go: ``out_dir`` (a folder or fsspec URL), else ``<report root>/monitoring``.

    The report root is ``reports`` under ``MLOPS_STORAGE_URL``, else under ``MLOPS_HOME``.

    Example:
        >>> report_place("/tmp/reports").url
        '/tmp/reports'
    """
    return Place(out_dir if out_dir is not None else f"{get_settings().resolved_report_root()}/monitoring")


def write_monitoring_report(report: dict[str, Any], out_dir: str | os.PathLike[str] | None = None) -> str:
    """Write the report as ``<model>-v<n>-monitoring.json`` atomically; return the file's URI."""
    place = report_place(out_dir)
    path = place.path(f"{report['model'].replace('/', '_')}-v{report['version']}-monitoring.json")
    place.write_bytes(path, json.dumps(report, indent=2, default=str).encode())
    return place.uri(path)


@task(name="publish-monitoring-report")
def publish_monitoring_report(
    model: str, version: VersionRef | None = None, evidently: bool = False, out_dir: str | None = None
) -> dict[str, Any]:
    """Build the report, write it as JSON (``report_uri``), publish it as a markdown artifact.

    With ``evidently`` Evidently's HTML goes next to the JSON (``evidently_html``).
    ``out_dir`` is a folder or fsspec URL; by default :func:`report_place`.
    """
    from prefect.artifacts import create_markdown_artifact

    from tasks.registry.steps import open_registry

    registry = open_registry()
    report = monitoring_report(registry, model, version)
    if evidently:
        report["evidently_html"] = evidently_html(registry, model, report["version"], out_dir)
    report["report_uri"] = write_monitoring_report(report, out_dir)
    markdown = report_markdown(report)
    if evidently:
        markdown += f"\nEvidently's drift report: `{report['evidently_html']}`\n"
    markdown += f"\nThis report as JSON: `{report['report_uri']}`\n"
    create_markdown_artifact(
        markdown=markdown, key=f"monitoring-{model}".lower().replace("_", "-").replace("/", "-")
    )
    return report
