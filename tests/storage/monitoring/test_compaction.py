"""Compaction of the prediction log: fewer files, the same rows, and no reader ever sees both or neither.

Every test runs on a local folder and on S3 (moto's server).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from storage.errors import ValidationError
from storage.monitoring.partitions import MANIFEST, MERGED
from storage.monitoring.prediction_log import PredictionLog

DAYS, FILES, ROWS = 3, 4, 5  # per model: days x files x rows
N = 2 * DAYS * FILES * ROWS


@pytest.fixture(params=["local", "s3"])
def root(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "s3":
        return str(request.getfixturevalue("s3_url")) + "/predictions"
    return str(tmp_path / "predictions")


def _records(model: str, day: int, batch: int, card: int = 1) -> list[dict[str, Any]]:
    return [
        {"request_id": f"{model}-{day}-{batch}-{i}", "model": model, "version": 1,
         "ts": datetime(2026, 4, day, 10, batch, i, tzinfo=UTC), "entity_key": {"card_id": card + i % 2},
         "features": {"x": i}, "prediction": i % 2, "latency_ms": 1.0}
        for i in range(ROWS)
    ]  # fmt: skip


def _filled(root: str) -> PredictionLog:
    log = PredictionLog(root)
    for model in ("fraud", "churn"):
        for day in range(1, DAYS + 1):
            for batch in range(FILES):
                log.append(_records(model, day, batch))
    return log


def _after_each_change(log: PredictionLog, check: Callable[[str], None]) -> None:
    """Call ``check(step)`` after every write and removal the log makes to its store."""
    place = log.place
    write_table, write_bytes, remove = place.write_table, place.write_bytes, place.remove

    def on_table(path: str, table: Any, compression: str = "zstd") -> None:
        write_table(path, table, compression)
        check(f"wrote {path}")

    def on_bytes(path: str, data: bytes) -> None:
        write_bytes(path, data)
        check(f"wrote {path}")

    def on_remove(paths: Iterable[str]) -> None:
        listed = list(paths)
        remove(listed)
        check(f"removed {listed}")

    place.write_table, place.write_bytes, place.remove = on_table, on_bytes, on_remove  # type: ignore[method-assign]


def test_compaction_merges_each_partition_and_keeps_every_row(root: str) -> None:
    log = _filled(root)
    log.append(_records("fraud", 9, 0))  # a partition of one file: nothing to merge
    before = log.read()
    result = log.compact()
    assert result.files_before == 2 * DAYS * FILES + 1
    assert result.files_after == 2 * DAYS + 1 == len(log.files())
    assert result.partitions == 2 * DAYS and result.rows == N and result.conflicts == 0
    assert log.read().equals(before)
    assert all(f.rsplit("/", 1)[1].startswith(MERGED) for f in log.files("churn"))
    again = log.compact("fraud")
    assert again.partitions == 0 and again.files_before == again.files_after == DAYS + 1
    assert log.verify() == [] and log.read().equals(before)


def test_min_files_leaves_smaller_partitions_alone(root: str) -> None:
    log = _filled(root)
    assert log.compact("fraud", min_files=FILES + 1).partitions == 0
    assert len(log.files("fraud")) == DAYS * FILES
    with pytest.raises(ValidationError, match="min_files 1"):
        log.compact(min_files=1)


def test_no_step_of_a_compaction_shows_a_row_twice_or_not_at_all(root: str) -> None:
    log = _filled(root)
    reader = PredictionLog(root)
    seen: list[tuple[str, int]] = []
    _after_each_change(log, lambda step: seen.append((step, len(reader.read()))))
    log.compact()
    assert len(seen) > 3 * 2 * DAYS  # output, manifest and removal in every partition
    assert [step for step, count in seen if count != N] == []


def test_a_reader_in_a_loop_always_counts_every_row_once(root: str) -> None:
    log = _filled(root)
    counts: list[int] = []
    reading, done = threading.Event(), threading.Event()

    def read_in_a_loop() -> None:
        reader = PredictionLog(root)
        while not done.is_set():
            counts.append(len(reader.read()))
            reading.set()

    thread = threading.Thread(target=read_in_a_loop)
    thread.start()
    assert reading.wait(60)
    try:
        result = log.compact()
    finally:
        done.set()
        thread.join(60)
    assert result.partitions == 2 * DAYS
    assert counts and set(counts) == {N}


def test_appends_during_a_compaction_are_kept(root: str) -> None:
    log = _filled(root)
    writer = PredictionLog(root)
    added: list[str] = []

    def append_into_the_partition(step: str) -> None:
        if MANIFEST in step and len(added) < 3:  # between the merged file's arrival and the inputs' removal
            added.extend(writer.append(_records("fraud", 1, 50 + len(added))))

    _after_each_change(log, append_into_the_partition)
    log.compact()
    assert len(added) == 3
    assert len(log.read()) == N + 3 * ROWS
    assert set(map(log.place.uri, added)) <= set(log.files("fraud"))


def test_erasure_after_compaction_finds_the_rows_and_compaction_never_brings_them_back(root: str) -> None:
    log = _filled(root)
    log.compact()
    expected = len(log.read().query("entity_key == 'card_id=2'"))
    assert expected > 0 and log.count("card_id=2") == expected
    assert log.erase("card_id=2") == expected
    for batch in range(2):
        log.append(_records("fraud", 1, 50 + batch, card=3))
    log.compact()
    assert log.count("card_id=2") == 0 and len(log.read()) == N - expected + 2 * ROWS


@pytest.mark.parametrize("moment", ["before the manifest", "after the manifest"])
def test_an_erasure_in_the_middle_of_a_compaction_is_not_undone(root: str, moment: str) -> None:
    log = _filled(root)
    eraser = PredictionLog(root)
    expected = len(log.read().query("entity_key == 'card_id=2'"))
    others = len(log.read().query("entity_key == 'card_id=1'"))
    erased: list[int] = []

    def erase_once(step: str) -> None:
        merged_written = MERGED in step and "wrote" in step
        manifest_written = MANIFEST in step and "wrote" in step
        if not erased and (merged_written if moment == "before the manifest" else manifest_written):
            erased.append(eraser.erase("card_id=2"))

    _after_each_change(log, erase_once)
    log.compact("fraud")
    assert erased == [expected] and log.count("card_id=2") == 0
    assert len(log.read()) == N - expected
    assert len(log.read().query("entity_key == 'card_id=1'")) == others
