"""Multi-objective tuning: several objectives at once, the Pareto front, and a declared choice.

With ``tuning_objectives: [auc_roc, latency_ms]`` the Optuna study has one
direction per objective (``latency_ms`` and error metrics are minimized, the
others maximized). Each trial cross-validates its configuration for every
metric objective and measures ``latency_ms``: the median time of the fitted
pipeline's ``predict`` on one row, over ``LATENCY_ROWS`` rows of the last fold
(what a served request pays natively). Pruning does not apply (Optuna cannot
prune multi-objective trials).

The Pareto front is Optuna's ``study.best_trials``: the completed trials no
other trial beats on every objective. The chosen trial follows one declared
rule (:func:`selection_rule`): **the best trial on the first objective among
the Pareto-front trials that meet every bound in** ``tuning_constraints``
(an upper bound for minimized objectives, a lower bound for the others); when
none meets them, the front trial with the smallest total relative excess over
the bounds, and the summary says so. Ties go to the lower trial number.

Example:
    >>> directions(["auc_roc", "latency_ms"])
    ['maximize', 'minimize']
    >>> front = [{"trial": 0, "auc_roc": 0.95, "latency_ms": 9.0},
    ...          {"trial": 3, "auc_roc": 0.93, "latency_ms": 1.5},
    ...          {"trial": 5, "auc_roc": 0.90, "latency_ms": 0.8}]
    >>> choose_trial(front, ["auc_roc", "latency_ms"], {"latency_ms": 2.0})
    ({'trial': 3, 'auc_roc': 0.93, 'latency_ms': 1.5}, True)
    >>> selection_rule(["auc_roc", "latency_ms"], {"latency_ms": 2.0})
    'best auc_roc among the Pareto-front trials with latency_ms <= 2'
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import optuna
import pandas as pd

from blocks.pipeline import LATENCY_OBJECTIVE
from tasks.training.fit import TrainingSpec, cv_splitter, evaluate, fit_pipeline, is_minimized

__all__ = [
    "LATENCY_ROWS",
    "choose_trial",
    "directions",
    "dominates",
    "multi_objective_scores",
    "pareto_rows",
    "selection_rule",
    "single_row_latency_ms",
]

#: Rows whose single-row predict time gives ``latency_ms`` (their median).
LATENCY_ROWS = 25


Direction = Literal["minimize", "maximize"]


def directions(objectives: Sequence[str]) -> list[Direction]:
    """Optuna's direction per objective."""
    return ["minimize" if o == LATENCY_OBJECTIVE or is_minimized(o) else "maximize" for o in objectives]


def single_row_latency_ms(pipeline: Any, X: pd.DataFrame, rows: int = LATENCY_ROWS) -> float:
    """Median milliseconds of ``predict`` on one row, over the first ``rows`` rows of ``X``."""
    times = []
    for i in range(min(rows, len(X))):
        row = X.iloc[[i]]
        start = time.perf_counter()
        pipeline.predict(row)
        times.append((time.perf_counter() - start) * 1000.0)
    return float(np.median(times)) if times else 0.0


def multi_objective_scores(
    params: Mapping[str, Any],
    spec: TrainingSpec,
    X: pd.DataFrame,
    y: np.ndarray,
    objectives: Sequence[str],
    folds: int,
) -> tuple[float, ...]:
    """Every objective of one configuration: cross-validated metrics and ``latency_ms``."""
    metrics = [o for o in objectives if o != LATENCY_OBJECTIVE]
    scores: dict[str, list[float]] = {m: [] for m in metrics}
    fitted, test_rows = None, X.iloc[:0]
    for tr, te in cv_splitter(spec.task, folds, spec.seed).split(X, y):
        fitted, test_rows = fit_pipeline(spec, params, X.iloc[tr], y[tr]), X.iloc[te]
        found = evaluate(fitted, test_rows, y[te], spec.task, metrics)
        for m in metrics:
            scores[m].append(found[m])
    values = {m: float(np.mean(v)) for m, v in scores.items()}
    if LATENCY_OBJECTIVE in objectives:
        values[LATENCY_OBJECTIVE] = single_row_latency_ms(fitted, test_rows)
    return tuple(values[o] for o in objectives)


def dominates(a: Sequence[float], b: Sequence[float], dirs: Sequence[str]) -> bool:
    """Whether ``a`` is at least as good as ``b`` on every objective and better on one."""
    signs = [1.0 if d == "maximize" else -1.0 for d in dirs]
    at_least = all(s * x >= s * z for s, x, z in zip(signs, a, b, strict=True))
    better = any(s * x > s * z for s, x, z in zip(signs, a, b, strict=True))
    return at_least and better


def _meets(value: float, bound: float, objective: str) -> bool:
    return value <= bound if directions([objective])[0] == "minimize" else value >= bound


def _excess(row: Mapping[str, Any], constraints: Mapping[str, float]) -> float:
    total = 0.0
    for objective, bound in constraints.items():
        value = float(row[objective])
        if not _meets(value, bound, objective):
            total += abs(value - bound) / (abs(bound) or 1.0)
    return total


def choose_trial(
    front: Sequence[Mapping[str, Any]], objectives: Sequence[str], constraints: Mapping[str, float]
) -> tuple[Mapping[str, Any], bool]:
    """The chosen front trial by the declared rule, and whether it meets every constraint."""
    if not front:
        raise ValueError("the Pareto front is empty: no trial completed")
    first = objectives[0]
    sign = 1.0 if directions([first])[0] == "maximize" else -1.0
    within = [r for r in front if all(_meets(float(r[o]), b, o) for o, b in constraints.items())]
    if within:
        return min(within, key=lambda r: (-sign * float(r[first]), int(r["trial"]))), True
    return min(
        front, key=lambda r: (_excess(r, constraints), -sign * float(r[first]), int(r["trial"]))
    ), False


def selection_rule(objectives: Sequence[str], constraints: Mapping[str, float]) -> str:
    """The declared rule in words."""
    bounds = [
        f"{o} {'<=' if directions([o])[0] == 'minimize' else '>='} {b:g}" for o, b in constraints.items()
    ]
    where = f" with {' and '.join(bounds)}" if bounds else ""
    return f"best {objectives[0]} among the Pareto-front trials{where}"


def pareto_rows(study: optuna.Study, objectives: Sequence[str]) -> list[dict[str, Any]]:
    """The Pareto front (Optuna's ``best_trials``) as table rows: trial, objectives, parameters."""
    return [
        {
            "trial": t.number,
            **{o: round(float(v), 6) for o, v in zip(objectives, t.values or [], strict=True)},
            **dict(t.params),
        }
        for t in sorted(study.best_trials, key=lambda t: t.number)
    ]
