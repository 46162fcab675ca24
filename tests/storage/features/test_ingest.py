"""Ingestion into the offline store: validation, atomic writes, types, range retrieval."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from blocks.settings import MlopsSettings
from storage.errors import NotFoundError, ValidationError
from storage.features.store import FeatureStore

T0 = pd.Timestamp("2026-05-01 08:00")


@pytest.fixture
def store(tmp_path: Path, storage_url: str | None) -> FeatureStore:
    s = FeatureStore.from_settings(MlopsSettings(home=tmp_path / "home", storage_url=storage_url))
    d = s.definitions
    d.create_entity("driver", join_keys=["driver_id"])
    d.create_group("trips", entity="driver", event_time_column="ts", ttl_seconds=86400)
    for name, dtype in [
        ("fare", "float"),
        ("rides", "int"),
        ("city", "string"),
        ("vip", "bool"),
        ("embedding", "array"),
        ("meta", "json"),
    ]:
        d.register_feature("trips", name, dtype)
    return s


def _batch(n: int = 4, day_offset: int = 0) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "driver_id": np.arange(n) % 2,
            "ts": [T0 + pd.Timedelta(days=day_offset + i // 2, hours=i) for i in range(n)],
            "fare": np.linspace(1.0, 2.0, n),
            "rides": np.arange(n),
            "city": [f"c{i}" for i in range(n)],
            "vip": [bool(i % 2) for i in range(n)],
            "embedding": [[float(i), 0.5] for i in range(n)],
            "meta": [{"source": "app", "i": i} for i in range(n)],
        }
    )


def _snapshot(store: FeatureStore) -> dict[str, bytes]:
    """Every file under the offline store's root, with its bytes (a folder or a bucket alike)."""
    place = store.offline.place
    place.fs.invalidate_cache()
    found = place.fs.find(place.root) if place.fs.exists(place.root) else []
    return {str(p): place.read_bytes(str(p)) for p in sorted(found)}


def test_batch_is_hive_partitioned_by_date_and_reads_back_typed(store: FeatureStore, tmp_path: Path) -> None:
    result = store.ingest("trips", _batch())
    names = sorted(Path(f).parent.name for f in result.files)
    assert names == ["date=2026-05-01", "date=2026-05-02"]
    assert not [p for p in _snapshot(store) if p.endswith(".tmp")]
    if not store.offline.place.is_local:  # an S3 root: nothing of the store lands on the local disk
        assert result.files[0].startswith("s3://") and not (tmp_path / "home" / "features").exists()
    frame = store.get_features_in_range(["trips:*"]).frame
    assert frame["rides"].tolist() == [0, 1, 2, 3]
    assert frame["city"].tolist() == ["c0", "c1", "c2", "c3"]
    assert frame["vip"].tolist() == [False, True, False, True]
    assert [list(v) for v in frame["embedding"]] == [[0.0, 0.5], [1.0, 0.5], [2.0, 0.5], [3.0, 0.5]]
    assert frame["meta"][3] == {"i": 3, "source": "app"}


def test_reingesting_the_same_batch_is_idempotent(store: FeatureStore) -> None:
    first = store.ingest("trips", _batch())
    second = store.ingest("trips", _batch())
    assert first.batch_id == second.batch_id
    assert len(store.offline.files("trips")) == 2
    assert len(store.get_features_in_range(["trips:fare"]).frame) == 4


