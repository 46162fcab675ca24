"""Monitoring flows: drift of the prediction log's features against the version's reference.

Example:
    >>> from flows.monitoring import check_drift
    >>> (check_drift.name, check_performance.name)
    ('check-drift', 'check-performance')
"""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.artifacts import create_table_artifact

from tasks.monitoring.report import publish_monitoring_report
from tasks.monitoring.steps import (
    profile_files,
    run_drift_check,
    run_performance_check,
    store_reference_profile,
)
from tasks.registry.steps import open_registry


@flow(name="check-drift")
def check_drift(model: str, version: str | None = None, window_hours: float = 24.0) -> dict[str, Any]:
    """Check the last ``window_hours`` of a version's traffic (default: production) for drift."""
    result = run_drift_check(model, version, window_hours)
    rows = [{"column": c, "drifted": True} for c in result.get("drifted_columns", [])]
    create_table_artifact(
        table=rows or [{"column": "-", "drifted": False}],
        key=f"drift-{model}".lower().replace("_", "-"),
        description=f"{model} v{result['version']}: {result['rows']} rows, drift: {result['dataset_drift']}",
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
    model: str, version: str | None = None, evidently: bool = False, out_dir: str = "monitoring"
) -> dict[str, Any]:
    """Publish a version's monitoring summary (and, if asked, Evidently's HTML drift report)."""
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
