"""Governance flows: scheduled bias checks and compliance audits, and governance reports.

Each records its result as evidence (read by promotion gates and the
compliance rules), publishes a Prefect artifact, and emits an event when a
check fails (``mlops.bias.failed``, ``mlops.compliance.failed``) that an
automation can turn into an alert or a retraining run.

Example:
    >>> from flows.governance import bias_check, compliance_audit
    >>> (bias_check.name, compliance_audit.name)
    ('bias-check', 'compliance-audit')
"""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact
from prefect.events import emit_event

from tasks.governance.evidence import bias_summary, record_bias_report
from tasks.governance.report import export_governance_report
from tasks.governance.steps import assess_bias, audit_model_compliance, list_models, version_resource


@flow(name="bias-check")
def bias_check(
    model: str,
    version: str,
    path: str,
    label_column: str,
    protected_columns: list[str],
    prediction_column: str | None = None,
    min_group_size: int = 30,
) -> dict[str, Any]:
    """Measure bias of a version on a dataset (scored by the version unless it has predictions)."""
    report = assess_bias(
        path, label_column, prediction_column, protected_columns, min_group_size, model=model, version=version
    )
    stored = record_bias_report(model, version, report)
    create_markdown_artifact(
        markdown=f"# Bias check: {model} version {stored.version}\n\n{bias_summary(report)}\n",
        key=f"bias-{model}-v{stored.version}".lower().replace("_", "-"),
    )
    if not stored.passed:
        emit_event(
            "mlops.bias.failed",
            resource=version_resource(model, stored.version),
            payload={"summary": stored.summary},
        )
    return stored.to_dict()


@flow(name="compliance-audit")
def compliance_audit(
    models: list[str] | None = None, frameworks: list[str] | None = None
) -> list[dict[str, Any]]:
    """Check and record compliance of every model's production version (or of ``models``)."""
    return [audit_model_compliance(name, frameworks) for name in list_models(models)]


@flow(name="governance-report")
def governance_report_flow(
    model: str, version: str | None = None, out_dir: str | None = None
) -> dict[str, str]:
    """Write a version's governance report (JSON) and model card, and publish the card.

    ``out_dir`` is a folder or fsspec URL; by default ``governance`` under the
    report root (``MLOPS_STORAGE_URL``'s ``reports``, else ``MLOPS_HOME/reports``).
    """
    return export_governance_report(model, version, out_dir)
