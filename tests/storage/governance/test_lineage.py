"""Data lineage on SQLite and PostgreSQL: datasets, usage, version and model lineage."""

from __future__ import annotations

import pytest

from blocks.policy import StagePolicy
from storage.audit import AuditLog
from storage.errors import AlreadyExistsError, NotFoundError, ValidationError
from storage.features.definitions import FeatureDefinitions
from storage.governance.lineage import DataAsset, LineageStore
from storage.registry.approvals import ApprovalStore
from storage.registry.core import Registry


@pytest.fixture
def lineage(registry: Registry) -> LineageStore:
    store = LineageStore(registry)
    store.register_dataset(
        "transactions",
        uri="s3://raw/tx.parquet",
        source="core-banking",
        owner="data-eng",
        contains_pii=True,
        retention_days=365,
        transformations=["dedupe", "mask-pan"],
        description="card transactions",
    )
    store.register_dataset(
        "merchants", uri="s3://raw/merchants.csv", source="crm", owner="ops", contains_pii=False,
        retention_days=None,
    )  # fmt: skip
    return store


def test_register_round_trip_listing_and_audit(lineage: LineageStore) -> None:
    tx = lineage.get_dataset("transactions")
    assert isinstance(tx, DataAsset)
    assert (tx.uri, tx.source, tx.owner, tx.contains_pii, tx.retention_days) == (
        "s3://raw/tx.parquet",
        "core-banking",
        "data-eng",
        True,
        365,
    )
    assert tx.transformations == ("dedupe", "mask-pan") and tx.created_by == "tester"
    as_dict = tx.to_dict()
    assert as_dict["transformations"] == ["dedupe", "mask-pan"] and isinstance(as_dict["created_at"], str)
    assert [d.name for d in lineage.list_datasets()] == ["merchants", "transactions"]
    assert lineage.get_dataset("merchants").retention_days is None
    entries = AuditLog(lineage.db).entries(action="dataset.register")
    assert [e.entity_id for e in entries] == ["transactions", "merchants"]
    assert entries[0].after["contains_pii"] is True and entries[0].actor == "tester"
    assert AuditLog(lineage.db).verify().ok


def test_bad_input_names_the_field(lineage: LineageStore) -> None:
    ok = {"uri": "file:///x", "source": "s", "owner": "o", "contains_pii": False, "retention_days": 30}
    with pytest.raises(AlreadyExistsError, match="'transactions'"):
        lineage.register_dataset("transactions", **ok)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="dataset name 'bad name'"):
        lineage.register_dataset("bad name", **ok)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="retention_days 0"):
        lineage.register_dataset("x", **{**ok, "retention_days": 0})  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="contains_pii 'yes'"):
        lineage.register_dataset("x", **{**ok, "contains_pii": "yes"})  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="owner ''"):
        lineage.register_dataset("x", **{**ok, "owner": ""})  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="transformations 'dedupe'"):
        lineage.register_dataset("x", **ok, transformations="dedupe")  # type: ignore[arg-type]
    with pytest.raises(NotFoundError, match="dataset 'nope'"):
        lineage.get_dataset("nope")
    with pytest.raises(NotFoundError, match="dataset 'nope'"):
        lineage.record_usage("nope", user_kind="dataset", user_name="x")
    with pytest.raises(ValidationError, match="user_kind 'team'"):
        lineage.record_usage("transactions", user_kind="team", user_name="x")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="'fraud' must be named 'model/number'"):
        lineage.record_usage("transactions", user_kind="model_version", user_name="fraud")
    with pytest.raises(NotFoundError, match="model 'fraud' does not exist"):
        lineage.record_usage("transactions", user_kind="model_version", user_name="fraud/1")
    with pytest.raises(NotFoundError, match="feature group 'card_stats' does not exist"):
        lineage.record_usage("transactions", user_kind="feature_group", user_name="card_stats")
    with pytest.raises(NotFoundError, match="dataset 'derived'"):
        lineage.record_usage("transactions", user_kind="dataset", user_name="derived")
    assert [d.name for d in lineage.list_datasets()] == ["merchants", "transactions"]


