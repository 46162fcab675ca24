"""Record evidence reports (bias, compliance) for model versions, for gates and audits.

Example:
    >>> from tasks.governance.evidence import bias_summary
    >>> callable(bias_summary)
    True
"""

from __future__ import annotations

from typing import Any

from prefect import task

from storage.governance.reports import ReportStore, StoredReport
from storage.registry.reads import VersionRef
from tasks.governance.bias import BiasReport
from tasks.registry.steps import open_registry


def bias_summary(report: BiasReport) -> str:
    """One line: passed, or the metrics that failed and where."""
    if report.passed:
        return "every bias metric within its threshold"
    if not report.failures:
        return "insufficient data: no group large enough to judge"
    return "; ".join(f"{name}: {m.metric} = {m.value:.3g} ({m.detail})" for name, m in report.failures)


@task(name="record-bias-report", retries=2, retry_delay_seconds=1)
def record_bias_report(
    model: str, version: VersionRef, report: BiasReport, *, registry_block: str | None = None
) -> StoredReport:
    """Store a bias report for a version, so the ``bias_report`` promotion gate can read it."""
    payload: dict[str, Any] = report.to_dict()
    return ReportStore(open_registry(registry_block)).save(
        "bias_report", model, version, passed=report.passed, summary=bias_summary(report), payload=payload
    )