@pytest.mark.parametrize(
    ("column", "bad_value", "message"),
    [
        ("rides", 1.5, "column 'rides' expects int at rows 2 (1.5)"),
        ("fare", "cheap", "column 'fare' expects float at rows 2 ('cheap')"),
        ("city", 7, "column 'city' expects string at rows 2 (7)"),
        ("vip", "yes", "column 'vip' expects bool at rows 2 ('yes')"),
        ("embedding", ["a"], "column 'embedding' expects array at rows 2 (['a'])"),
        ("meta", "not-a-dict", "column 'meta' expects json at rows 2 ('not-a-dict')"),
        ("driver_id", None, "column 'driver_id' is a join key and holds nulls at rows 2"),
        ("ts", None, "column 'ts' is the event time and holds nulls at rows 2"),
    ],
)
def test_bad_batch_is_rejected_whole_naming_column_and_rows(
    store: FeatureStore, column: str, bad_value: object, message: str
) -> None:
    store.ingest("trips", _batch())
    before = _snapshot(store)
    bad = _batch(6, day_offset=5)
    bad[column] = bad[column].astype(object)
    bad.at[2, column] = bad_value
    with pytest.raises(ValidationError) as err:
        store.ingest("trips", bad)
    assert message in str(err.value)
    assert "nothing was written" in str(err.value)
    assert _snapshot(store) == before


def test_unknown_missing_and_malicious_columns_are_rejected(store: FeatureStore) -> None:
    before = _snapshot(store)
    with pytest.raises(ValidationError, match="column 'tip' is not a feature"):
        store.ingest("trips", _batch().assign(tip=1.0))
    with pytest.raises(ValidationError, match="column 'x; DROP TABLE features' is not a feature"):
        store.ingest("trips", _batch().assign(**{"x; DROP TABLE features": 1}))
    with pytest.raises(ValidationError, match="required column 'ts' is missing"):
        store.ingest("trips", _batch().drop(columns=["ts"]))
    with pytest.raises(NotFoundError, match="'nogroup'"):
        store.ingest("nogroup", _batch())
    with pytest.raises(ValidationError, match="not a valid identifier"):
        store.ingest("trips/../../etc", _batch())
    assert _snapshot(store) == before


def test_archived_feature_cannot_be_ingested_and_a_new_version_gets_its_own_column(
    store: FeatureStore,
) -> None:
    store.ingest("trips", _batch())
    store.definitions.register_feature("trips", "rides", "float")  # type change: version 2
    store.ingest("trips", _batch(4, day_offset=3).assign(rides=[0.5, 1.5, 2.5, 3.5]))
    frame = store.get_features_in_range(["trips:rides@1", "trips:rides@2"]).frame
    assert frame.columns.tolist()[-2:] == ["rides", "rides"] or "rides" in frame.columns
    v1 = store.get_features_in_range(["trips:rides@1"]).frame["rides"]
    v2 = store.get_features_in_range(["trips:rides@2"]).frame["rides"]
    assert v1.tolist()[:4] == [0, 1, 2, 3] and v1[4:].isna().all()
    assert v2[:4].isna().all() and v2.tolist()[4:] == [0.5, 1.5, 2.5, 3.5]
    store.definitions.transition("trips:city", "deprecated")
    store.definitions.transition("trips:city", "archived")
    with pytest.raises(ValidationError, match=r"trips:city@1 is archived"):
        store.ingest("trips", _batch(4, day_offset=9))


def test_range_retrieval_bounds_latest_and_null_share(store: FeatureStore) -> None:
    store.ingest("trips", _batch(8))
    start, end = T0 + pd.Timedelta(days=1), T0 + pd.Timedelta(days=3)
    result = store.get_features_in_range(
        ["trips:fare", "trips:rides"], start.to_pydatetime(), end.to_pydatetime()
    )
    assert result.frame["rides"].tolist() == [2, 3, 4, 5]
    latest = store.get_features_in_range(["trips:rides"], None, None, latest=True).frame
    assert sorted(latest["rides"].tolist()) == [6, 7]
    with pytest.raises(ValidationError, match="one group at a time"):
        store.definitions.create_group("other", entity="driver", event_time_column="ts")
        store.definitions.register_feature("other", "x", "float")
        store.get_features_in_range(["trips:fare", "other:x"])
    batch = _batch(4, day_offset=20)
    batch.loc[[0, 1, 2], "fare"] = np.nan
    store.ingest("trips", batch)
    hist = store.get_historical_features(
        pd.DataFrame({"driver_id": [0, 1], "event_timestamp": [T0 + pd.Timedelta(days=21, hours=12)] * 2}),
        ["trips:fare", "trips:rides"],
    )
    assert hist.null_share == {"fare": 0.5, "rides": 0.0}


