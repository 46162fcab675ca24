"""Feature store flows run for real under the Prefect test harness."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from flows.features import feature_statistics, ingest_features, materialize_features
from storage.features.stats import load_stats
from storage.features.store import FeatureStore

T0 = datetime(2026, 9, 1, tzinfo=UTC)


@pytest.fixture
def store(prefect_harness: None, tmp_path: Path) -> FeatureStore:
    s = FeatureStore.from_settings()
    d = s.definitions
    d.create_entity("driver", join_keys=["driver_id"])
    d.create_group("trips", entity="driver", event_time_column="ts", ttl_seconds=3600)
    d.register_feature("trips", "fare", "float")
    batch = tmp_path / "batch.parquet"
    pd.DataFrame(
        {"driver_id": [1, 2, 1], "ts": [T0, T0, T0 + timedelta(hours=1)], "fare": [1.0, 2.0, 3.0]}
    ).to_parquet(batch)
    assert ingest_features("trips", str(batch))["rows"] == 3
    return s


def test_materialize_flow_is_incremental_and_idempotent(store: FeatureStore) -> None:
    first = materialize_features(["trips"], end=T0 + timedelta(hours=2))["trips"]
    assert first["rows"] == 2
    before = store.online.read("trips", ["1", "2"])
    assert [r[1]["fare"] for r in before if r] == [3.0, 2.0]
    second = materialize_features(end=T0 + timedelta(hours=2))["trips"]  # every group
    assert second["rows"] == 0 and second["start"] == (T0 + timedelta(hours=2)).isoformat()
    assert store.online.read("trips", ["1", "2"]) == before


def test_statistics_flow_stores_and_publishes_a_table_artifact(store: FeatureStore) -> None:
    from prefect.artifacts import Artifact

    keys = feature_statistics(window_hours=48, end=T0 + timedelta(days=1))
    assert keys == {"trips": "feature-stats-trips"}
    artifact = Artifact.get("feature-stats-trips")
    assert artifact is not None and artifact.type == "table"
    assert "fare" in str(artifact.data)
    stored = load_stats(store.db, "trips", "fare")
    assert stored is not None and stored["stats"]["count"] == 3
