"""What monitoring reads and writes: the prediction log, ground truth and alerts.

The prediction log (one Parquet row per prediction served), delayed ground
truth joined to it by request id, alerts with de-duplication, resolution and
the health score (``health`` gathers its inputs), and the alert routes with
their notification log (``routes``).

Names are imported on first use, so importing the package stays cheap and no
import circle runs through it.

Example:
    >>> import storage.monitoring
    >>> 'PredictionLog' in storage.monitoring.__all__
    True
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from storage.monitoring.alerts import Alert, AlertStore, HealthScore, health_breakdown, health_score
    from storage.monitoring.ground_truth import GroundTruthLog, read_labels
    from storage.monitoring.health import model_health
    from storage.monitoring.prediction_log import PredictionLog
    from storage.monitoring.routes import AlertRoute, AlertRouteStore, Notification

_EXPORTS = {
    "PredictionLog": "storage.monitoring.prediction_log",
    "GroundTruthLog": "storage.monitoring.ground_truth",
    "read_labels": "storage.monitoring.ground_truth",
    "Alert": "storage.monitoring.alerts",
    "AlertStore": "storage.monitoring.alerts",
    "health_score": "storage.monitoring.alerts",
    "health_breakdown": "storage.monitoring.alerts",
    "HealthScore": "storage.monitoring.alerts",
    "model_health": "storage.monitoring.health",
    "AlertRoute": "storage.monitoring.routes",
    "AlertRouteStore": "storage.monitoring.routes",
    "Notification": "storage.monitoring.routes",
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
