"""Monitoring the champion: its reference profile, a day of traffic, a drift check, alerts.

Runs after the earlier walk-throughs (``make demo`` runs all). The champion's
reference profile is built from its training data and stored with the
version; served traffic is simulated into the prediction log with one
feature drifting (a scanner recalibration that enlarges ``mean radius``); the
``check-drift`` flow finds it, records the evidence and raises alerts.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sklearn.datasets import load_breast_cancer

from flows.monitoring import check_drift
from storage.monitoring.alerts import AlertStore, health_score
from storage.monitoring.prediction_log import PredictionLog
from storage.registry.core import Registry
from tasks.monitoring.profiles import build_profile
from tasks.monitoring.steps import store_reference_profile

MODEL = "breast-cancer"


def traffic(rows: int = 2_000, seed: int = 3) -> list[dict[str, Any]]:
    """Logged requests over the last hour, ``mean radius`` scaled up by 15%."""
    frame = load_breast_cancer(as_frame=True).data.sample(rows, replace=True, random_state=seed)
    frame["mean radius"] = frame["mean radius"] * 1.15
    now = datetime.now(UTC)
    return [
        {
            "request_id": uuid.uuid4().hex,
            "model": MODEL,
            "version": 0,  # set by main()
            "ts": now - timedelta(minutes=50) + timedelta(seconds=i),
            "features": json.dumps(row),
            "prediction": "1",
            "latency_ms": 3.5,
            "status": "ok",
        }
        for i, row in enumerate(frame.to_dict("records"))
    ]


def main() -> dict[str, Any]:
    """Profile, simulate traffic, check drift, show alerts and the health score."""
    registry = Registry.from_settings()
    champion = registry.get_version(MODEL, "@champion")
    store_reference_profile(
        registry, MODEL, champion.number, build_profile(load_breast_cancer(as_frame=True).data)
    )
    PredictionLog.from_settings().append([r | {"version": champion.number} for r in traffic()])
    result = check_drift(MODEL, str(champion.number), window_hours=1)
    alerts = AlertStore(registry).open_alerts(MODEL)
    print(
        f"drift check of version {champion.number} on {result['rows']} requests: "
        f"drifted {result['drifted_columns']}, dataset drift {result['dataset_drift']}"
    )
    print(f"open alerts: {[(a.severity, a.subject, a.count) for a in alerts]}")
    print(f"health score: {health_score(alerts):.0f}")
    if "mean radius" not in result["drifted_columns"]:
        raise SystemExit("monitoring walk-through failed: the planted drift was not found")
    return result


if __name__ == "__main__":
    main()
