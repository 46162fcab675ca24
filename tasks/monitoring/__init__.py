"""Monitoring: reference profiles, drift, performance, concept drift, explanations, reports.

Reference profiles of training data, drift tests against them (``drift``,
``drift_stats``), data quality against them (``quality``), alert
notifications through Prefect blocks (``notify``, ``alerting``),
operational metrics and performance from delayed labels,
label and concept drift over time (``streaming``), SHAP/LIME explanations, the
checks the monitoring flows run (``steps``) and the monitoring report.

Names are imported on first use, so importing the package stays cheap and no
import circle runs through it.

Example:
    >>> import tasks.monitoring
    >>> 'detect_drift' in tasks.monitoring.__all__
    True
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tasks.monitoring.drift import DatasetDrift, DriftConfig, detect_drift
    from tasks.monitoring.explain import explain_prediction, global_importance, make_explainer
    from tasks.monitoring.notify import notify_alerts, send_test
    from tasks.monitoring.performance import operational_metrics, windowed_performance
    from tasks.monitoring.profiles import ReferenceProfile, build_profile
    from tasks.monitoring.quality import check_quality
    from tasks.monitoring.report import monitoring_report
    from tasks.monitoring.steps import run_drift_check, run_performance_check
    from tasks.monitoring.streaming import PageHinkley, concept_drift, label_drift

_EXPORTS = {
    "detect_drift": "tasks.monitoring.drift",
    "DriftConfig": "tasks.monitoring.drift",
    "DatasetDrift": "tasks.monitoring.drift",
    "build_profile": "tasks.monitoring.profiles",
    "ReferenceProfile": "tasks.monitoring.profiles",
    "operational_metrics": "tasks.monitoring.performance",
    "windowed_performance": "tasks.monitoring.performance",
    "label_drift": "tasks.monitoring.streaming",
    "concept_drift": "tasks.monitoring.streaming",
    "PageHinkley": "tasks.monitoring.streaming",
    "make_explainer": "tasks.monitoring.explain",
    "explain_prediction": "tasks.monitoring.explain",
    "global_importance": "tasks.monitoring.explain",
    "run_drift_check": "tasks.monitoring.steps",
    "run_performance_check": "tasks.monitoring.steps",
    "monitoring_report": "tasks.monitoring.report",
    "check_quality": "tasks.monitoring.quality",
    "notify_alerts": "tasks.monitoring.notify",
    "send_test": "tasks.monitoring.notify",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
