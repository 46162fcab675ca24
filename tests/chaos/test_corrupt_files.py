"""A damaged Parquet file in the prediction log or the offline store: named, and the rest still reads.

Two kinds of damage: a file cut in half (no footer: a partial copy, a crash
before the page cache reached the disk) and garbage written over its middle
(a disk error: the footer reads, a data page does not).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pandas as pd
import pytest

from storage.errors import IntegrityError
from storage.features.definitions import Feature, FeatureGroup
from storage.features.offline import OfflineStore
from storage.monitoring.prediction_log import PredictionLog

pytestmark = pytest.mark.chaos


def _truncate(path: str) -> None:
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.truncate(size // 2)


def _garble(path: str) -> None:
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.seek(4)
        f.write(os.urandom(max(16, size // 2 - 8)))


def _predictions(day: str, n: int, offset: int) -> list[dict[str, object]]:
    return [
        {"request_id": f"r{offset + i}", "model": "fraud", "version": 1, "ts": f"{day}T10:00:{i:02d}Z",
         "entity_key": {"card": offset + i}, "features": {"amount": float(i) * 1000.0 + 0.5},
         "prediction": {"label": i % 2}, "latency_ms": 1.0}
        for i in range(n)
    ]  # fmt: skip


def test_prediction_log_names_damaged_files_and_reads_the_rest(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log = PredictionLog(tmp_path / "predictions")
    (cut,) = log.append(_predictions("2026-01-01", 50, 0))
    (garbled,) = log.append(_predictions("2026-01-02", 50, 100))
    log.append(_predictions("2026-01-03", 50, 200))
    _truncate(str(cut))
    _garble(str(garbled))
    with caplog.at_level(logging.WARNING):
        frame = log.read("fraud")
    assert sorted(frame["request_id"]) == sorted(f"r{200 + i}" for i in range(50))
    assert str(cut) in caplog.text and str(garbled) in caplog.text
    assert {c.path for c in log.verify()} == {str(cut), str(garbled)}
    assert log.count({"card": 201}) == 1
    with pytest.raises(IntegrityError, match="does not read back"):
        log.erase({"card": 201})  # a damaged file might hold the entity: erasure stops, naming it


def test_offline_store_names_a_damaged_file_and_reads_the_rest(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    group = FeatureGroup("trips", "driver", ("driver_id",), "ts", ttl_seconds=86_400)
    fare = Feature("trips", "fare", 1, "float", "active")
    store = OfflineStore(tmp_path / "offline")
    batches = [
        pd.DataFrame(
            {"driver_id": range(100), "ts": pd.Timestamp(day), "fare": [float(i) for i in range(100)]}
        )
        for day in ("2026-01-01 10:00", "2026-01-02 10:00", "2026-01-03 10:00")
    ]
    results = [store.ingest(group, [fare], b) for b in batches]
    (damaged,) = results[1].files
    _garble(damaged)
    with caplog.at_level(logging.WARNING):
        rows = store.read_range(group, [fare], None, None)
    assert len(rows) == 200 and set(rows["ts"].dt.day) == {1, 3}
    assert damaged in caplog.text
    assert [c.path for c in store.verify("trips")] == [damaged]
    at = pd.to_datetime(["2026-01-01 12:00", "2026-01-03 12:00"])
    entities = pd.DataFrame({"driver_id": [5, 5], "event_timestamp": at})
    assert store.historical(entities, [(group, [fare])])["fare"].tolist() == [5.0, 5.0]
    # the retried batch rewrites the same file: it reads again
    store.ingest(group, [fare], batches[1])
    assert store.verify("trips") == []
    assert len(store.read_range(group, [fare], None, None)) == 300
    _truncate(results[2].files[0])
    assert len(OfflineStore(tmp_path / "offline").read_range(group, [fare], None, None)) == 200
