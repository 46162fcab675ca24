"""Point-in-time correctness of the offline store against independent oracles.

Seeded random data with few distinct timestamps (so ties are common), values
spread over several ingested batches (so the same entity and event time is
written more than once), nulls, TTL expiry, and - for groups with an
availability-time column - values backfilled long after their event time.

Oracles: ``pandas.merge_asof`` (``by`` the entity, ``tolerance`` = TTL, the
right side in ingestion order so the last tie wins) for groups without an
availability column; for groups with one, a direct row-by-row reading of the
rule "among values available at t, the newest event time, then the newest
availability time, then the latest ingestion".
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from storage.features.definitions import Feature, FeatureGroup
from storage.features.offline import OfflineStore
from storage.objectstore import Place

BASE = pd.Timestamp("2026-03-01 00:00:00")
FARE = Feature("trips", "fare", 1, "float", "active")
RATING = Feature("trips", "rating", 1, "int", "active")


def _feature_rows(rng: np.random.Generator, n: int, entities: int, with_avail: bool) -> pd.DataFrame:
    minutes = rng.integers(0, 60 * 24 * 3, size=n) // 30 * 30  # half-hour grid over 3 days: many ties
    df = pd.DataFrame(
        {
            "driver_id": rng.integers(0, entities, size=n),
            "ts": BASE + pd.to_timedelta(minutes, unit="min"),
            "fare": np.round(rng.normal(20, 5, size=n), 3),
            "rating": rng.integers(1, 6, size=n),
        }
    )
    df.loc[rng.random(n) < 0.1, "fare"] = np.nan
    if with_avail:
        delay = rng.choice([0, 0, 15, 60, 600, 3000], size=n)  # some values arrive days late
        df["available_at"] = df["ts"] + pd.to_timedelta(delay, unit="min")
    return df


def _entity_rows(rng: np.random.Generator, n: int, entities: int) -> pd.DataFrame:
    minutes = rng.integers(-60, 60 * 24 * 4, size=n) // 30 * 30
    return pd.DataFrame(
        {
            "driver_id": rng.integers(0, entities + 1, size=n),  # one entity with no values at all
            "event_timestamp": BASE + pd.to_timedelta(minutes, unit="min"),
            "label": rng.integers(0, 2, size=n),
        }
    )


def _ingest_batches(
    store: OfflineStore, group: FeatureGroup, rows: pd.DataFrame, batches: int
) -> pd.DataFrame:
    """Ingest in ``batches`` slices; return the rows with their global ingestion order."""
    parts = np.array_split(np.arange(len(rows)), batches)
    for idx in parts:
        store.ingest(group, [FARE, RATING], rows.iloc[idx].reset_index(drop=True))
    return rows.assign(order=np.arange(len(rows)))


def _merge_asof_oracle(entities: pd.DataFrame, rows: pd.DataFrame, ttl: int | None) -> pd.DataFrame:
    left = entities.reset_index(drop=True).assign(_pos=np.arange(len(entities)))
    right = rows.sort_values(["ts", "order"], kind="stable")
    merged = pd.merge_asof(
        left.sort_values("event_timestamp", kind="stable"),
        right[["driver_id", "ts", "fare", "rating"]],
        left_on="event_timestamp",
        right_on="ts",
        by="driver_id",
        direction="backward",
        allow_exact_matches=True,
        tolerance=pd.Timedelta(seconds=ttl) if ttl else None,
    )
    return merged.sort_values("_pos").reset_index(drop=True)


def _availability_oracle(entities: pd.DataFrame, rows: pd.DataFrame, ttl: int | None) -> pd.DataFrame:
    rows = rows.assign(eff=np.maximum(rows["ts"], rows["available_at"]))
    fares, ratings = [], []
    for _, e in entities.iterrows():
        usable = rows[(rows.driver_id == e.driver_id) & (rows.eff <= e.event_timestamp)]
        if usable.empty:
            fares.append(np.nan)
            ratings.append(np.nan)
            continue
        best = usable.sort_values(["ts", "eff", "order"]).iloc[-1]
        fresh = ttl is None or best.ts >= e.event_timestamp - pd.Timedelta(seconds=ttl)
        fares.append(best.fare if fresh else np.nan)
        ratings.append(best.rating if fresh else np.nan)
    return pd.DataFrame({"fare": fares, "rating": ratings})


def _assert_same(got: pd.DataFrame, want: pd.DataFrame) -> None:
    np.testing.assert_allclose(got["fare"].astype(float), want["fare"].astype(float), equal_nan=True)
    np.testing.assert_allclose(got["rating"].astype(float), want["rating"].astype(float), equal_nan=True)


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("ttl", [None, 3 * 3600])
def test_point_in_time_join_matches_merge_asof(offline_root: str, seed: int, ttl: int | None) -> None:
    rng = np.random.default_rng(seed)
    group = FeatureGroup("trips", "driver", ("driver_id",), "ts", ttl_seconds=ttl)
    store = OfflineStore(offline_root)
    rows = _ingest_batches(store, group, _feature_rows(rng, 600, 8, with_avail=False), batches=3)
    entities = _entity_rows(rng, 400, 8)

    got = store.historical(entities, [(group, [FARE, RATING])])

    want = _merge_asof_oracle(entities, rows, ttl)
    _assert_same(got, want)
    pd.testing.assert_frame_equal(got[entities.columns], entities)  # entity rows pass through, in order
    assert got["fare"].notna().sum() > 50  # the data exercises real matches, not only nulls
    if ttl:
        unlimited = store.historical(
            entities, [(FeatureGroup("trips", "driver", ("driver_id",), "ts"), [FARE])]
        )
        assert unlimited["fare"].notna().sum() > got["fare"].notna().sum()  # TTL expiry happened


@pytest.mark.parametrize("seed", [4, 5])
@pytest.mark.parametrize("ttl", [None, 6 * 3600])
def test_backfilled_values_never_leak_before_they_are_available(
    offline_root: str, seed: int, ttl: int | None
) -> None:
    rng = np.random.default_rng(seed)
    group = FeatureGroup(
        "trips", "driver", ("driver_id",), "ts", available_time_column="available_at", ttl_seconds=ttl
    )
    store = OfflineStore(offline_root)
    rows = _ingest_batches(store, group, _feature_rows(rng, 300, 5, with_avail=True), batches=3)
    entities = _entity_rows(rng, 250, 5)

    got = store.historical(entities, [(group, [FARE, RATING])])

    _assert_same(got, _availability_oracle(entities, rows, ttl))
    # and the availability column matters on this data: ignoring it would leak
    leaky = _merge_asof_oracle(entities, rows, ttl)
    assert not np.allclose(leaky["fare"].astype(float), got["fare"].astype(float), equal_nan=True)


def test_late_correction_wins_only_once_available(offline_root: str) -> None:
    group = FeatureGroup("trips", "driver", ("driver_id",), "ts", available_time_column="available_at")
    store = OfflineStore(offline_root)
    t = pd.Timestamp("2026-03-01 10:00")
    first = pd.DataFrame({"driver_id": [1], "ts": [t], "available_at": [t], "fare": [10.0]})
    correction = pd.DataFrame(
        {"driver_id": [1], "ts": [t], "available_at": [t + pd.Timedelta(hours=5)], "fare": [12.0]}
    )
    store.ingest(group, [FARE], first)
    store.ingest(group, [FARE], correction)
    entities = pd.DataFrame(
        {
            "driver_id": [1, 1, 1],
            "event_timestamp": [
                t - pd.Timedelta(minutes=1),
                t + pd.Timedelta(hours=1),
                t + pd.Timedelta(hours=6),
            ],
        }
    )
    assert store.historical(entities, [(group, [FARE])])["fare"].tolist() == pytest.approx(
        [np.nan, 10.0, 12.0], nan_ok=True
    )


def test_composite_keys_and_timezones(offline_root: str) -> None:
    group = FeatureGroup("trips", "route", ("city", "zone"), "ts", ttl_seconds=3600)
    store = OfflineStore(offline_root)
    t = pd.Timestamp("2026-03-01 10:00", tz="UTC")
    store.ingest(
        group,
        [FARE],
        pd.DataFrame(
            {"city": ["a", "a", "b"], "zone": ["x", "y", "x"], "ts": [t, t, t], "fare": [1.0, 2.0, 3.0]}
        ),
    )
    entities = pd.DataFrame(
        {
            "city": ["a", "b", "b"],
            "zone": ["y", "x", "y"],
            # 11:30+01:00 is 10:30 UTC: inside the TTL
            "event_timestamp": [pd.Timestamp("2026-03-01 11:30", tz="Europe/Paris")] * 3,
        }
    )
    assert store.historical(entities, [(group, [FARE])])["fare"].tolist() == pytest.approx(
        [2.0, 3.0, np.nan], nan_ok=True
    )


def test_streaming_join_to_file_matches_the_in_memory_join(offline_root: str) -> None:
    rng = np.random.default_rng(9)
    trips = FeatureGroup(
        "trips", "driver", ("driver_id",), "ts", available_time_column="available_at", ttl_seconds=4 * 3600
    )
    store = OfflineStore(f"{offline_root}/offline")
    _ingest_batches(store, trips, _feature_rows(rng, 300, 5, with_avail=True), batches=2)
    empty = FeatureGroup("empty", "driver", ("driver_id",), "ts")
    entities = _entity_rows(rng, 200, 5)
    io = Place(f"{offline_root}/io")  # the entity file and the result beside the store, on the same kind
    entity_path, out_path = io.path("entities.parquet"), io.path("out", "train.parquet")
    io.write_table(entity_path, pa.Table.from_pandas(entities, preserve_index=False))
    specs = [(trips, [FARE, RATING]), (empty, [Feature("empty", "x", 1, "float", "active")])]

    written = store.historical_to_file(io.uri(entity_path), specs, io.uri(out_path), memory_limit_mb=256)

    assert written == len(entities)
    got = io.read_table(out_path).to_pandas()
    want = store.historical(entities, specs)
    assert got.columns.tolist() == want.columns.tolist()
    _assert_same(got, want)
    assert got["x"].isna().all()
    assert io.names("out") == ["train.parquet"]  # no temporary file left beside it
