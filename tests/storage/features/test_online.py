"""The online store on SQLite and on a real Redis: materialization, reads, staleness, serving hook."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from blocks.settings import MlopsSettings
from storage.errors import NotFoundError, ValidationError
from storage.features.online import SQLiteOnlineStore, entity_key
from storage.features.store import FeatureStore, fill_request_features

T0 = datetime(2026, 6, 1, tzinfo=UTC)


@pytest.fixture
def store(tmp_path: Path, online_url: str) -> Iterator[FeatureStore]:
    settings = MlopsSettings(home=tmp_path / "home", online_store_url=online_url)
    s = FeatureStore.from_settings(settings)
    d = s.definitions
    d.create_entity("driver", join_keys=["driver_id"])
    d.create_group(
        "trips", entity="driver", event_time_column="ts", available_time_column="loaded_at", ttl_seconds=3600
    )
    d.register_feature("trips", "fare", "float")
    d.register_feature("trips", "city", "string")
    d.register_feature("trips", "tags", "json")
    d.create_entity("route", join_keys=["city_id", "zone"])
    d.create_group("traffic", entity="route", event_time_column="ts", ttl_seconds=600)
    d.register_feature("traffic", "speed", "float")
    yield s
    s.close()


def _rows(
    driver: list[int], hours: list[float], fare: list[float], loaded_delay_h: float = 0.0
) -> pd.DataFrame:
    ts = [pd.Timestamp(T0) + pd.Timedelta(hours=h) for h in hours]
    return pd.DataFrame(
        {
            "driver_id": driver,
            "ts": ts,
            "loaded_at": [t + pd.Timedelta(hours=loaded_delay_h) for t in ts],
            "fare": fare,
            "city": [f"c{d}" for d in driver],
            "tags": [{"d": d} for d in driver],
        }
    )


def _dump(store: FeatureStore, keys: list[int]) -> list[object]:
    return store.online.read("trips", [entity_key([k]) for k in keys])


def test_materialize_is_idempotent_and_incremental(store: FeatureStore) -> None:
    store.ingest("trips", _rows([1, 1, 2], [0, 1, 2], [10.0, 11.0, 20.0]))
    first = store.materialize("trips", end=T0 + timedelta(hours=3))
    assert (first.start, first.rows) == (None, 2)
    snapshot = _dump(store, [1, 2, 3])
    assert [r[1]["fare"] if r else None for r in snapshot] == [11.0, 20.0, None]

    # the same window again changes nothing
    store.materialize(
        "trips", start=None if first.start is None else first.start, end=T0 + timedelta(hours=3)
    )
    assert _dump(store, [1, 2, 3]) == snapshot
    # incremental: nothing new since the watermark
    again = store.materialize("trips", end=T0 + timedelta(hours=3))
    assert again.rows == 0 and _dump(store, [1, 2, 3]) == snapshot

    # new values, plus a late-arriving older value for driver 2 (event at 1.5 h, loaded at 4 h)
    store.ingest("trips", _rows([1, 3], [4, 4], [12.0, 30.0]))
    store.ingest("trips", _rows([2], [1.5], [99.0], loaded_delay_h=2.5))
    nxt = store.materialize("trips", end=T0 + timedelta(hours=5))
    assert nxt.start == T0 + timedelta(hours=3)
    got = _dump(store, [1, 2, 3])
    assert [r[1]["fare"] for r in got if r] == [12.0, 20.0, 30.0]  # the older late value did not win
    # and a late value newer than the stored one does arrive
    store.ingest("trips", _rows([2], [4.5], [21.0], loaded_delay_h=1.0))
    store.materialize("trips", end=T0 + timedelta(hours=6))
    assert store.online.read("trips", [entity_key([2])])[0][1]["fare"] == 21.0  # type: ignore[index]


def test_online_read_flags_stale_values_and_missing_entities(store: FeatureStore) -> None:
    store.ingest("trips", _rows([1, 2], [0, 2], [10.0, 20.0]))
    store.materialize("trips", end=T0 + timedelta(hours=3))
    now = T0 + timedelta(hours=2, minutes=30)
    result = store.get_online_features(
        [{"driver_id": 1}, {"driver_id": 2}, {"driver_id": 9}], ["trips:fare", "trips:tags"], now=now
    )
    assert result.rows == [
        {"driver_id": 1, "fare": 10.0, "tags": {"d": 1}},
        {"driver_id": 2, "fare": 20.0, "tags": {"d": 2}},
        {"driver_id": 9, "fare": None, "tags": None},
    ]
    assert [s["fare"] for s in result.statuses] == ["stale", "present", "missing"]
    assert result.stale == [True, False, False]
    assert result.feature_refs == ["trips:fare@1", "trips:tags@1"]


def test_composite_keys_and_several_groups_in_one_read(store: FeatureStore) -> None:
    store.ingest("trips", _rows([1], [0], [10.0]))
    store.ingest(
        "traffic",
        pd.DataFrame(
            {"city_id": [5, 5], "zone": ["n", "s"], "ts": [pd.Timestamp(T0)] * 2, "speed": [30.0, 45.0]}
        ),
    )
    store.materialize("trips", end=T0 + timedelta(hours=1))
    store.materialize("traffic", end=T0 + timedelta(hours=1))
    result = store.get_online_features(
        [{"driver_id": 1, "city_id": 5, "zone": "s"}], ["trips:fare", "traffic:speed"], now=T0
    )
    assert result.rows == [{"driver_id": 1, "city_id": 5, "zone": "s", "fare": 10.0, "speed": 45.0}]


def test_bad_online_requests_name_the_problem(store: FeatureStore) -> None:
    with pytest.raises(ValidationError, match=r"entity row 1 is missing join key\(s\) \['driver_id'\]"):
        store.get_online_features([{"driver_id": 1}, {"id": 2}], ["trips:fare"])
    with pytest.raises(NotFoundError, match="trips:nope"):
        store.get_online_features([{"driver_id": 1}], ["trips:nope"])
    with pytest.raises(ValidationError, match="not a valid identifier"):
        store.get_online_features([{"driver_id": 1}], ["trips:fare; DROP TABLE online_values"])
    with pytest.raises(ValidationError, match="non-empty list"):
        store.get_online_features([{"driver_id": 1}], "trips:fare")  # type: ignore[arg-type]


def test_serving_hook_fills_only_what_the_request_lacks(store: FeatureStore) -> None:
    store.ingest("trips", _rows([1], [0], [10.0]))
    store.materialize("trips", end=T0 + timedelta(hours=1))
    filled = fill_request_features(
        store, [{"driver_id": 1, "city": "override"}, {"driver_id": 2}], ["trips:fare", "trips:city"]
    )
    assert filled.rows[0] == {"driver_id": 1, "fare": 10.0, "city": "override"}
    assert filled.statuses[0]["city"] == "request"
    assert filled.rows[1]["fare"] is None and filled.statuses[1]["fare"] == "missing"


def test_archived_features_stop_reading_online(store: FeatureStore, tmp_path: Path) -> None:
    store.ingest("trips", _rows([1], [0], [10.0]))
    store.materialize("trips", end=T0 + timedelta(hours=1))
    store.definitions.transition("trips:fare", "deprecated")
    with pytest.warns(UserWarning, match="deprecated"):
        assert store.get_online_features([{"driver_id": 1}], ["trips:fare"]).rows[0]["fare"] == 10.0
    store.definitions.transition("trips:fare", "archived")  # clears the store's definition cache
    with pytest.raises(ValidationError, match="archived"):
        store.get_online_features([{"driver_id": 1}], ["trips:fare"])


def test_sqlite_store_keeps_the_newer_record(tmp_path: Path) -> None:
    online = SQLiteOnlineStore(str(tmp_path / "o.db"))
    online.write("g", [("a", 10, '{"x": 1}')])
    online.write("g", [("a", 5, '{"x": 0}'), ("b", 1, '{"x": 2}')])
    assert online.read("g", ["a", "b", "c"]) == [(10, {"x": 1}), (1, {"x": 2}), None]
    online.set_watermark("g", 100)
    online.set_watermark("g", 50)
    assert online.watermark("g") == 100 and online.count("g") == 2


def test_feast_keyword_order_and_wrong_argument_types(store: FeatureStore) -> None:
    store.ingest("trips", _rows([1], [0], [10.0]))
    store.materialize("trips", end=T0 + timedelta(hours=1))
    by_keyword = store.get_online_features(features=["trips:fare"], entity_rows=[{"driver_id": 1}], now=T0)
    assert by_keyword.rows == store.get_online_features([{"driver_id": 1}], ["trips:fare"], now=T0).rows
    with pytest.raises(ValidationError, match="got a list of feature references: .*features=\\.\\.\\."):
        store.get_online_features(["trips:fare"], [{"driver_id": 1}])  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="entity_rows must be a list .* got one mapping"):
        store.get_online_features({"driver_id": 1}, ["trips:fare"])  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="needs entity_rows"):
        store.get_online_features(features=["trips:fare"])
    with pytest.raises(ValidationError, match="got a int"):
        store.get_online_features([1], ["trips:fare"])  # type: ignore[list-item]
