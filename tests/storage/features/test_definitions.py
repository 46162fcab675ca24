"""Feature definitions on SQLite and PostgreSQL: entities, groups, versions, lifecycle, lineage."""

from __future__ import annotations

import warnings

import pytest
import sqlalchemy as sa

from storage.audit import AuditLog
from storage.db import Database
from storage.errors import AlreadyExistsError, NotFoundError, TransitionError, ValidationError
from storage.features.definitions import FeatureDefinitions, FeatureDeprecatedWarning, parse_ref
from storage.schema import feature_entities, feature_groups, features


@pytest.fixture
def defs(db: Database) -> FeatureDefinitions:
    d = FeatureDefinitions(db, actor="tester")
    d.create_entity("driver", join_keys=["driver_id"], owner="ops")
    d.create_group(
        "trips",
        entity="driver",
        event_time_column="ts",
        available_time_column="loaded_at",
        ttl_seconds=3600,
        source="s3://lake/trips",
        owner="ops",
        tags={"team": "ops"},
    )
    return d


def _counts(db: Database) -> tuple[int, int, int]:
    with db.read() as conn:
        return tuple(  # type: ignore[return-value]
            conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
            for t in (feature_entities, feature_groups, features)
        )


def test_group_round_trip_and_listing(defs: FeatureDefinitions) -> None:
    group = defs.get_group("trips")
    assert group.join_keys == ("driver_id",)
    assert (group.event_time_column, group.available_time_column, group.ttl_seconds) == (
        "ts",
        "loaded_at",
        3600,
    )
    assert group.tags == {"team": "ops"}
    assert [g.name for g in defs.list_groups()] == ["trips"]
    with pytest.raises(AlreadyExistsError, match="trips"):
        defs.create_group("trips", entity="driver", event_time_column="ts")
    with pytest.raises(NotFoundError, match="'rider'"):
        defs.create_group("rides", entity="rider", event_time_column="ts")


def test_type_change_creates_a_new_version_and_metadata_change_does_not(defs: FeatureDefinitions) -> None:
    v1 = defs.register_feature("trips", "fare", "float", owner="ana", tags={"pii": "no"})
    same = defs.register_feature("trips", "fare", "float", description="fare in EUR", owner="bob")
    v2 = defs.register_feature("trips", "fare", "int")
    assert (v1.version, same.version, v2.version) == (1, 1, 2)
    assert (v1.column, v2.column) == ("fare", "fare__v2")
    versions = defs.list_features("trips", all_versions=True)
    assert [(f.version, f.dtype, f.owner) for f in versions] == [(1, "float", "bob"), (2, "int", None)]
    assert [f.ref for f in defs.list_features("trips")] == ["trips:fare@2"]
    assert [f.ref for f in defs.resolve(["trips:fare", "trips:fare@1", "trips:*"])] == [
        "trips:fare@2",
        "trips:fare@1",
    ]


def test_lifecycle_is_enforced_and_archived_features_do_not_read(defs: FeatureDefinitions) -> None:
    defs.register_feature("trips", "rating", "int", status="draft")
    with pytest.raises(TransitionError, match="draft to deprecated"):
        defs.transition("trips:rating", "deprecated")
    defs.transition("trips:rating", "active")
    defs.transition("trips:rating", "deprecated", reason="replaced by rating_v2")
    with pytest.warns(FeatureDeprecatedWarning, match="trips:rating@1"):
        defs.resolve(["trips:rating"])
    defs.transition("trips:rating", "archived")
    with pytest.raises(ValidationError, match="archived"):
        defs.resolve(["trips:rating"])
    with pytest.raises(TransitionError, match="archived to active"):
        defs.transition("trips:rating", "active")
    assert defs.resolve(["trips:*"]) == []  # archived features leave the wildcard
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert defs.resolve(["trips:rating"], allow_archived=True)[0].status == "archived"


def test_every_change_is_audited(db: Database, defs: FeatureDefinitions) -> None:
    defs.register_feature("trips", "fare", "float")
    defs.transition("trips:fare", "deprecated")
    actions = [e.action for e in AuditLog(db).entries(limit=100)]
    assert actions == [
        "feature_entity.create",
        "feature_group.create",
        "feature.create",
        "feature.transition",
    ]
    assert AuditLog(db).verify().ok


@pytest.mark.parametrize(
    "bad", ["x; DROP TABLE features", "fare'--", "1fare", "", "a" * 64, 'Robert"); DROP TABLE', "date"]
)
def test_malicious_and_invalid_names_are_rejected_and_store_nothing(
    db: Database, defs: FeatureDefinitions, bad: str
) -> None:
    before = _counts(db)
    with pytest.raises(ValidationError):
        defs.register_feature("trips", bad, "float")
    with pytest.raises(ValidationError):
        defs.create_group(bad, entity="driver", event_time_column="ts")
    with pytest.raises(ValidationError):
        defs.create_entity(bad, join_keys=["id"])
    with pytest.raises(ValidationError):
        defs.create_entity("rider", join_keys=[bad])
    with pytest.raises((ValidationError, NotFoundError)):
        defs.resolve([f"trips:{bad}"])
    assert _counts(db) == before


def test_unknown_things_and_bad_types_are_named(defs: FeatureDefinitions) -> None:
    with pytest.raises(NotFoundError, match="trips:nope"):
        defs.resolve(["trips:nope"])
    with pytest.raises(NotFoundError, match="'nogroup'"):
        defs.resolve(["nogroup:fare"])
    with pytest.raises(ValidationError, match="decimal"):
        defs.register_feature("trips", "fare", "decimal")
    with pytest.raises(ValidationError, match="collides"):
        defs.register_feature("trips", "driver_id", "int")
    with pytest.raises(ValidationError, match="malformed"):
        parse_ref("fare")


def test_usage_lineage_runs_from_source_to_models(defs: FeatureDefinitions) -> None:
    defs.register_feature("trips", "fare", "float")
    defs.register_feature("trips", "rating", "int")
    refs = defs.record_usage(["trips:*"], model="eta", version=3, flow_run_id="run-1")
    assert refs == ["trips:fare@1", "trips:rating@1"]
    defs.record_usage(refs, model="eta", version=3)  # idempotent
    defs.record_usage(["trips:fare@1"], model="churn", version="1.0.0")
    lineage = defs.lineage("trips")
    assert lineage["source"] == "s3://lake/trips"
    assert lineage["features"] == {"trips:fare@1": ["churn/1.0.0", "eta/3"], "trips:rating@1": ["eta/3"]}


def test_a_draft_version_takes_over_only_once_active(defs: FeatureDefinitions) -> None:
    defs.register_feature("trips", "fare", "float")
    defs.register_feature("trips", "fare", "int", status="draft")
    assert [f.ref for f in defs.resolve(["trips:fare", "trips:*"])] == ["trips:fare@1"]
    assert defs.resolve(["trips:fare@2"])[0].status == "draft"
    defs.transition("trips:fare", "active")  # without a version: the newest (the draft)
    assert [f.ref for f in defs.resolve(["trips:fare"])] == ["trips:fare@2"]
