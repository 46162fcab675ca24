"""Monitoring steps: reference profiles stored with versions, drift checks on the prediction log, alerts.

A version's reference profile (from its training data) is stored once in the
artifact store, content-addressed and verified on read, with a
``reference_profile`` report pointing at it. A drift check compares a window
of the prediction log's features with that profile, records a ``drift_check``
report (the evidence compliance rules and model cards read) and a
``data_quality`` report (nulls, ranges, unseen categories, schema), raises
de-duplicated alerts, emits ``mlops.drift.detected`` and
``mlops.data-quality.degraded`` for new ones, and notifies the alert routes.

Example:
    >>> from tasks.monitoring.steps import drift_alerts
    >>> callable(drift_alerts)
    True
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import pandas as pd
from prefect import task

from blocks.metrics import canonical_metric
from blocks.monitoring import MonitoringConfig, resolve_monitoring_config
from storage.errors import NotFoundError
from storage.governance.reports import ReportStore, StoredReport
from storage.monitoring.prediction_log import PredictionLog
from storage.registry.core import Registry
from storage.registry.reads import VersionRef
from tasks.monitoring.alerting import record_findings
from tasks.monitoring.drift import DatasetDrift, detect_drift
from tasks.monitoring.performance import join_ground_truth
from tasks.monitoring.profiles import ReferenceProfile, build_profile, merge_profiles, profile_from_dict
from tasks.monitoring.quality import check_quality, quality_alerts
from tasks.registry.steps import open_registry

DRIFT_EVENT = "mlops.drift.detected"
PERFORMANCE_EVENT = "mlops.performance.degraded"
QUALITY_EVENT = "mlops.data-quality.degraded"


def store_reference_profile(
    registry: Registry, model: str, version: VersionRef, profile: ReferenceProfile
) -> StoredReport:
    """Keep a version's reference profile (content-addressed) and point a report at it."""
    data = json.dumps(profile.to_dict()).encode()
    ref = registry.artifacts.put_bytes(data)
    return ReportStore(registry).save(
        "reference_profile",
        model,
        version,
        passed=True,
        summary=f"{profile.rows} rows, {len(profile.columns)} columns",
        payload={
            "sha256": ref.sha256,
            "size": ref.size,
            "rows": profile.rows,
            "columns": list(profile.columns),
        },
    )


@task(name="profile-chunk", retries=1)
def profile_chunk(
    path: str, offset: int, edges: dict[str, list[float]], categorical: list[str], target: str | None
) -> dict[str, Any]:
    """Profile one Parquet file of a larger reference set (runs on a Dask worker)."""
    frame = pd.read_parquet(path)
    profile = build_profile(frame, categorical=categorical, target=target, edges=edges, offset=offset)
    return profile.to_dict()


def profile_files(
    paths: list[str],
    *,
    categorical: Sequence[str] = (),
    target: str | None = None,
) -> ReferenceProfile:
    """Profile Parquet files chunk by chunk and merge exactly: one file in memory at a time.

    Histogram edges are frozen from the first file; every chunk keeps its
    global row offset, so the merged profile is the one the whole data would
    give. Inside a flow on a Dask task runner the chunks fan out to the workers.
    """
    import pyarrow.parquet as pq

    if not paths:
        raise NotFoundError("no reference files to profile")
    rows = [pq.ParquetFile(p).metadata.num_rows for p in paths]
    offsets = [sum(rows[:i]) for i in range(len(rows))]
    first = build_profile(pd.read_parquet(paths[0]), categorical=list(categorical), target=target)
    edges = first.edges()
    futures = [
        profile_chunk.submit(p, o, edges, list(categorical), target)
        for p, o in zip(paths, offsets, strict=True)
    ]
    merged = None
    for future in futures:
        part = profile_from_dict(future.result())
        merged = part if merged is None else merge_profiles(merged, part)
    assert merged is not None
    return merged


def load_reference_profile(registry: Registry, model: str, version: VersionRef) -> ReferenceProfile:
    """The version's stored reference profile (its bytes verified)."""
    found = ReportStore(registry).latest("reference_profile", model, version)
    if found is None:
        number = registry.get_version(model, version).number
        raise NotFoundError(f"no reference profile stored for {model} version {number}")
    raw = registry.artifacts.get_bytes(
        found.payload["sha256"], name=f"{model}/{found.version}/reference profile"
    )
    return profile_from_dict(json.loads(raw))


def feature_window(
    log: PredictionLog,
    model: str,
    version: int,
    start: datetime,
    end: datetime,
    *,
    prediction_column: str | None = None,
) -> pd.DataFrame:
    """The features of the version's logged requests in ``[start, end)``, one column per feature.

    With ``prediction_column``, the logged predictions are added under that
    name (the label of ``{"label": ..., "score": ...}`` objects), so a profile
    that recorded the training predictions checks prediction drift too.
    """
    rows = log.read(model=model, start=start, end=end)
    rows = rows[(rows["version"] == version) & (rows["status"] == "ok")]
    if rows.empty:
        return pd.DataFrame()
    frame = pd.DataFrame([json.loads(text) for text in rows["features"]])
    if prediction_column:
        values = [json.loads(text) for text in rows["prediction"]]
        frame[prediction_column] = [
            v.get("label", v.get("value")) if isinstance(v, dict) else v for v in values
        ]
    return frame


def drift_alerts(drift: DatasetDrift) -> list[tuple[str, str, str]]:
    """(severity, subject, message) per finding: critical for dataset drift, warning per column."""
    found = [
        ("warning", c.column, f"{c.method} effect {c.effect_size:.4g}, adjusted p {c.p_adjusted:.3g}")
        for c in drift.columns
        if c.drifted
    ]
    if drift.dataset_drift:
        found.insert(
            0,
            ("critical", "dataset", f"{len(drift.drifted_columns)} of {len(drift.columns)} columns drifted"),
        )
    return found


