"""Tasks of the governance flows: bias on a scored dataset, compliance of production versions.

Example:
    >>> from tasks.governance.steps import audit_model_compliance
    >>> audit_model_compliance.name
    'audit-model-compliance'
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from prefect import task
from prefect.events import emit_event

from storage.errors import ValidationError
from storage.features.store import read_table
from tasks.governance.bias import BiasReport, detect_bias
from tasks.governance.compliance import check_compliance, record_compliance
from tasks.registry.steps import open_registry
from tasks.scoring import score


def version_resource(model: str, version: int) -> dict[str, str]:
    """The Prefect event resource of a model version."""
    return {"prefect.resource.id": f"mlops.model-version.{model}.{version}", "mlops.model": model}


@task(name="assess-bias")
def assess_bias(
    path: str,
    label_column: str,
    prediction_column: str | None,
    protected_columns: Sequence[str],
    min_group_size: int = 30,
    *,
    model: str | None = None,
    version: str | None = None,
) -> BiasReport:
    """Measure bias on a dataset (CSV, Parquet, JSON).

    Predictions come from ``prediction_column`` when given; otherwise the
    registered ``model`` ``version`` scores the dataset (its signature names
    the input columns).
    """
    frame = read_table(path)
    needed = [label_column, *protected_columns] + ([prediction_column] if prediction_column else [])
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise ValidationError(f"{path}: column(s) {', '.join(missing)} not found")
    if prediction_column:
        predictions = frame[prediction_column].to_numpy()
    elif model is not None and version is not None:
        predictions = score(open_registry(), model, version, frame)
    else:
        raise ValidationError("give a prediction column, or a model and version to score the dataset with")
    return detect_bias(
        frame[label_column].to_numpy(),
        predictions,
        protected={c: frame[c].to_numpy() for c in protected_columns},
        min_group_size=min_group_size,
    )


@task(name="list-models")
def list_models(models: Sequence[str] | None = None) -> list[str]:
    """``models`` as given, or every registered model."""
    return list(models) if models else [m.name for m in open_registry().list_models(page_size=10_000).items]


@task(name="audit-model-compliance")
def audit_model_compliance(model: str, frameworks: Sequence[str] | None = None) -> dict[str, Any]:
    """Check and record compliance of a model's production version; emit an event on failure."""
    registry = open_registry()
    production = registry.search_versions(model=model, stage="production", page_size=1).items
    if not production:
        return {"model": model, "version": None, "scores": {}, "failed": []}
    report = check_compliance(registry, model, production[0].number, frameworks)
    record_compliance(registry, report)
    failed = [f.framework for f in report.frameworks if f.score < f.pass_threshold]
    scores = {f.framework: f.score for f in report.frameworks}
    if failed:
        emit_event(
            "mlops.compliance.failed",
            resource=version_resource(model, report.version),
            payload={"failed": failed, "scores": scores},
        )
    return {"model": model, "version": report.version, "scores": scores, "failed": failed}
