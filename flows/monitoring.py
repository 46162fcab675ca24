"""Monitoring flows: drift and data quality of the prediction log, service levels, performance.

Example:
    >>> from flows.monitoring import check_drift
    >>> (check_drift.name, check_operations.name, check_performance.name)
    ('check-drift', 'check-operations', 'check-performance')
"""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.artifacts import create_table_artifact

from tasks.monitoring.operational import run_operations_check
from tasks.monitoring.report import publish_monitoring_report
from tasks.monitoring.steps import (
    profile_files,
    run_drift_check,
    run_performance_check,
    store_reference_profile,
)
from tasks.registry.steps import open_registry


def artifact_key(model: str) -> str:
    """A Prefect artifact key part for ``model`` (lower case, dashes)."""
    return model.lower().replace("_", "-").replace("/", "-").replace(".", "-")


@flow(name="check-drift")
def check_drift(
    model: str,
    version: str | None = None,
    window_hours: float = 24.0,
    config: dict[str, Any] | None = None,
    config_block: str | None = None,
) -> dict[str, Any]:
    """Check the last ``window_hours`` of a version's traffic (default: production): drift, data quality.

    ``config`` (or the saved ``MLOps Monitoring Config`` block named ``config_block``)
    holds the data-quality thresholds.
    """
    result = run_drift_check(model, version, window_hours, config=config, config_block=config_block)
    rows = [{"column": c, "drifted": True} for c in result.get("drifted_columns", [])]
    key = artifact_key(model)
    create_table_artifact(
        table=rows or [{"column": "-", "drifted": False}],
        key=f"drift-{key}",
        description=f"{model} v{result['version']}: {result['rows']} rows, drift: {result['dataset_drift']}",
    )
    quality = result.get("data_quality")
    if quality is not None:
        create_table_artifact(
            table=[
                {k: f[k] for k in ("column", "check", "severity", "value", "limit", "message")}
                for f in quality["findings"]
            ]
            or [{"column": "-", "check": "all", "severity": "-", "message": "data quality ok"}],
            key=f"data-quality-{key}",
            description=f"{model} v{result['version']}: {quality['summary']}",
        )
    return result


@flow(name="check-operations")
def check_operations(
    model: str,
    version: str | None = None,
    window_hours: float = 1.0,
    config: dict[str, Any] | None = None,
    config_block: str | None = None,
) -> dict[str, Any]:
    """Check latency p95/p99 and error rate per endpoint over the last window; alert on breaches."""
    result = run_operations_check(model, version, window_hours, config=config, config_block=config_block)
    create_table_artifact(
        table=[
            {k: e[k] for k in ("endpoint", "requests", "error_rate", "p95_ms", "p99_ms", "judged")}
            for e in result["endpoints"]
        ]
        or [{"endpoint": "-", "requests": 0}],
        key=f"operations-{artifact_key(model)}",
        description=f"{model} v{result['version']}: {result['requests']} requests, "
        f"{'within' if result['passed'] else 'OUTSIDE'} service levels",
    )
    return result


@flow(name="check-performance")
def check_performance(
    model: str,
    labels_path: str,
    version: str | None = None,
    window_hours: float = 24.0,
    tolerance: float = 0.02,
) -> dict[str, Any]:
    """Join delayed ground truth (a file of request_id, label) and check the version still performs."""
    return run_performance_check(model, labels_path, version, window_hours, tolerance)


@flow(name="monitoring-report")
def monitoring_report_flow(
    model: str, version: str | None = None, evidently: bool = False, out_dir: str | None = None
) -> dict[str, Any]:
    """Publish a version's monitoring summary (and, if asked, Evidently's HTML drift report).

    The files go to ``out_dir`` (a folder or fsspec URL), by default ``monitoring``
    under the report root (``MLOPS_STORAGE_URL``'s ``reports``, else ``MLOPS_HOME/reports``).
    """
    return publish_monitoring_report(model, version, evidently, out_dir)


@flow(name="build-reference-profile")
def build_reference_profile(
    model: str,
    version: str,
    paths: list[str],
    categorical: list[str] | None = None,
    target: str | None = None,
) -> dict[str, Any]:
    """Profile a version's training data (Parquet files, chunk by chunk) and store it with the version."""
    profile = profile_files(paths, categorical=categorical or [], target=target)
    return store_reference_profile(open_registry(), model, version, profile).to_dict()
