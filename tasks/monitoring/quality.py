"""Data quality of a window against the reference profile: nulls, range, unseen categories, schema.

Drift asks whether the values are distributed differently; data quality asks
whether they are *broken*. Per reference column (the target aside):

================  ============================================================  =====================
check             observed value                                                limit
================  ============================================================  =====================
``null_rate``     window null share minus the reference null share              ``null_rate_increase``
``out_of_range``  share of numeric values below the reference min / above max   ``out_of_range_share``
``unseen``        share of categorical values the reference never saw           ``unseen_category_share``
``missing``       the column is absent from every request of the window         ``schema_severity``
``type``          numeric in the reference, text in the window (or vice versa)  ``schema_severity``
================  ============================================================  =====================

Missing values are NaN, None and ±inf, as in the profile. Columns the window
has and the reference lacks are listed (``new_columns``) but not alerted on.
Each finding becomes a ``data_quality`` alert whose subject is
``<column>:<check>``.

Example:
    >>> import pandas as pd
    >>> from tasks.monitoring.profiles import build_profile
    >>> ref = build_profile(pd.DataFrame({"age": [20.0, 30.0, 40.0, 50.0] * 10, "plan": ["a", "b"] * 20}))
    >>> cur = pd.DataFrame({"age": [None] * 24 + [35.0] * 15 + [99.0], "plan": ["a"] * 39 + ["z"]})
    >>> report = check_quality(ref, cur)
    >>> [(f.subject, f.severity) for f in report.findings]
    [('age:null_rate', 'critical'), ('age:out_of_range', 'warning'), ('plan:unseen', 'warning')]
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from blocks.monitoring import Limit, QualityThresholds
from tasks.monitoring.profiles import CategoricalProfile, NumericProfile, ReferenceProfile, is_numeric

__all__ = ["ColumnQuality", "QualityFinding", "QualityReport", "check_quality", "quality_alerts"]


@dataclass(frozen=True)
class QualityFinding:
    """One breached data-quality limit of one column."""

    column: str
    check: str
    severity: str
    value: float | None
    limit: float | None
    message: str

    @property
    def subject(self) -> str:
        """The alert subject: ``<column>:<check>``."""
        return f"{self.column}:{self.check}"


@dataclass(frozen=True)
class ColumnQuality:
    """What the window showed of one reference column (None where it does not apply)."""

    column: str
    kind: str
    present: bool
    null_rate: float | None = None
    reference_null_rate: float | None = None
    out_of_range_share: float | None = None
    unseen_share: float | None = None
    unseen_examples: list[str] = field(default_factory=list)
    type_changed: bool = False


@dataclass(frozen=True)
class QualityReport:
    """The data-quality verdict of a window: per-column measures and the breached limits."""

    rows: int
    columns: tuple[ColumnQuality, ...]
    findings: tuple[QualityFinding, ...]
    new_columns: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        """No limit breached."""
        return not self.findings

    def summary(self) -> str:
        """One line for reports."""
        if self.passed:
            return f"data quality ok on {self.rows} rows"
        worst = ", ".join(f.subject for f in self.findings[:5])
        more = f" (+{len(self.findings) - 5})" if len(self.findings) > 5 else ""
        return f"{len(self.findings)} data-quality finding(s) on {self.rows} rows: {worst}{more}"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "rows": self.rows,
            "passed": self.passed,
            "columns": [asdict(c) for c in self.columns],
            "findings": [{**asdict(f), "subject": f.subject} for f in self.findings],
            "new_columns": list(self.new_columns),
        }


def _share(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


def _limit_finding(column: str, check: str, limit: Limit, value: float, what: str) -> QualityFinding | None:
    severity = limit.severity(value)
    if severity is None:
        return None
    bound = limit.critical if severity == "critical" and limit.critical is not None else limit.warning
    return QualityFinding(column, check, severity, value, bound, f"{what} {value:.2%} > {bound:.2%}")


def _numeric_column(
    name: str, ref: NumericProfile, cur: pd.Series, limits: QualityThresholds, judge: bool
) -> tuple[ColumnQuality, list[QualityFinding]]:
    findings: list[QualityFinding] = []
    parsed = pd.to_numeric(cur, errors="coerce") if not is_numeric(cur) else cur
    values = parsed.to_numpy(dtype=float, na_value=np.nan)
    text = int((cur.notna() & pd.isna(parsed)).sum())
    changed = text > 0 or pd.api.types.is_bool_dtype(cur.dtype)
    if changed:
        findings.append(
            QualityFinding(
                name, "type", limits.schema_severity, float(text), None,
                f"numeric in the reference, {cur.dtype} in the window ({text} non-numeric values)",
            )
        )  # fmt: skip
    finite = np.isfinite(values)
    null_rate = 1.0 - _share(int(finite.sum()), len(values))
    ref_null = _share(ref.nulls, ref.count + ref.nulls)
    outside = 0
    if ref.min is not None and ref.max is not None:
        kept = values[finite]
        outside = int(((kept < ref.min) | (kept > ref.max)).sum())
    out_share = _share(outside, int(finite.sum()))
    if judge:
        increase = _limit_finding(
            name, "null_rate", limits.null_rate_increase, null_rate - ref_null,
            f"null rate {null_rate:.2%} (reference {ref_null:.2%}): increase",
        )  # fmt: skip
        rng = _limit_finding(
            name, "out_of_range", limits.out_of_range_share, out_share,
            f"values outside the reference range [{ref.min:.6g}, {ref.max:.6g}]:",
        )  # fmt: skip
        findings += [f for f in (increase, rng) if f is not None]
    quality = ColumnQuality(
        name, "numeric", True, null_rate, ref_null, out_share, None, [], type_changed=changed
    )
    return quality, findings


def _categorical_column(
    name: str, ref: CategoricalProfile, cur: pd.Series, limits: QualityThresholds, judge: bool
) -> tuple[ColumnQuality, list[QualityFinding]]:
    findings: list[QualityFinding] = []
    present = cur.dropna()
    changed = bool(is_numeric(cur) and not ref.numeric_source and len(present))
    if changed:
        findings.append(
            QualityFinding(
                name, "type", limits.schema_severity, None, None,
                f"text in the reference, {cur.dtype} in the window",
            )
        )  # fmt: skip
    null_rate = 1.0 - _share(len(present), len(cur))
    ref_null = _share(ref.nulls, ref.count + ref.nulls)
    as_text = present.astype(str)
    unseen_mask = ~as_text.isin(list(ref.categories))
    unseen_share = _share(int(unseen_mask.sum()), len(present))
    examples = sorted(as_text[unseen_mask].value_counts().index[:5].tolist())
    if judge:
        increase = _limit_finding(
            name, "null_rate", limits.null_rate_increase, null_rate - ref_null,
            f"null rate {null_rate:.2%} (reference {ref_null:.2%}): increase",
        )  # fmt: skip
        unseen = _limit_finding(
            name, "unseen", limits.unseen_category_share, unseen_share,
            f"categories never seen in the reference ({', '.join(examples)}):",
        )  # fmt: skip
        findings += [f for f in (increase, unseen) if f is not None]
    quality = ColumnQuality(
        name, "categorical", True, null_rate, ref_null, None, unseen_share, examples, type_changed=changed
    )
    return quality, findings


def check_quality(
    reference: ReferenceProfile, current: pd.DataFrame, thresholds: QualityThresholds | None = None
) -> QualityReport:
    """Judge a window's data quality against the reference profile (see the module docs)."""
    limits = thresholds or QualityThresholds()
    judge = len(current) >= limits.min_rows
    columns: list[ColumnQuality] = []
    findings: list[QualityFinding] = []
    ignored = {*limits.ignore_columns, *([reference.target] if reference.target else [])}
    for name, ref in reference.columns.items():
        if name in ignored:
            continue
        kind = "numeric" if isinstance(ref, NumericProfile) else "categorical"
        if name not in current.columns:
            if len(current):
                columns.append(ColumnQuality(name, kind, False))
                findings.append(
                    QualityFinding(
                        name, "missing", limits.schema_severity, None, None,
                        f"column missing from all {len(current)} requests of the window",
                    )
                )  # fmt: skip
            continue
        if isinstance(ref, NumericProfile):
            quality, found = _numeric_column(name, ref, current[name], limits, judge)
        else:
            quality, found = _categorical_column(name, ref, current[name], limits, judge)
        columns.append(quality)
        findings += found
    new = tuple(sorted(c for c in current.columns if c not in reference.columns))
    return QualityReport(len(current), tuple(columns), tuple(findings), new)


def quality_alerts(report: QualityReport) -> list[tuple[str, str, str]]:
    """(severity, subject, message) per finding, as the alert store takes them."""
    return [(f.severity, f.subject, f.message) for f in report.findings]
