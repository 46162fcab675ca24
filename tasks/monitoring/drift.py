"""Data drift: a current window compared with a reference profile, column by column.

Every column gets three statistics, each with a p-value and an effect size:

========================  ===========================  =====================================
test                      p-value                      effect size
========================  ===========================  =====================================
``ks`` (numeric)          scipy ``ks_2samp``,          the KS statistic D
                          ``method="asymp"``
``wasserstein`` (numeric) permutation test on at most  W1 / reference std (in σ)
                          ``permutation_max_n`` values
                          per side (None unless it is
                          the decision test or
                          ``always_permute``)
``psi`` (both)            PSI/(1/n+1/m) ~ χ²(bins−1)   PSI
                          (Yurdakul & Naranjo 2020)
``chi2`` (categorical)    χ² test of homogeneity       Cramér's V = sqrt(χ²/N)
                          (``chi2_contingency``,
                          no Yates correction)
``jensenshannon`` (cat.)  G-test (the log-likelihood   JS distance, base 2
                          form of the χ² test)
========================  ===========================  =====================================

One of them per column is the *decision* test (``ks`` for numeric and
``chi2`` for categorical columns by default, per column in
:class:`ColumnSettings`). Its p-values are adjusted across columns with
Benjamini–Hochberg, and a column drifts only when the adjusted p-value is at
most ``alpha`` **and** the effect size is at least the floor for its method.
The dataset drifts when the share of drifted columns is at least
``drift_share``.

Why the floors (``DEFAULT_MIN_EFFECT``): they all correspond to a mean shift of
about 0.025σ of a normal column (KS D = 2Φ(δ/2)−1 ≈ 0.4·δ = 0.01;
W1/σ = δ = 0.025; PSI ≈ δ² ≈ 0.0006, rounded up to 0.001) or, for categories,
to about 1% of the probability mass moving (V ≈ 0.01, JS distance ≈ 0.01).
A 0.05σ shift (KS D ≈ 0.02) is twice the floor, so it is called drift
whenever it is significant; a 0.01σ shift (D ≈ 0.004) is overwhelmingly
significant at a million rows but 2.5x below the floor, so it is not. At 10k
rows per window the KS test itself needs D ≳ 0.02 to be significant, so the
floor only matters for large windows, where significance alone would flag
every trivial change. BH bounds the expected share of false discoveries
(FDR); with no drift at all it also bounds the chance of any alarm by alpha.

KS on a profile uses the profile's sample (see :mod:`tasks.monitoring.profiles`; the
p-value uses the sample's size, so it is valid, less powerful than the full
reference: with the default 100k sample and a 1M-row window, D must be about
0.0045 to be significant at 0.05, the same order as the floor). PSI uses
the profile's full histogram with frozen edges, plus a ``below`` and an
``above`` bin. Proportions of empty bins are floored at ``PSI_EPS`` = 1e-4
for PSI only.

Example:
    >>> import numpy as np, pandas as pd
    >>> from tasks.monitoring.drift import detect_drift
    >>> rng = np.random.default_rng(0)
    >>> ref = pd.DataFrame({"a": rng.normal(size=5000), "b": rng.normal(size=5000)})
    >>> cur = pd.DataFrame({"a": rng.normal(0.5, 1, 5000), "b": rng.normal(size=5000)})
    >>> result = detect_drift(ref, cur)
    >>> result.drifted_columns, result.dataset_drift
    (('a',), True)
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from storage.errors import ValidationError
from tasks.monitoring.drift_stats import (
    PSI_EPS,
    StatResult,
    benjamini_hochberg,
    chi_square,
    jensen_shannon,
    ks_test,
    ks_wasserstein,
    psi,
    sorted_bin_counts,
    wasserstein,
    wasserstein_pvalue,
)
from tasks.monitoring.profiles import (
    CategoricalProfile,
    NumericProfile,
    ReferenceProfile,
    build_profile,
    category_counts,
    is_numeric,
    numeric_values,
)

__all__ = [
    "CATEGORICAL_METHODS",
    "DEFAULT_MIN_EFFECT",
    "NUMERIC_METHODS",
    "PSI_EPS",
    "ColumnDrift",
    "ColumnSettings",
    "DatasetDrift",
    "DriftConfig",
    "StatResult",
    "benjamini_hochberg",
    "chi_square",
    "detect_drift",
    "detect_drift_task",
    "jensen_shannon",
    "ks_test",
    "psi",
    "wasserstein",
    "wasserstein_pvalue",
]

NUMERIC_METHODS = ("ks", "wasserstein", "psi")
CATEGORICAL_METHODS = ("chi2", "jensenshannon", "psi")
DEFAULT_MIN_EFFECT: dict[str, float] = {
    "ks": 0.01,
    "wasserstein": 0.025,
    "psi": 0.001,
    "chi2": 0.01,
    "jensenshannon": 0.01,
}
# ---------------------------------------------------------------- configuration and results


@dataclass(frozen=True)
class ColumnSettings:
    """Per-column sensitivity; None falls back to :class:`DriftConfig`'s defaults."""

    method: str | None = None
    alpha: float | None = None
    min_effect: float | None = None


