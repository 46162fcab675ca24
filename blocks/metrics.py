"""Metric names: the canonical ones the platform computes, and the spellings accepted for them.

The training pipeline reports ``accuracy precision recall f1 auc_roc`` for
classifiers and ``rmse mae r2`` for regressors. People (and the seed) also
write scikit-learn's function names or other common spellings: ``f1_score``,
``roc_auc``, ``auc``, ``accuracy_score``, ``mean_absolute_error`` ... Each such
alias means its canonical metric wherever a metric is named: the pipeline
config (``metrics``, ``tuning_metric``), promotion gates and version
comparison.

Example:
    >>> canonical_metric("f1_score"), canonical_metric("ROC_AUC"), canonical_metric("rmse")
    ('f1', 'auc_roc', 'rmse')
    >>> metric_value({"auc": 0.91}, "auc_roc"), metric_value({"auc_roc": 0.9}, "roc_auc")
    (0.91, 0.9)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

CLASSIFICATION_METRICS = ("accuracy", "precision", "recall", "f1", "auc_roc")
REGRESSION_METRICS = ("rmse", "mae", "r2")
#: Metrics where smaller is better (tuning minimizes them).
MINIMIZED_METRICS = ("rmse", "mae")

#: Other spellings → the canonical name.
METRIC_ALIASES: dict[str, str] = {
    "accuracy_score": "accuracy",
    "acc": "accuracy",
    "precision_score": "precision",
    "recall_score": "recall",
    "sensitivity": "recall",
    "f1_score": "f1",
    "f1score": "f1",
    "f1-score": "f1",
    "roc_auc": "auc_roc",
    "roc_auc_score": "auc_roc",
    "rocauc": "auc_roc",
    "auc": "auc_roc",
    "auroc": "auc_roc",
    "root_mean_squared_error": "rmse",
    "mean_absolute_error": "mae",
    "r2_score": "r2",
    "r_squared": "r2",
}


def canonical_metric(name: str) -> str:
    """The canonical name of ``name`` (itself when it is canonical or unknown); case-insensitive.

    >>> canonical_metric("Accuracy_Score"), canonical_metric("custom_lift")
    ('accuracy', 'custom_lift')
    """
    key = name.strip().lower()
    if key in CLASSIFICATION_METRICS or key in REGRESSION_METRICS:
        return key
    return METRIC_ALIASES.get(key, name)


def spellings(name: str) -> list[str]:
    """Every name that means the same metric as ``name``: itself first, then the canonical, then aliases.

    >>> spellings("f1")
    ['f1', 'f1_score', 'f1score', 'f1-score']
    """
    canon = canonical_metric(name)
    out = [name]
    for candidate in (canon, *[a for a, c in METRIC_ALIASES.items() if c == canon]):
        if candidate not in out:
            out.append(candidate)
    return out


def metric_value(metrics: Mapping[str, Any], name: str) -> Any:
    """``metrics[name]``, else the value under another spelling of the same metric (None when absent)."""
    for candidate in spellings(name):
        if candidate in metrics:
            return metrics[candidate]
    return None


def known_metric(name: str) -> str:
    """The canonical name of a metric the pipeline computes; ValueError naming the choices otherwise.

    >>> known_metric("roc_auc")
    'auc_roc'
    """
    canon = canonical_metric(name)
    known = (*CLASSIFICATION_METRICS, *REGRESSION_METRICS)
    if canon not in known:
        aliases = ", ".join(sorted(METRIC_ALIASES))
        raise ValueError(f"unknown metric {name!r}; use one of {', '.join(known)} (or an alias: {aliases})")
    return canon