def test_historical_errors_name_the_problem(store: FeatureStore) -> None:
    store.ingest("trips", _batch())
    entities = pd.DataFrame({"driver_id": [0], "event_timestamp": [T0]})
    with pytest.raises(NotFoundError, match="trips:nope"):
        store.get_historical_features(entities, ["trips:nope"])
    with pytest.raises(ValidationError, match="missing column 'driver_id'"):
        store.get_historical_features(entities.rename(columns={"driver_id": "id"}), ["trips:fare"])
    with pytest.raises(ValidationError, match="missing column 'event_timestamp'"):
        store.get_historical_features(entities.drop(columns=["event_timestamp"]), ["trips:fare"])
    with pytest.raises(ValidationError, match="collide"):
        store.get_historical_features(entities.assign(fare=1.0), ["trips:fare"])
    assert store.get_historical_features(entities.assign(fare=1.0), ["trips:fare"], full_names=True).frame[
        "trips__fare"
    ].tolist() == [1.0]
    assert store.offline.place.glob("trips", "date=*")


def test_batch_spanning_dates_is_visible_all_at_once(
    store: FeatureStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    place = store.offline.place
    real_write, calls = place.write_table, {"n": 0}

    def crash_after_first_file(path: str, table: object) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("killed between the files of one batch")
        real_write(path, table)  # type: ignore[arg-type]

    monkeypatch.setattr(place, "write_table", crash_after_first_file)
    with pytest.raises(OSError, match="killed between"):
        store.ingest("trips", _batch())
    monkeypatch.setattr(place, "write_table", real_write)
    assert store.offline.files("trips") == []  # one date's file landed, but no reader sees it
    assert store.get_features_in_range(["trips:fare"]).frame.empty
    store.ingest("trips", _batch())
    assert len(store.offline.files("trips")) == 2
    assert len(store.get_features_in_range(["trips:fare"]).frame) == 4


def test_a_crash_between_the_local_renames_shows_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import storage.objectstore as objectstore

    store = FeatureStore.from_settings(MlopsSettings(home=tmp_path / "home"))
    store.definitions.create_entity("driver", join_keys=["driver_id"])
    store.definitions.create_group("trips", entity="driver", event_time_column="ts")
    store.definitions.register_feature("trips", "fare", "float")
    batch = _batch()[["driver_id", "ts", "fare"]]
    real_replace, calls = os.replace, {"n": 0}

    def crash_after_first_file(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("killed between the renames of one batch")
        real_replace(src, dst)

    monkeypatch.setattr(objectstore.os, "replace", crash_after_first_file)
    with pytest.raises(OSError, match="killed between"):
        store.ingest("trips", batch)
    monkeypatch.setattr(objectstore.os, "replace", real_replace)
    assert store.offline.files("trips") == []
    assert not list(Path(store.offline.root).rglob("*.tmp"))
    store.ingest("trips", batch)
    assert len(store.get_features_in_range(["trips:fare"]).frame) == 4


def test_historical_keeps_the_entity_frames_index(store: FeatureStore) -> None:
    store.ingest("trips", _batch())
    entities = pd.DataFrame(
        {"driver_id": [1, 0, 1], "event_timestamp": [T0 + pd.Timedelta(days=1, hours=4)] * 3},
        index=[30, 10, 20],
    )
    frame = store.get_historical_features(entities, ["trips:fare"]).frame
    assert frame.index.tolist() == [30, 10, 20]
    assert frame["driver_id"].tolist() == [1, 0, 1]
    joined = entities.join(frame[["fare"]])  # joining back by index lines rows up
    assert joined["fare"].tolist() == frame["fare"].tolist() == [2.0, pytest.approx(5 / 3), 2.0]