@dataclass(frozen=True)
class DriftConfig:
    """How drift is decided (defaults: see the module docstring for the reasoning)."""

    alpha: float = 0.05
    drift_share: float = 0.5
    numeric_method: str = "ks"
    categorical_method: str = "chi2"
    min_effect: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_MIN_EFFECT))
    columns: Mapping[str, ColumnSettings] = field(default_factory=dict)
    permutations: int = 200
    permutation_max_n: int = 2000
    always_permute: bool = False
    seed: int = 0


@dataclass(frozen=True)
class ColumnDrift:
    """The verdict on one column: the decision test, its BH-adjusted p-value and every statistic."""

    column: str
    kind: str
    method: str
    p_value: float
    p_adjusted: float
    effect_size: float
    alpha: float
    min_effect: float
    drifted: bool
    reference_count: int
    current_count: int
    current_nulls: int
    tests: tuple[StatResult, ...]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self) | {"tests": [asdict(t) for t in self.tests]}


@dataclass(frozen=True)
class DatasetDrift:
    """Drift over all tested columns."""

    columns: tuple[ColumnDrift, ...]
    drifted_columns: tuple[str, ...]
    drift_share: float
    threshold: float
    dataset_drift: bool
    untestable: dict[str, str]
    current_rows: int

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "columns": [c.to_dict() for c in self.columns],
            "drifted_columns": list(self.drifted_columns),
            "drift_share": self.drift_share,
            "threshold": self.threshold,
            "dataset_drift": self.dataset_drift,
            "untestable": dict(self.untestable),
            "current_rows": self.current_rows,
        }


# ---------------------------------------------------------------- per column


def _numeric_tests(
    ref: NumericProfile, cur: np.ndarray, config: DriftConfig, seed: int, permute: bool
) -> dict[str, StatResult]:
    c = np.sort(cur) if permute else cur  # the permutation test samples the unsorted window
    if not permute:
        c.sort()  # in place: ``cur`` is this call's own copy of the finite values
    ks, w = ks_wasserstein(ref.sample, c, with_wasserstein=True)
    ref_bins = np.concatenate([[ref.below], ref.counts, [ref.above]])
    std = ref.std
    wp = (
        wasserstein_pvalue(
            ref.sample, cur, permutations=config.permutations, max_n=config.permutation_max_n, seed=seed
        )
        if permute
        else None
    )
    return {
        "ks": ks,
        "wasserstein": StatResult("wasserstein", w, wp, w / std if std > 0 else w),
        "psi": psi(ref_bins, sorted_bin_counts(c, ref.edges)),
    }