@task(name="check-drift-window")
def run_drift_check(
    model: str,
    version: VersionRef | None = None,
    window_hours: float = 24.0,
    end: datetime | None = None,
    config: dict[str, Any] | MonitoringConfig | None = None,
    config_block: str | None = None,
) -> dict[str, Any]:
    """Compare the last window of logged features with the reference: drift and data quality.

    Both are recorded (``drift_check`` and ``data_quality`` reports), raise
    de-duplicated alerts of their own kinds (``drift``, ``data_quality``),
    resolve the ones that cleared, emit events for new ones and notify the
    alert routes in the background. ``new_alerts`` lists the new drift alerts;
    ``data_quality`` holds the quality verdict and its new alerts.
    """
    registry = open_registry()
    limits = resolve_monitoring_config(config, config_block).quality
    target = registry.get_version(model, version if version is not None else "production")
    stop = end or datetime.now(UTC)
    reference = load_reference_profile(registry, model, target.number)
    current = feature_window(
        PredictionLog.from_settings(),
        model,
        target.number,
        stop - timedelta(hours=window_hours),
        stop,
        prediction_column=reference.prediction,
    )
    reports = ReportStore(registry)
    if current.empty:
        reports.save("drift_check", model, target.number, passed=True, summary="no requests in the window")
        return {"model": model, "version": target.number, "rows": 0, "dataset_drift": False, "new_alerts": []}
    quality = check_quality(reference, current, limits)
    reports.save(
        "data_quality",
        model,
        target.number,
        passed=quality.passed,
        summary=quality.summary(),
        payload=quality.to_dict(),
    )
    quality_new = record_findings(
        registry,
        model,
        target.number,
        kind="data_quality",
        findings=quality_alerts(quality),
        event=QUALITY_EVENT,
        resolve_cleared=len(current) >= limits.min_rows,
        notify=False,
    )
    testable = current.drop(
        columns=[f.column for f in quality.findings if f.check == "missing"], errors="ignore"
    )
    drift = detect_drift(reference, testable, on_invalid="skip")
    summary = f"{len(drift.drifted_columns)} of {len(drift.columns)} columns drifted on {len(current)} rows"
    if drift.untestable:
        summary += f"; untestable: {', '.join(sorted(drift.untestable))}"
    reports.save(
        "drift_check",
        model,
        target.number,
        passed=not drift.dataset_drift,
        summary=summary,
        payload=drift.to_dict(),
    )
    new_alerts = record_findings(
        registry, model, target.number, kind="drift", findings=drift_alerts(drift), event=DRIFT_EVENT
    )
    return {
        "model": model,
        "version": target.number,
        "rows": len(current),
        "dataset_drift": drift.dataset_drift,
        "drifted_columns": list(drift.drifted_columns),
        "untestable": dict(drift.untestable),
        "new_alerts": new_alerts,
        "data_quality": {
            "passed": quality.passed,
            "summary": quality.summary(),
            "findings": [{**asdict(f), "subject": f.subject} for f in quality.findings],
            "new_alerts": quality_new,
        },
    }


@task(name="check-performance-window")
def run_performance_check(
    model: str,
    labels_path: str,
    version: VersionRef | None = None,
    window_hours: float = 24.0,
    tolerance: float = 0.02,
    task_kind: Literal["classification", "regression"] = "classification",
    end: datetime | None = None,
) -> dict[str, Any]:
    """Join delayed labels to the logged predictions, compare with the version's metrics, alert.

    The reference is the version's own registered metrics (accuracy, F1, ...
    as logged at training time); every metric both sides have is compared
    with ``tolerance``.
    """
    from storage.monitoring.ground_truth import read_labels
    from tasks.monitoring.streaming import concept_drift

    registry = open_registry()
    target = registry.get_version(model, version if version is not None else "production")
    stop = end or datetime.now(UTC)
    log = PredictionLog.from_settings().read(
        model=model, start=stop - timedelta(hours=window_hours), end=stop
    )
    log = log[log["version"] == target.number]
    joined = join_ground_truth(log, read_labels(labels_path))  # a labels file or a ground-truth folder
    known = (
        ("accuracy", "precision", "recall", "f1", "auc_roc")
        if task_kind == "classification"
        else ("rmse", "mae")
    )
    # a version registered with another spelling (roc_auc, f1_score) is compared all the same
    reference = {canonical_metric(k): v for k, v in target.metrics.items() if canonical_metric(k) in known}
    result = concept_drift(
        joined,
        reference,
        tolerance={k: tolerance for k in reference},
        task=task_kind,
        window=f"{max(1, round(window_hours))}h",
    )
    ReportStore(registry).save(
        "performance_check",
        model,
        target.number,
        passed=not result.performance_degraded,
        summary=result.summary,
        payload=result.to_dict(),
    )
    new_alerts = record_findings(
        registry,
        model,
        target.number,
        kind="performance",
        findings=[
            (f.severity, f.metric, f.message)
            for f in result.findings
            if f.severity in ("critical", "warning")
        ],
        event=PERFORMANCE_EVENT,
        event_subject_key="metric",
        resolve_cleared=result.labelled_rows > 0,
    )
    return {
        "model": model,
        "version": target.number,
        "labelled": result.labelled_rows,
        "degraded": result.performance_degraded,
        "concept_drift": result.concept_drift,
        "summary": result.summary,
        "new_alerts": new_alerts,
    }
