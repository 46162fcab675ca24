"""Endpoints, alerts and feature definitions over REST: the same answers as the local stores.

Endpoints, stats, alerts, definitions and statistics are made through the
real stores on the service's database and read back with :class:`mlops.Client`.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest

from blocks.settings import get_settings
from storage.audit import AuditLog
from storage.endpoints import EndpointStore, LatencyHistogram, StatsRow, VariantSpec
from storage.errors import AccessError, NotFoundError, ValidationError
from storage.features.definitions import FeatureDefinitions
from storage.features.stats import load_stats
from storage.features.store import FeatureStore
from storage.monitoring.alerts import AlertStore
from tests.service.conftest import Service


def _endpoint(service: Service) -> EndpointStore:
    store = EndpointStore(service.registry.db, actor="ops")
    store.create(
        "fraud",
        [VariantSpec("a", "fraud", "1", 70), VariantSpec("b", "fraud", "@challenger", 30)],
        policy="ab",
    )
    store.create("clicks", [VariantSpec("main", "clicks", "2")])
    store.set_weights("fraud", {"a": 50, "b": 50}, reason="even split")
    fast, slow = LatencyHistogram(), LatencyHistogram()
    fast.add(2.0, 90)
    slow.add(40.0, 10)
    store.flush_stats(
        [
            StatsRow("fraud", "a", "r1", 90, 1, 180.0, fast.counts),
            StatsRow("fraud", "b", "r1", 10, 2, 400.0, slow.counts),
        ]
    )
    return store


def test_endpoints_events_and_stats_match_the_store(service: Service) -> None:
    store = _endpoint(service)
    with service.client("reader") as client:
        assert client.endpoints() == store.list()
        assert [e.name for e in client.endpoints()] == ["clicks", "fraud"]
        fraud = client.endpoint("fraud")
        assert fraud == store.get("fraud") and fraud.weights() == {"a": 50.0, "b": 50.0}
        assert client.endpoint_events("fraud") == store.events("fraud")
        assert [e.kind for e in client.endpoint_events("fraud", kind="traffic.set")] == ["traffic.set"]
        stats = client.endpoint_stats("fraud")
        assert stats == {name: s.to_dict() for name, s in store.stats("fraud").items()}
        assert (stats["a"]["requests"], stats["b"]["errors"]) == (90, 2)
        assert client.endpoint_stats("fraud", since_seconds=3600) == stats  # flushed just now
        with pytest.raises(NotFoundError, match="nope"):
            client.endpoint("nope")
        with pytest.raises(ValidationError, match="since_seconds"):
            client.endpoint_stats("fraud", since_seconds=-1)


def test_alerts_list_and_resolve_by_role(service: Service) -> None:
    registry = service.registry
    for model in ("m", "n"):
        registry.create_model(model)
        registry.create_version(model, framework="sklearn")
    store = AlertStore(registry)
    drift = store.raise_alert("m", 1, kind="drift", severity="warning", subject="age", message="KS D=0.08")
    store.raise_alert("m", 1, kind="drift", severity="warning", subject="age", message="KS D=0.09")
    store.raise_alert("m", None, kind="latency", severity="critical", subject="p99", message="p99 900 ms")
    store.raise_alert("n", 1, kind="drift", severity="info", subject="fare", message="small")
    with service.client("reader") as reader:
        assert reader.alerts() == store.list()
        assert reader.alerts(model="m") == store.list(model="m") and len(reader.alerts(model="m")) == 2
        assert reader.alerts(model="m", limit=1) == store.list(model="m", limit=1)
        assert reader.alerts(model="m")[1].count == 2
        with pytest.raises(AccessError, match="role 'reader'.*may not write"):
            reader.resolve_alert(drift.id)
        with pytest.raises(ValidationError, match="status"):
            reader.alerts(status="closed")
    with service.client("reviewer") as reviewer, pytest.raises(AccessError, match="may not write"):
        reviewer.resolve_alert(drift.id)
    with service.client("contributor") as contributor:
        resolved = contributor.resolve_alert(drift.id)
        assert resolved.status == "resolved" and resolved == store.list(status="resolved")[0]
        assert contributor.alerts(status="open") == store.open_alerts()
        with pytest.raises(NotFoundError, match="alert 999 does not exist"):
            contributor.resolve_alert(999)
    entry = AuditLog(registry.db).entries(action="alert.resolve")[0]
    assert (entry.actor, entry.entity_id, entry.after) == ("contributor-user", "m", {"alert": drift.id})
    with service.client("admin") as admin:
        assert admin.resolve_alert(store.open_alerts("m")[0].id).status == "resolved"


def test_feature_definitions_lineage_and_statistics_match_the_store(service: Service) -> None:
    settings = get_settings()
    store = FeatureStore(
        service.registry.db,
        settings.resolved_feature_root(),
        settings.resolved_online_store_url(),
        actor="ana",
    )
    d: FeatureDefinitions = store.definitions
    d.create_entity("driver", join_keys=["driver_id"], owner="ops")
    d.create_entity("zone", join_keys=["city", "zone_id"])
    d.create_group("trips", entity="driver", event_time_column="ts", ttl_seconds=3600, source="s3://trips")
    d.register_feature("trips", "fare", "float", owner="ana")
    d.register_feature("trips", "rating", "float")
    d.register_feature("trips", "rating", "int")  # a second version
    d.record_usage(["trips:fare"], model="eta", version=3)
    frame = pd.DataFrame(
        {
            "driver_id": [1, 2, 3],
            "ts": pd.to_datetime(["2026-01-01"] * 3, utc=True),
            "fare": [9.5, 10.0, 11.0],
            "rating": [4, 5, 3],
        }
    )
    store.ingest("trips", frame)
    store.compute_statistics("trips", reference=True)
    try:
        with service.client("reader") as client:
            entities = client.feature_entities()
            assert entities == [d.get_entity("driver"), d.get_entity("zone")]
            assert client.feature_entity("zone").join_keys == ("city", "zone_id")
            assert client.feature_groups() == d.list_groups()
            assert client.feature_group("trips") == d.get_group("trips")
            assert client.features() == d.list_features()
            assert client.features("trips", all_versions=True) == d.list_features("trips", all_versions=True)
            assert [f.ref for f in client.features("trips")] == ["trips:fare@1", "trips:rating@2"]
            assert client.feature_lineage("trips") == d.lineage("trips")
            assert client.feature_lineage("trips")["features"] == {"trips:fare@1": ["eta/3"]}
            stats = client.feature_statistics("trips")
            local = load_stats(service.registry.db, "trips", "fare")
            assert local is not None and stats["fare"]["stats"] == local["stats"]
            assert stats["fare"]["kind"] == "reference" and stats["fare"]["stats"]["count"] == 3
            assert client.feature_statistics("trips", kind="window") == {}
            with pytest.raises(NotFoundError, match="feature group 'nope'"):
                client.feature_statistics("nope")
            with pytest.raises(NotFoundError, match="entity 'nope' does not exist"):
                client.feature_entity("nope")
    finally:
        store.close()


def test_endpoint_answers_are_rebuilt_at_the_client_with_their_time(service: Service) -> None:
    _endpoint(service)
    with service.client("reader") as client:
        event = client.endpoint_events("fraud")[0]
        assert isinstance(event.at, datetime) and event.at.tzinfo is not None
        assert event.at <= datetime.now(UTC)
