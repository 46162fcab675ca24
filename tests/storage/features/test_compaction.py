"""Small files of the offline store: one file per partition per batch, and compaction never seen half done.

Every test runs on a local folder and on S3 (moto's server).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd
import pytest

from storage.features import CompactionResult, compact
from storage.features.compaction import COMMITS, list_committed
from storage.features.definitions import Feature, FeatureGroup
from storage.features.offline import OfflineStore
from tests.storage.features.test_pit import FARE, RATING, _entity_rows, _feature_rows

TRIPS = FeatureGroup("trips", "driver", ("driver_id",), "ts", ttl_seconds=None)
LATE = FeatureGroup("trips", "driver", ("driver_id",), "ts", available_time_column="available_at")


def _ingest(store: OfflineStore, group: FeatureGroup, rows: pd.DataFrame, batches: int) -> None:
    for idx in np.array_split(np.arange(len(rows)), batches):
        store.ingest(group, [FARE, RATING], rows.iloc[idx].reset_index(drop=True))


def _partition(path: str) -> str:
    return path.rsplit("/", 2)[-2]


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(list(frame.columns)).reset_index(drop=True)


def test_a_batch_writes_at_most_one_file_per_partition(offline_root: str) -> None:
    store = OfflineStore(offline_root)
    rows = _feature_rows(np.random.default_rng(1), 400, 6, with_avail=False)  # spans 3 days
    parts = [rows.iloc[idx].reset_index(drop=True) for idx in np.array_split(np.arange(len(rows)), 5)]
    results = [store.ingest(TRIPS, [FARE, RATING], part) for part in parts]
    for result in results:
        partitions = [_partition(f) for f in result.files]
        assert len(partitions) == len(set(partitions)) > 1  # many dates, one file each
    files = store.files("trips")
    per_partition = pd.Series([_partition(f) for f in files]).value_counts()
    assert per_partition.max() == len(results)  # one per batch that touched the partition, no more
    assert len(store.read_range(TRIPS, [FARE], None, None)) == len(rows)


@pytest.mark.parametrize("group", [TRIPS, LATE], ids=["event-time", "availability-time"])
def test_compaction_merges_partitions_and_keeps_every_answer(offline_root: str, group: FeatureGroup) -> None:
    rng = np.random.default_rng(3)
    store = OfflineStore(offline_root)
    rows = _feature_rows(rng, 600, 8, with_avail=group is LATE)
    _ingest(store, group, rows, batches=6)  # same entity and time in several batches: ties
    _ingest(store, group, rows.iloc[:50].assign(fare=99.0), batches=1)  # a later batch wins its ties
    entities = _entity_rows(rng, 400, 8)
    before_files = store.files("trips")
    before_pit = store.historical(entities, [(group, [FARE, RATING])])
    before_range = store.read_range(group, [FARE, RATING], None, None)
    before_latest = store.read_range(group, [FARE, RATING], None, None, latest=True)
    before_mat = store.materialization_rows(group, [FARE, RATING], None, pd.Timestamp("2026-04-01"))

    result = store.compact("trips")

    partitions = {_partition(f) for f in before_files}
    after_files = store.files("trips")
    assert isinstance(result, CompactionResult)
    assert (result.files_before, result.files_after) == (len(before_files), len(partitions))
    assert len(after_files) == len(partitions) < len(before_files)
    assert result.rows == len(rows) + 50 and result.bytes_after > 0 and result.bytes_before > 0
    assert (before_pit["fare"] == 99.0).any()  # the later batch's ties matter on this data
    pd.testing.assert_frame_equal(store.historical(entities, [(group, [FARE, RATING])]), before_pit)
    pd.testing.assert_frame_equal(
        _sorted(store.read_range(group, [FARE, RATING], None, None)), _sorted(before_range)
    )
    pd.testing.assert_frame_equal(
        store.read_range(group, [FARE, RATING], None, None, latest=True), before_latest
    )
    after_mat = store.materialization_rows(group, [FARE, RATING], None, pd.Timestamp("2026-04-01"))
    assert sorted(after_mat) == sorted(before_mat)
    place = store.place
    assert len(place.glob("trips", "date=*", "part-*.parquet")) == len(partitions)  # old files deleted
    assert place.names("trips", COMMITS) == [result.marker]  # every batch marker retired
    again = store.compact("trips")
    assert (again.files_before, again.files_after, again.marker) == (len(partitions), len(partitions), None)


def test_a_second_compaction_drops_the_first_marker_and_retries_add_no_rows(offline_root: str) -> None:
    store = OfflineStore(offline_root)
    rows = _feature_rows(np.random.default_rng(5), 300, 5, with_avail=False)
    first, second = rows.iloc[:150].reset_index(drop=True), rows.iloc[150:].reset_index(drop=True)
    store.ingest(TRIPS, [FARE, RATING], first)
    store.ingest(TRIPS, [FARE, RATING], second.iloc[:50])
    one = store.compact("trips")
    store.ingest(TRIPS, [FARE, RATING], second.iloc[50:].reset_index(drop=True))
    store.ingest(TRIPS, [FARE, RATING], first)  # a retried, already compacted batch: no duplicates
    assert len(store.read_range(TRIPS, [FARE], None, None)) == len(rows)
    two = compact(offline_root, "trips")  # the module function, on the root's URL

    assert two.marker not in (None, one.marker)
    assert store.place.names("trips", COMMITS) == [two.marker]  # the first marker's files all merged again
    assert len(store.read_range(TRIPS, [FARE], None, None)) == len(rows)
    store.ingest(TRIPS, [FARE, RATING], first)  # its retire list was carried into the new marker
    assert len(store.read_range(TRIPS, [FARE], None, None)) == len(rows)
    with pytest.raises(ValueError, match="min_files=1"):
        store.compact("trips", min_files=1)


class _Reader(threading.Thread):
    """Reads the group's row count in a loop, recording each, until told to stop."""

    def __init__(self, store: OfflineStore) -> None:
        super().__init__(daemon=True)
        self.store = store
        self.counts: list[int] = []
        self.errors: list[BaseException] = []
        self.stop, self.done = threading.Event(), threading.Condition()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                n = len(self.store.read_range(TRIPS, [FARE], None, None))
            except BaseException as exc:  # recorded and asserted on by the test
                self.errors.append(exc)
                return
            with self.done:
                self.counts.append(n)
                self.done.notify_all()

    def wait_reads(self, n: int) -> None:
        """Wait until ``n`` more reads completed (at least one of them started after this call)."""
        with self.done:
            target = len(self.counts) + n
            assert self.done.wait_for(lambda: len(self.counts) >= target or bool(self.errors), timeout=120)


