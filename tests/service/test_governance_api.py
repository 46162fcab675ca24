"""Governance over REST through :class:`mlops.Client`: the same answers as the local stores.

Data is made through the real stores (registry, lineage, reports,
attestations, feature store, prediction log) on the service's own database,
then read back over HTTP and compared with what the stores return locally.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import pytest

from blocks.settings import get_settings
from storage.audit import AuditLog
from storage.errors import AccessError, NotFoundError, ValidationError
from storage.features.store import FeatureStore
from storage.governance.attestations import AttestationStore
from storage.governance.erasure import get_erasure, list_erasures, verify_erased
from storage.governance.lineage import LineageStore
from storage.governance.reports import ReportStore
from storage.monitoring.prediction_log import PredictionLog
from storage.registry.core import Registry
from tasks.governance.report import governance_report, model_card
from tests.service.conftest import Service

T0 = datetime(2026, 6, 1, tzinfo=UTC)


def _json(value: Any) -> Any:
    """``value`` as the service sends it (timestamps in ISO 8601)."""
    return json.loads(json.dumps(value, default=lambda v: v.isoformat()))


def _credit(registry: Registry) -> None:
    """A model with a declared domain, a version trained on a registered dataset, and evidence."""
    registry.create_model("credit", tags={"domain": "finance", "use_case": "credit scoring"})
    registry.create_version(
        "credit",
        framework="sklearn",
        metrics={"auc": 0.91},
        dataset_uri="s3://raw/tx.parquet",
        dataset_hash="ab12",
    )
    lineage = LineageStore(registry)
    lineage.register_dataset(
        "transactions",
        uri="s3://raw/tx.parquet",
        source="core-banking",
        owner="data-eng",
        contains_pii=True,
        retention_days=365,
        transformations=["dedupe", "mask-iban"],
    )
    lineage.register_dataset(
        "tx_daily",
        uri="s3://curated/tx.parquet",
        source="transactions",
        owner="data-eng",
        contains_pii=False,
        retention_days=None,
    )
    lineage.record_usage("transactions", user_kind="dataset", user_name="tx_daily", relation="derived_from")
    reports = ReportStore(registry)
    reports.save("bias_report", "credit", 1, passed=False, summary="old", payload={"run": 1})
    reports.save("bias_report", "credit", 1, passed=True, summary="all groups within 0.1", payload={"run": 2})
    reports.save("compliance:GDPR", "credit", 1, passed=True, summary="GDPR 100%")


def test_audit_log_and_its_verification_match_the_store(service: Service) -> None:
    _credit(service.registry)
    log = AuditLog(service.registry.db)
    with service.client("reader") as client:
        assert client.audit_entries(limit=100_000) == log.entries(limit=100_000)
        filtered = client.audit_entries(entity_type="dataset", action="dataset.register")
        assert filtered == log.entries(entity_type="dataset", action="dataset.register")
        assert [e.entity_id for e in filtered] == ["transactions", "tx_daily"]
        after = client.audit_entries(after_seq=filtered[0].seq, limit=2)
        assert after == log.entries(after_seq=filtered[0].seq, limit=2) and len(after) == 2
        assert client.verify_audit() == log.verify() and client.verify_audit().ok
        with pytest.raises(ValidationError, match="limit"):
            client.audit_entries(limit=0)


def test_lineage_matches_the_lineage_store(service: Service) -> None:
    _credit(service.registry)
    lineage = LineageStore(service.registry)
    with service.client("reader") as client:
        assert client.datasets() == lineage.list_datasets()
        assert client.dataset("transactions") == lineage.get_dataset("transactions")
        found = client.dataset_lineage("transactions")
        assert found == _json(lineage.dataset_lineage("transactions"))
        assert found["model_versions"] == [{"name": "credit/1", "relation": "dataset_uri"}]
        assert found["downstream"] == [{"name": "tx_daily", "relation": "derived_from"}]
        model = client.model_lineage("credit")
        assert model == _json(lineage.model_lineage("credit"))
        assert [d["name"] for d in model["versions"][0]["datasets"]] == ["transactions"]
        with pytest.raises(NotFoundError, match="dataset 'nope' is not registered"):
            client.dataset("nope")
        with pytest.raises(NotFoundError, match="nope"):
            client.model_lineage("nope")


def test_stored_reports_governance_report_and_model_card(service: Service) -> None:
    _credit(service.registry)
    reports = ReportStore(service.registry)
    with service.client("reader") as client:
        bias = client.report("bias_report", "credit", 1)
        assert bias == reports.latest("bias_report", "credit", 1)
        assert (bias.passed, bias.payload) == (True, {"run": 2})  # the newest one
        assert client.report("compliance:GDPR", "credit", "latest") == reports.latest(
            "compliance:GDPR", "credit", 1
        )
        with pytest.raises(NotFoundError, match="no 'drift_check' report is stored for credit version 1"):
            client.report("drift_check", "credit", 1)
        with pytest.raises(NotFoundError, match="version 7"):
            client.report("bias_report", "credit", 7)
        remote = client.governance_report("credit", 1, frameworks=["GDPR"])
        local = governance_report(service.registry, "credit", 1, frameworks=["GDPR"])
        assert remote == _json(local)
        assert remote["risk"]["level"] == "high" and remote["bias"]["summary"] == "all groups within 0.1"
        assert [f["framework"] for f in remote["compliance"]] == ["GDPR"]
        card = client.model_card("credit", 1, frameworks=["GDPR"])
        assert card == model_card(local)
        assert card.startswith("# Model card: credit version 1") and "transactions: core-banking" in card
        with pytest.raises(NotFoundError, match="compliance framework 'NOPE' is unknown"):
            client.governance_report("credit", 1, frameworks=["NOPE"])


def test_attestations_match_the_store(service: Service) -> None:
    service.registry.create_model("credit")
    store = AttestationStore(service.registry)
    store.attest("GDPR", "gdpr-art35-dpia", attested_by="Dana", statement="DPIA done", expires_in_days=30)
    store.attest(
        "HIPAA", "hipaa-baa", attested_by="Lee", statement="BAAs signed", expires_in_days=1e-9, model="credit"
    )  # expired at once
    with service.client("reader") as client:
        assert client.attestations() == store.list()
        assert [a.framework for a in client.attestations()] == ["GDPR"]
        everything = client.attestations(include_expired=True)
        assert everything == store.list(include_expired=True) and len(everything) == 2
        assert (
            client.attestations(framework="HIPAA", model="credit", include_expired=True)[0].model == "credit"
        )


@pytest.fixture
def stores(service: Service) -> Iterator[tuple[FeatureStore, PredictionLog]]:
    """Card features (offline and online) and a prediction log, where the service's settings point."""
    settings = get_settings()
    store = FeatureStore(
        service.registry.db,
        settings.resolved_feature_root(),
        settings.resolved_online_store_url(),
        actor="tester",
    )
    d = store.definitions
    d.create_entity("card", join_keys=["card_id"])
    d.create_group("card_stats", entity="card", event_time_column="ts")
    d.register_feature("card_stats", "spend", "float")
    days = pd.to_datetime(["2026-05-30", "2026-05-31", "2026-05-31"], utc=True)
    store.ingest("card_stats", pd.DataFrame({"card_id": [1, 1, 2], "ts": days, "spend": [1.0, 2.0, 3.0]}))
    store.materialize("card_stats", end=T0)
    log = PredictionLog.from_settings(settings)
    log.append(
        [
            {"request_id": f"r{i}", "model": "fraud", "version": 1, "ts": T0, "prediction": 0.5,
             "entity_key": {"card_id": card}}
            for i, card in enumerate([1, 2, 1])
        ]
    )  # fmt: skip
    try:
        yield store, log
    finally:
        store.close()