def test_version_datasets_come_from_usage_and_the_training_uri(lineage: LineageStore) -> None:
    reg = lineage.registry
    reg.create_model("fraud")
    reg.create_version("fraud", framework="sklearn")
    reg.create_version("fraud", framework="sklearn", dataset_uri="s3://raw/tx.parquet", dataset_hash="abc")
    assert lineage.datasets_for_version("fraud", 1) == []
    assert [d.name for d in lineage.datasets_for_version("fraud", 2)] == ["transactions"]
    lineage.record_usage("merchants", user_kind="model_version", user_name="fraud/1")
    lineage.record_usage("merchants", user_kind="model_version", user_name="fraud/1")  # idempotent
    lineage.record_usage("transactions", user_kind="model_version", user_name="fraud/2")  # also by uri
    assert [d.name for d in lineage.datasets_for_version("fraud", "latest")] == ["transactions"]
    assert [d.name for d in lineage.datasets_for_version("fraud", 1)] == ["merchants"]
    assert len(AuditLog(lineage.db).entries(action="dataset.usage")) == 2
    with pytest.raises(NotFoundError, match="no version 9"):
        lineage.datasets_for_version("fraud", 9)


def test_dataset_lineage_lists_users_and_neighbours(lineage: LineageStore) -> None:
    reg = lineage.registry
    reg.create_model("fraud")
    reg.create_version("fraud", framework="sklearn", dataset_uri="s3://raw/tx.parquet", dataset_hash="h")
    reg.create_version("fraud", framework="sklearn")
    lineage.register_dataset(
        "tx_features",
        uri="file:///f",
        source="transactions",
        owner="ml",
        contains_pii=False,
        retention_days=90,
    )
    lineage.record_usage(
        "transactions", user_kind="dataset", user_name="tx_features", relation="derived_from"
    )
    defs = FeatureDefinitions(reg.db, actor="tester")
    defs.create_entity("card", join_keys=["card_id"])
    defs.create_group("card_stats", entity="card", event_time_column="ts")
    lineage.record_usage(
        "transactions", user_kind="feature_group", user_name="card_stats", relation="source_of"
    )
    lineage.record_usage("transactions", user_kind="model_version", user_name="fraud/2")
    found = lineage.dataset_lineage("transactions")
    assert found["dataset"]["name"] == "transactions" and found["dataset"]["contains_pii"] is True
    assert found["feature_groups"] == [{"name": "card_stats", "relation": "source_of"}]
    assert found["model_versions"] == [
        {"name": "fraud/2", "relation": "trained_on"},
        {"name": "fraud/1", "relation": "dataset_uri"},
    ]
    assert found["downstream"] == [{"name": "tx_features", "relation": "derived_from"}]
    assert lineage.dataset_lineage("tx_features")["upstream"] == [
        {"name": "transactions", "relation": "derived_from"}
    ]
    assert lineage.dataset_lineage("merchants")["model_versions"] == []


def test_model_lineage_joins_datasets_features_run_and_approvals(lineage: LineageStore) -> None:
    reg = lineage.registry
    reg.create_model("fraud")
    reg.create_version(
        "fraud",
        framework="sklearn",
        dataset_uri="s3://raw/tx.parquet",
        dataset_hash="h",
        flow_run_id="run-1",
        code_version="abc123",
    )
    reg.create_version("fraud", framework="sklearn")
    reg.transition_stage("fraud", 1, "staging")
    defs = FeatureDefinitions(reg.db, actor="tester")
    defs.create_entity("card", join_keys=["card_id"])
    defs.create_group("card_stats", entity="card", event_time_column="ts")
    defs.register_feature("card_stats", "spend_7d", "float")
    defs.record_usage(["card_stats:*"], model="fraud", version=1)
    approvals = ApprovalStore(reg)
    req = approvals.open_request(
        "fraud", 1, "production", requested_by="ana", policy=StagePolicy(required_approvals=1), gates=[]
    )
    approvals.decide(req.id, "bo", "approve")
    approvals.apply(req.id, actor="ana")
    reg.set_alias("fraud", "champion", 1)
    found = lineage.model_lineage("fraud")
    assert found["model"] == "fraud" and [v["number"] for v in found["versions"]] == [1, 2]
    v1, v2 = found["versions"]
    assert v1["stage"] == "production" and "champion" in v1["aliases"]
    assert v1["datasets"] == [
        {
            "name": "transactions",
            "uri": "s3://raw/tx.parquet",
            "source": "core-banking",
            "owner": "data-eng",
            "contains_pii": True,
            "retention_days": 365,
            "transformations": ["dedupe", "mask-pan"],
        }
    ]
    assert v1["feature_groups"] == [{"group": "card_stats", "features": ["card_stats:spend_7d@1"]}]
    assert v1["run"] == {"flow_run_id": "run-1", "code_version": "abc123"}
    assert [(a["target_stage"], a["status"], a["approved_by"]) for a in v1["approvals"]] == [
        ("production", "promoted", ["bo"])
    ]
    assert v2["datasets"] == [] and v2["feature_groups"] == [] and v2["approvals"] == []
    with pytest.raises(NotFoundError, match="model 'nope'"):
        lineage.model_lineage("nope")