def test_a_concurrent_reader_sees_exactly_every_row_at_every_step(
    offline_root: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = OfflineStore(offline_root)
    rows = _feature_rows(np.random.default_rng(7), 400, 6, with_avail=False)
    _ingest(store, TRIPS, rows, batches=4)
    reader = _Reader(OfflineStore(offline_root))  # another store object: shares nothing but the files
    place, steps = store.place, {"n": 0}
    real_table, real_bytes, real_remove = place.write_table, place.write_bytes, place.remove

    def step(call: Any, *args: Any) -> None:
        call(*args)
        steps["n"] += 1
        reader.wait_reads(2)  # a whole read in the state this step left

    monkeypatch.setattr(place, "write_table", lambda path, table: step(real_table, path, table))
    monkeypatch.setattr(place, "write_bytes", lambda path, data: step(real_bytes, path, data))
    monkeypatch.setattr(place, "remove", lambda paths: [step(real_remove, [p]) for p in list(paths)])

    reader.start()
    reader.wait_reads(1)
    result = store.compact("trips")
    reader.stop.set()
    reader.join(timeout=120)

    assert not reader.errors
    assert steps["n"] > result.files_before  # every merged file, the marker and each deletion
    assert len(reader.counts) >= 2 * steps["n"]
    assert set(reader.counts) == {len(rows)}  # never both sets (double rows), never neither


def test_a_read_whose_files_are_compacted_away_under_it_reads_again(offline_root: str) -> None:
    store = OfflineStore(offline_root)
    rows = _feature_rows(np.random.default_rng(8), 200, 4, with_avail=False)
    _ingest(store, TRIPS, rows, batches=3)
    real_files, calls = store.files, {"n": 0}

    def files_then_compact(group: str) -> list[str]:
        listed = real_files(group)
        calls["n"] += 1
        if calls["n"] == 1:  # the read has its listing; the files it names go away before DuckDB opens them
            compact(store.place, group)
        return listed

    store.files = files_then_compact  # type: ignore[method-assign]
    assert len(store.read_range(TRIPS, [FARE], None, None)) == len(rows)
    assert calls["n"] >= 3  # the stale listing, the check that saw it change, the read again
    assert store.unreadable == {}  # the deleted files were not taken for damaged ones


def test_a_damaged_file_is_left_out_of_compaction_and_still_skipped(offline_root: str) -> None:
    store = OfflineStore(offline_root)
    day = pd.Timestamp("2026-03-01 10:00")
    batches = [
        pd.DataFrame({"driver_id": range(20), "ts": day, "fare": np.arange(20.0) + k, "rating": k})
        for k in range(3)
    ]
    results = [store.ingest(TRIPS, [FARE, RATING], b) for b in batches]
    damaged = results[1].files[0]
    place = store.place
    place.write_bytes(place.path(damaged.split(place.root, 1)[1].lstrip("/")), b"PAR1 garbled")
    result = store.compact("trips")
    assert (result.files_before, result.files_after, result.rows) == (3, 2, 40)
    assert [c.path for c in store.verify("trips")] == [damaged]
    assert len(store.read_range(TRIPS, [FARE], None, None)) == 40
    assert damaged in store.unreadable


def _names(listing_files: Iterable[str]) -> list[str]:
    return [f.rsplit("/", 1)[-1] for f in listing_files]


def test_files_without_a_marker_stay_invisible_and_untouched(offline_root: str) -> None:
    store = OfflineStore(offline_root)
    frame = pd.DataFrame({"driver_id": [1, 2], "ts": pd.Timestamp("2026-03-01"), "fare": [1.0, 2.0]})
    fare_only = [Feature("trips", "fare", 1, "float", "active")]
    for k in range(2):
        store.ingest(TRIPS, fare_only, frame.assign(fare=frame["fare"] + k))
    place = store.place
    orphan = place.path("trips", "date=2026-03-01", "part-00000000000000000000.parquet")
    place.write_table(orphan, place.read_table(place.glob("trips", "date=*", "part-*.parquet")[0]))
    store.compact("trips")
    assert place.exists(orphan)  # a batch still being written: compaction leaves it alone
    assert "part-00000000000000000000.parquet" not in _names(list_committed(place, "trips").files)
    assert len(store.read_range(TRIPS, fare_only, None, None)) == 4