def test_erasure_runs_on_the_service_and_is_recorded(
    service: Service, stores: tuple[FeatureStore, PredictionLog]
) -> None:
    store, log = stores
    with service.client("contributor") as contributor, pytest.raises(AccessError, match="may not admin"):
        contributor.erase({"card_id": 1}, reason="DSR-1")
    assert verify_erased({"card_id": 1}, store=store, log=log)["prediction_log"] == 2  # nothing happened
    with service.client("admin") as admin:
        result = admin.erase({"card_id": 1}, reason="DSR-2026-114")
        assert result.verified and result.requested_by == "admin-user"
        assert result.removed == {"offline:card_stats": 2, "online:card_stats": 1, "prediction_log": 2}
        again = admin.erase({"card_id": "1"}, reason="DSR-2026-114 rerun")  # safe to rerun
        assert again.verified and not any(again.removed.values())
        with pytest.raises(ValidationError, match="not a valid identifier"):
            admin.erase({"card id": 1}, reason="bad key")
        with pytest.raises(ValidationError, match="reason"):
            admin.erase({"card_id": 1}, reason="")
    assert verify_erased({"card_id": 1}, store=store, log=log) == {
        "offline:card_stats": 0,
        "online:card_stats": 0,
        "prediction_log": 0,
    }
    assert verify_erased({"card_id": 2}, store=store, log=log)["offline:card_stats"] == 1  # others kept
    entry = AuditLog(service.registry.db).entries(action="entity.erase")[0]
    assert entry.actor == "admin-user" and "card_id" not in json.dumps(entry.to_dict())
    with service.client("reader") as reader:
        assert reader.erasures() == list_erasures(store)
        assert [e.id for e in reader.erasures(limit=1)] == [again.id]
        assert reader.erasure(result.id) == get_erasure(store, result.id) == result
        with pytest.raises(NotFoundError, match="erasure 999 does not exist"):
            reader.erasure(999)
