"""A small, realistic platform state for the console's tests, built with the real stores.

Two models with versions, metrics and a champion; a pending promotion that
needs two approvals and a decided one; an A/B endpoint with traffic, outcomes
and a shadow, a canary mid-rollout, a blue-green endpoint after a switch;
open and resolved alerts and drift and performance checks over two weeks;
a feature group ingested, materialized and described; and the audit log all
of that wrote.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd

from blocks.policy import StagePolicy
from blocks.settings import MlopsSettings
from storage import schema as t
from storage.endpoints.store import EndpointStore, LatencyHistogram, StatsRow, VariantSpec
from storage.features.store import FeatureStore
from storage.governance.reports import ReportStore
from storage.monitoring.alerts import AlertStore
from storage.monitoring.prediction_log import PredictionLog
from storage.registry.approvals import ApprovalStore, GateOutcome
from storage.registry.core import Registry

SCRIPT_DESCRIPTION = "Card fraud scores <script>alert('x')</script> for the payments team"
ROLES = ("reader", "contributor", "reviewer", "admin")


@dataclass
class Seeded:
    """What the seed made: keys by who, the pending request's id, the open alert's id."""

    keys: dict[str, str]
    pending_request: int
    open_alert: int


def settings_for(home: Path) -> MlopsSettings:
    """Settings whose feature store and prediction log live under ``home``."""
    return MlopsSettings(home=home)


def _stats(store: EndpointStore, endpoint: str, traffic: dict[str, tuple[int, int, float]]) -> None:
    rows = []
    for variant, (requests, errors, ms) in traffic.items():
        hist = LatencyHistogram()
        hist.add(ms, requests)
        rows.append(StatsRow(endpoint, variant, "replica-1", requests, errors, ms * requests, hist.counts))
    store.flush_stats(rows)


def seed_registry(registry: Registry, keys: dict[str, str]) -> int:
    """Models and versions, a decided request and a pending one (2 approvals); returns the pending id."""
    registry.create_model(
        "fraud", description=SCRIPT_DESCRIPTION, owner="risk-team", tags={"domain": "finance"}
    )
    for auc, f1, depth in ((0.91, 0.62, 4), (0.94, 0.66, 6), (0.95, 0.69, 8)):
        registry.create_version(
            "fraud",
            framework="xgboost",
            metrics={"auc_roc": auc, "f1": f1},
            hyperparameters={"max_depth": depth},
            signature={
                "inputs": [{"name": "amount", "type": "double"}, {"name": "country", "type": "string"}]
            },
        )
    registry.create_model("churn", description="Monthly churn risk", owner="growth")
    registry.create_version("churn", framework="sklearn", metrics={"auc_roc": 0.81})
    for number in (1, 2, 3):
        registry.transition_stage("fraud", number, "staging", reason="trained")
    registry.transition_stage("fraud", 1, "production", alias="champion", reason="first release")
    approvals = ApprovalStore(registry)
    gates = [
        GateOutcome("metric auc_roc >= 0.9", True, "auc_roc 0.94 >= 0.9"),
        GateOutcome("beats the champion", True, "0.94 vs 0.91"),
    ]
    done = approvals.open_request(
        "fraud",
        2,
        "production",
        requested_by="contributor-user",
        policy=StagePolicy(required_approvals=1),
        gates=gates,
        reason="better recall",
    )
    approvals.decide(done.id, "reviewer2-user", "reject", "wait for the bias report")
    pending = approvals.open_request(
        "fraud",
        3,
        "production",
        requested_by="contributor-user",
        policy=StagePolicy(required_approvals=2, alias="champion"),
        gates=[*gates[:1], GateOutcome("beats the champion", True, "0.95 vs 0.91")],
        reason="new features",
    )
    return pending.id


def seed_endpoints(registry: Registry, log: PredictionLog) -> None:
    """An A/B endpoint with traffic, outcomes and a shadow; a canary at step 2; a blue-green switch."""
    store = EndpointStore(registry.db, actor="admin-user")
    store.create(
        "fraud-ab",
        [VariantSpec("a", "fraud", "1", 50), VariantSpec("b", "fraud", "2", 50)],
        policy="ab",
    )
    _stats(store, "fraud-ab", {"a": (1000, 4, 3.0), "b": (1010, 3, 3.4)})
    rng = random.Random(7)
    outcomes = [(f"a-{i}", "a", float(rng.random() < 0.10)) for i in range(1000)]
    outcomes += [(f"b-{i}", "b", float(rng.random() < 0.16)) for i in range(1010)]
    store.record_outcomes("fraud-ab", outcomes)
    store.set_shadow("fraud-ab", [VariantSpec("shadow-3", "fraud", "3", 0.0, "shadow")], 10.0)
    now = datetime.now(UTC)
    records = []
    for i in range(40):
        live = float(i % 2)
        records.append(_logged(f"r{i}", 1, now, "fraud-ab", "a", live))
        records.append(_logged(f"r{i}", 3, now, "fraud-ab", "shadow:fraud:3", live if i % 5 else 1 - live))
    log.append(records)

    store.create("fraud-canary", [VariantSpec("main", "fraud", "1", 100)])
    store.start_canary("fraud-canary", "fraud", "2")
    _stats(store, "fraud-canary", {"stable": (400, 2, 2.5), "canary": (25, 0, 2.7)})
    store.record_decision(
        "fraud-canary",
        "hold",
        {
            "decision": "hold",
            "reason": "canary has 15 requests, needs 20",
            "error_rate_diff": 0.0,
            "p99_ratio": None,
        },
        actor="canary-analysis",
    )
    store.advance_canary(
        "fraud-canary",
        actor="canary-analysis",
        analysis={
            "decision": "advance",
            "reason": "canary within thresholds at 5%",
            "error_rate_diff": -0.001,
            "p99_ratio": 1.04,
        },
    )

    store.create(
        "churn-bg",
        [VariantSpec("blue", "churn", "1", 100), VariantSpec("green", "churn", "1", 0)],
        policy="blue_green",
    )
    store.switch("churn-bg", actor="admin-user")


def _logged(
    request_id: str, version: int, at: datetime, endpoint: str, variant: str, value: float
) -> dict[str, object]:
    return {
        "request_id": request_id,
        "model": "fraud",
        "version": version,
        "ts": at.isoformat(),
        "features": {"amount": 10.0},
        "prediction": [value],
        "latency_ms": 2.0,
        "endpoint": endpoint,
        "variant": variant,
    }


def seed_monitoring(registry: Registry) -> int:
    """Alerts over two weeks (one still open), a drift and a performance check a day; returns the open one."""
    alerts = AlertStore(registry)
    now = datetime.now(UTC)
    old = alerts.raise_alert(
        "fraud", 1, kind="drift", severity="warning", subject="country", message="PSI 0.21"
    )
    alerts.resolve(old.id, actor="contributor-user")
    current = alerts.raise_alert(
        "fraud", 1, kind="drift", severity="critical", subject="amount", message="KS D=0.31, p<1e-9"
    )
    alerts.raise_alert(
        "churn", 1, kind="performance", severity="warning", subject="auc_roc", message="0.74 < 0.78"
    )
    a = t.alerts.c
    with registry.db.write() as conn:  # back-date them: the health chart needs a history
        conn.execute(
            t.alerts.update()
            .where(a.id == old.id)
            .values(first_seen=now - timedelta(days=12), resolved_at=now - timedelta(days=8))
        )
        conn.execute(t.alerts.update().where(a.id == current.id).values(first_seen=now - timedelta(days=3)))
    reports = ReportStore(registry)
    for day in range(14, 0, -1):
        at = now - timedelta(days=day)
        share = 0.5 if day <= 3 else (0.25 if 8 <= day <= 12 else 0.0)
        drifted = ["amount", "country"][: int(share * 4)]
        reports.save(
            "drift_check",
            "fraud",
            1,
            passed=share < 0.5,
            created_at=at,
            summary=f"{len(drifted)} of 4 columns drifted on 2000 rows",
            payload={"drift_share": share, "drifted_columns": drifted, "current_rows": 2000, "columns": []},
        )
        degraded = day <= 3
        findings = (
            [
                {
                    "kind": "degraded",
                    "severity": "warning",
                    "metric": "auc_roc",
                    "window_start": (at - timedelta(days=1)).isoformat(),
                    "window_end": at.isoformat(),
                    "reference": 0.91,
                    "observed": 0.86 - 0.01 * (3 - day),
                    "tolerance": 0.02,
                    "message": "auc_roc dropped",
                }
            ]
            if degraded
            else []
        )
        reports.save(
            "performance_check",
            "fraud",
            1,
            passed=not degraded,
            created_at=at,
            summary="auc_roc degraded" if degraded else "no degradation over 500 labelled predictions",
            payload={
                "labelled_rows": 500,
                "performance_degraded": degraded,
                "concept_drift": False,
                "findings": findings,
            },
        )
    return current.id


def seed_features(registry: Registry, settings: MlopsSettings) -> None:
    """A card-activity group: ingested, materialized to the online store, statistics computed."""
    store = FeatureStore(registry.db, settings.resolved_feature_root(), settings.resolved_online_store_url())
    try:
        store.definitions.create_entity("card", join_keys=["card_id"], owner="risk-team")
        store.definitions.create_group(
            "card_activity",
            entity="card",
            event_time_column="ts",
            ttl_seconds=86400,
            owner="risk-team",
            description="spend per card",
        )
        store.definitions.register_feature(
            "card_activity",
            "spend_24h",
            "float",
            owner="risk-team",
            description="amount spent in the last 24 h",
        )
        store.definitions.register_feature("card_activity", "country", "string", owner="risk-team")
        store.definitions.register_feature(
            "card_activity", "txn_count", "int", owner="risk-team", status="draft"
        )
        now = pd.Timestamp.now(tz="UTC").floor("s")
        rng = random.Random(3)
        frame = pd.DataFrame(
            {
                "card_id": list(range(200)),
                "ts": [now - pd.Timedelta(minutes=5 + i) for i in range(200)],
                "spend_24h": [round(rng.lognormvariate(3, 0.6), 2) for _ in range(200)],
                "country": [rng.choice(["NL", "DE", "FR", "BE"]) for _ in range(200)],
                "txn_count": [rng.randint(0, 12) for _ in range(200)],
            }
        )
        store.ingest("card_activity", frame)
        store.materialize("card_activity", end=(now + pd.Timedelta(seconds=1)).to_pydatetime())
        store.compute_statistics("card_activity", reference=True)
    finally:
        store.online.close()  # not store.close(): that would dispose the registry's database too


def seed(registry: Registry, settings: MlopsSettings, keys_store: object) -> Seeded:
    """Everything above, plus one API key per role (and a second reviewer)."""
    keys = {role: keys_store.create(f"{role}-user", role, actor="setup")[0] for role in ROLES}  # type: ignore[attr-defined]
    keys["reviewer2"] = keys_store.create("reviewer2-user", "reviewer", actor="setup")[0]  # type: ignore[attr-defined]
    pending = seed_registry(registry, keys)
    seed_endpoints(registry, PredictionLog.from_settings(settings))
    alert = seed_monitoring(registry)
    seed_features(registry, settings)
    return Seeded(keys, pending, alert)
