"""A point-in-time training set written to a folder or an object store URL, atomically."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from storage.errors import ValidationError
from storage.features.store import FeatureStore
from storage.objectstore import Place
from tasks.features.steps import build_training_set, write_frame

T0 = datetime(2026, 8, 1, tzinfo=UTC)


@pytest.fixture(params=["local", "s3"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where the set goes: a local folder, and a bucket on the test's S3 server."""
    return str(tmp_path / "sets") if request.param == "local" else str(request.getfixturevalue("s3_url"))


@pytest.fixture
def store() -> FeatureStore:
    s = FeatureStore.from_settings()
    s.definitions.create_entity("driver", join_keys=["driver_id"])
    s.definitions.create_group("trips", entity="driver", event_time_column="ts", ttl_seconds=7200)
    s.definitions.register_feature("trips", "fare", "float")
    s.ingest("trips", pd.DataFrame({"driver_id": [1, 2], "ts": [T0, T0], "fare": [5.0, 7.0]}))
    return s


def test_build_training_set_writes_parquet_to_the_url(
    store: FeatureStore, target: str, tmp_path: Path
) -> None:
    entities = tmp_path / "entities.csv"
    times = [(T0 + timedelta(minutes=m)).isoformat() for m in (10, 20)]
    pd.DataFrame({"driver_id": [2, 1], "event_timestamp": times}).to_csv(entities, index=False)
    out = build_training_set.fn(str(entities), ["trips:fare"], f"{target}/week-31/train.parquet")
    assert out["path"] == f"{target}/week-31/train.parquet"
    place = Place(f"{target}/week-31")
    assert place.names() == ["train.parquet"]  # no temporary name left behind
    table = place.read_table(place.path("train.parquet"))
    assert table.column("fare").to_pylist() == [7.0, 5.0] and "__index_level_0__" not in table.column_names


def test_a_rewrite_replaces_the_file_and_a_folder_is_refused(target: str) -> None:
    write_frame(pd.DataFrame({"x": [1, 2]}), f"{target}/t.parquet")
    uri = write_frame(pd.DataFrame({"x": [3]}), f"{target}/t.parquet")
    place = Place(target)
    assert place.read_table(place.path("t.parquet")).column("x").to_pylist() == [3]
    assert uri == f"{target}/t.parquet"
    with pytest.raises(ValidationError, match="names a folder"):
        write_frame(pd.DataFrame({"x": [1]}), f"{target}/")
