"""Stage 2 of training: check the dataset before anything is fitted on it.

The report covers the schema, the target, missing-value shares, duplicate rows,
constant columns and class balance. Fatal problems (no target, too few rows, a
target with one class, mostly-missing columns) stop the flow with one message
naming each problem; the rest are warnings in the report.

Example:
    >>> import pandas as pd
    >>> frame = pd.DataFrame({"x": range(40), "c": ["a"] * 40, "y": [0, 1] * 20})
    >>> report = validate_frame(frame, "y", "classification")
    >>> report.ok, report.warnings
    (True, ["column 'c' is constant"])
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import pandas as pd
from prefect import task

from blocks.pipeline import CLASSIFICATION_METRICS, REGRESSION_METRICS, PipelineConfig, ValidationThresholds
from storage.errors import ValidationError
from storage.registry.model_format import column_type
from tasks.retry import maybe_fail, retry_unless_bad_input

Task = Literal["classification", "regression"]
#: An integer target with at most this many distinct values is a classification target.
MAX_INTEGER_CLASSES = 20


@dataclass
class ValidationReport:
    """What stage 2 found."""

    rows: int
    columns: dict[str, str]
    task: str
    missing_share: dict[str, float]
    duplicate_rows: int
    constant_columns: list[str]
    class_counts: dict[str, int] = field(default_factory=dict)
    fatal: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No fatal problem."""
        return not self.fatal

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy."""
        return {**asdict(self), "ok": self.ok}

    def markdown(self, title: str = "Data validation") -> str:
        """The report as a Prefect markdown artifact."""
        lines = [
            f"# {title}",
            "",
            f"**{'passed' if self.ok else 'FAILED'}**: {self.rows} rows, {len(self.columns)} columns, "
            f"task {self.task}, {self.duplicate_rows} duplicate rows.",
            "",
        ]
        for label, items in (("Fatal", self.fatal), ("Warnings", self.warnings)):
            if items:
                lines += [f"## {label}", "", *[f"- {i}" for i in items], ""]
        lines += ["## Columns", "", "| column | type | missing share |", "|---|---|---|"]
        lines += [f"| {c} | {t} | {self.missing_share.get(c, 0.0):.3f} |" for c, t in self.columns.items()]
        if self.class_counts:
            lines += ["", "## Classes", "", "| class | rows |", "|---|---|"]
            lines += [f"| {k} | {v} |" for k, v in self.class_counts.items()]
        return "\n".join(lines) + "\n"


def infer_task(target: pd.Series) -> Task:
    """Classification for non-numeric, boolean or few-valued integer targets; regression otherwise.

    Example:
        >>> infer_task(pd.Series([0, 1, 1])), infer_task(pd.Series([0.5, 1.7, 2.2]))
        ('classification', 'regression')
    """
    values = target.dropna()
    if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        return "classification"
    if pd.api.types.is_integer_dtype(values) or bool((values == values.round()).all()):
        return "classification" if values.nunique() <= MAX_INTEGER_CLASSES else "regression"
    return "regression"


def validate_frame(
    frame: pd.DataFrame,
    target: str,
    task: Task | None = None,
    thresholds: ValidationThresholds | None = None,
    *,
    time_column: str | None = None,
    source: str = "the dataset",
) -> ValidationReport:
    """Check ``frame`` for training ``target``; fatal problems are listed, not raised."""
    limits = thresholds or ValidationThresholds()
    columns = {str(c): column_type(t) for c, t in frame.dtypes.items()}
    missing = {str(c): float(v) for c, v in frame.isna().mean().items()} if len(frame) else {}
    fatal: list[str] = []
    warnings: list[str] = []
    if target not in frame.columns:
        fatal.append(
            f"target column {target!r} is not in {source} (columns: {', '.join(map(str, frame.columns))})"
        )
    if time_column and time_column not in frame.columns:
        fatal.append(f"time column {time_column!r} is not in {source}")
    if len(frame) < limits.min_rows:
        fatal.append(f"{source} has {len(frame)} rows; at least {limits.min_rows} are needed")
    features = [c for c in frame.columns if c not in (target, time_column)]
    if not features:
        fatal.append(f"{source} has no feature columns besides the target")
    for column, share in missing.items():
        if column == target:
            if share > 0:
                warnings.append(f"target {target!r} is missing in {share:.1%} of rows (they are dropped)")
        elif share > limits.max_missing_share:
            fatal.append(f"column {column!r} is {share:.1%} missing (limit {limits.max_missing_share:.0%})")
        elif share > 0:
            warnings.append(f"column {column!r} is {share:.1%} missing (imputed)")
    duplicates = int(frame.duplicated().sum()) if len(frame) else 0
    if len(frame) and duplicates / len(frame) > limits.max_duplicate_share:
        fatal.append(
            f"{duplicates} of {len(frame)} rows are duplicates (limit {limits.max_duplicate_share:.0%})"
        )
    elif duplicates:
        warnings.append(f"{duplicates} duplicate rows")
    constant = [str(c) for c in features if frame[c].nunique(dropna=False) <= 1]
    warnings += [f"column {c!r} is constant" for c in constant]
    counts: dict[str, int] = {}
    resolved: str = task or "classification"
    if target in frame.columns:
        y = frame[target].dropna()
        resolved = task or infer_task(y)
        if y.empty:
            fatal.append(f"target column {target!r} has no values")
        elif resolved == "classification":
            counts = {str(k): int(v) for k, v in y.value_counts().sort_index().items()}
            if len(counts) < 2:
                only = next(iter(counts), "none")
                fatal.append(f"target column {target!r} has one class ({only}); classification needs two")
            else:
                smallest = min(counts.values()) / len(y)
                if smallest < limits.min_class_share:
                    fatal.append(
                        f"target {target!r}: the smallest class has {smallest:.2%} of rows "
                        f"(limit {limits.min_class_share:.0%})"
                    )
                elif smallest < 0.1:
                    warnings.append(f"target {target!r} is imbalanced: smallest class {smallest:.1%}")
        elif not pd.api.types.is_numeric_dtype(y):
            fatal.append(f"target column {target!r} is not numeric; regression needs numbers")
    return ValidationReport(
        rows=len(frame),
        columns=columns,
        task=resolved,
        missing_share=missing,
        duplicate_rows=duplicates,
        constant_columns=constant,
        class_counts=counts,
        fatal=fatal,
        warnings=warnings,
    )


def raise_for_fatal(report: ValidationReport, source: str) -> None:
    """Stop with one message listing every fatal problem.

    Example:
        >>> r = validate_frame(pd.DataFrame({"x": [1, 2]}), "y")
        >>> try:
        ...     raise_for_fatal(r, "d.csv")
        ... except ValidationError as exc:
        ...     print(str(exc).splitlines()[0])
        d.csv failed validation:
    """
    if report.fatal:
        raise ValidationError(f"{source} failed validation:\n" + "\n".join(f"  - {p}" for p in report.fatal))


@task(name="validate-data", retries=2, retry_delay_seconds=1, retry_condition_fn=retry_unless_bad_input)
def validate_data(
    frame: pd.DataFrame, config: PipelineConfig, source: str, cache_token: str | None = None
) -> dict[str, Any]:
    """Stage 2: the validation report (a markdown artifact); fatal problems stop the flow."""
    from prefect.artifacts import create_markdown_artifact

    from tasks.training.estimators import estimator_class

    maybe_fail("validate")
    report = validate_frame(
        frame,
        config.target_column,
        config.task,
        config.validation,
        time_column=config.time_column,
        source=source,
    )
    fe = config.feature_engineering
    for column in [*fe.drop_columns, *fe.categorical_columns]:
        if column not in frame.columns:
            report.fatal.append(f"feature_engineering names column {column!r}, which is not in {source}")
    try:
        estimator_class(config.model_class, report.task)
    except ValidationError as exc:
        report.fatal.append(str(exc))
    allowed = CLASSIFICATION_METRICS if report.task == "classification" else REGRESSION_METRICS
    if config.enable_tuning and config.tuning_metric and config.tuning_metric not in allowed:
        report.fatal.append(f"tuning_metric {config.tuning_metric!r} does not apply to {report.task}")
    create_markdown_artifact(
        key=f"validation-{artifact_key(config.name)}",
        markdown=report.markdown(f"Data validation: {config.name}"),
        description=f"{source}: {'passed' if report.ok else 'failed'}",
    )
    raise_for_fatal(report, source)
    return report.to_dict()


def artifact_key(name: str) -> str:
    """A Prefect artifact key part (lowercase letters, digits, dashes).

    Example:
        >>> artifact_key("Churn_Model.v2")
        'churn-model-v2'
    """
    return "".join(c if c.isalnum() else "-" for c in name.lower())