def _current_category_counts(values: pd.Series) -> dict[str, int]:
    """Counts of the non-null values as strings, exactly as :func:`category_counts` gives them.

    A column whose non-null values are all ``str`` (pandas' ``infer_dtype`` says
    ``"string"``) is counted directly: each key already is its own string, so the
    ``astype(str)`` copy that dominates :func:`category_counts` at a million rows
    changes nothing and is skipped. Any other column goes through
    :func:`category_counts`.
    """
    if pd.api.types.infer_dtype(values, skipna=True) != "string":
        return category_counts(values)[0]
    counts = values.value_counts(dropna=True, sort=False)
    return {str(k): int(v) for k, v in sorted(counts.items()) if v > 0}


def _categorical_tests(ref: CategoricalProfile, counts: Mapping[str, int]) -> dict[str, StatResult]:
    names = sorted(set(ref.categories) | set(counts))
    r = np.array([ref.categories.get(k, 0) for k in names])
    c = np.array([counts.get(k, 0) for k in names])
    return {"chi2": chi_square(r, c), "jensenshannon": jensen_shannon(r, c), "psi": psi(r, c)}


def _check_column(name: str, ref: NumericProfile | CategoricalProfile, cur: pd.Series) -> None:
    if ref.count == 0:
        raise ValidationError(f"column {name!r} has no non-null values in the reference")
    if isinstance(ref, NumericProfile):
        if not is_numeric(cur) and not cur.isna().all():
            raise ValidationError(
                f"column {name!r} is numeric in the reference but {cur.dtype} in the window"
            )
    elif is_numeric(cur) and not ref.numeric_source and not cur.isna().all():
        raise ValidationError(
            f"column {name!r} is categorical in the reference but {cur.dtype} in the window"
        )


def _settings(name: str, kind: str, config: DriftConfig) -> tuple[str, float, float]:
    s = config.columns.get(name, ColumnSettings())
    method = s.method or (config.numeric_method if kind == "numeric" else config.categorical_method)
    allowed = NUMERIC_METHODS if kind == "numeric" else CATEGORICAL_METHODS
    if method not in allowed:
        raise ValidationError(
            f"column {name!r}: method {method!r} is not one of {allowed} for {kind} columns"
        )
    floor = s.min_effect if s.min_effect is not None else config.min_effect.get(method, 0.0)
    return method, s.alpha if s.alpha is not None else config.alpha, float(floor)


def _decision_p(result: StatResult) -> float:
    if result.p_value is None:  # only a Wasserstein test that was not asked to permute
        raise ValidationError(f"{result.method} has no p-value here; it cannot decide drift")
    return result.p_value


def detect_drift(
    reference: ReferenceProfile | pd.DataFrame,
    current: pd.DataFrame,
    config: DriftConfig | None = None,
    *,
    columns: Sequence[str] | None = None,
    categorical: Sequence[str] = (),
    on_invalid: Literal["raise", "skip"] = "raise",
    workers: int | None = None,
) -> DatasetDrift:
    """Compare a current window with a reference profile (or reference frame).

    Args:
        reference: A :class:`ReferenceProfile`, or a frame (profiled here with every value kept).
        current: The current window.
        config: Thresholds and methods; :class:`DriftConfig` defaults otherwise.
        columns: Columns to test; every reference column by default.
        categorical: With a reference frame: columns to treat as categorical.
        on_invalid: ``"raise"`` a ValidationError naming the first bad column, or ``"skip"`` it and
            list it with its reason in ``DatasetDrift.untestable``.
        workers: Threads that test columns in parallel (``os.cpu_count()`` by default; 1 tests them
            one after another). Each column's work is independent and deterministic (the Wasserstein
            permutation seed is ``config.seed`` + the column's position), and the results are
            collected in column order, so the result is the same for any number of workers. The
            sorting, merging and counting release the GIL.

    Raises:
        ValidationError: an empty window, a column unknown to the reference or missing from the
            window, an all-null column, a column whose type differs from the reference's, an
            unknown method.
    """
    config = config or DriftConfig()
    if isinstance(reference, pd.DataFrame):
        reference = build_profile(reference, columns=columns, categorical=categorical, sample_size=None)
    if len(current) == 0:
        raise ValidationError("the current window is empty (0 rows)")
    names = list(reference.columns) if columns is None else list(columns)
    for name in [*names, *config.columns]:
        if name not in reference.columns:
            raise ValidationError(f"column {name!r} is not in the reference profile")
    untestable: dict[str, str] = {}
    tested: list[tuple[str, str, str, float, float, dict[str, StatResult], int, int]] = []

    def test_column(i: int, name: str) -> tuple[str, float, float, dict[str, StatResult], int]:
        ref = reference.columns[name]
        if name not in current.columns:
            raise ValidationError(f"column {name!r} is missing from the current window")
        s = current[name]
        _check_column(name, ref, s)
        method, alpha, floor = _settings(name, ref.kind, config)
        if isinstance(ref, NumericProfile):
            x = numeric_values(s, name)
            x = x[np.isfinite(x)]
            if x.size == 0:
                raise ValidationError(f"column {name!r} has no non-null values in the current window")
            permute = method == "wasserstein" or config.always_permute
            return method, alpha, floor, _numeric_tests(ref, x, config, config.seed + i, permute), int(x.size)
        counts = _current_category_counts(s)
        n_cur = sum(counts.values())
        if n_cur == 0:
            raise ValidationError(f"column {name!r} has no non-null values in the current window")
        return method, alpha, floor, _categorical_tests(ref, counts), n_cur

    def attempt(
        item: tuple[int, str],
    ) -> tuple[str, float, float, dict[str, StatResult], int] | ValidationError:
        try:
            return test_column(*item)
        except ValidationError as exc:
            return exc

    n_workers = max(1, min(workers or os.cpu_count() or 1, len(names)))
    if n_workers == 1:
        outcomes = [attempt(item) for item in enumerate(names)]
    else:
        with ThreadPoolExecutor(max_workers=n_workers) as pool:
            outcomes = list(pool.map(attempt, enumerate(names)))
    for name, outcome in zip(names, outcomes, strict=True):
        if isinstance(outcome, ValidationError):
            if on_invalid == "raise":
                raise outcome
            untestable[name] = str(outcome)
            continue
        method, alpha, floor, tests, n_cur = outcome
        tested.append(
            (
                name,
                reference.columns[name].kind,
                method,
                alpha,
                floor,
                tests,
                reference.columns[name].count,
                n_cur,
            )
        )
    adjusted = benjamini_hochberg([_decision_p(t[5][t[2]]) for t in tested])
    results = []
    for (name, kind, method, alpha, floor, tests, n_ref, n_cur), p_adj in zip(tested, adjusted, strict=True):
        main = tests[method]
        results.append(
            ColumnDrift(
                column=name,
                kind=kind,
                method=method,
                p_value=_decision_p(main),
                p_adjusted=float(p_adj),
                effect_size=main.effect_size,
                alpha=alpha,
                min_effect=floor,
                drifted=bool(p_adj <= alpha and main.effect_size >= floor),
                reference_count=n_ref,
                current_count=n_cur,
                current_nulls=len(current) - n_cur,
                tests=tuple(tests.values()),
            )
        )
    drifted = tuple(r.column for r in results if r.drifted)
    share = len(drifted) / len(results) if results else 0.0
    return DatasetDrift(
        columns=tuple(results),
        drifted_columns=drifted,
        drift_share=share,
        threshold=config.drift_share,
        dataset_drift=bool(results) and share >= config.drift_share,
        untestable=untestable,
        current_rows=len(current),
    )


@task(name="detect-drift", cache_policy=NO_CACHE)
def detect_drift_task(
    reference: Mapping[str, Any], current: pd.DataFrame, config: DriftConfig | None = None, **options: Any
) -> dict[str, Any]:
    """Prefect task: :func:`detect_drift` against a stored profile dict, returning a JSON-ready dict."""
    from tasks.monitoring.profiles import profile_from_dict

    return detect_drift(profile_from_dict(reference), current, config, **options).to_dict()
