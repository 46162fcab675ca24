"""The asynchronous prediction log writer: batching, flushing, dropping, failures."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from serving.predlog import LogBatch, PredictionLogWriter, batch_records, prediction_json
from serving.runtimes import Prediction
from storage.monitoring.prediction_log import PredictionLog


def item(rid: str, rows: int = 1, **kw: object) -> LogBatch:
    columns = {"amount": np.arange(rows, dtype=float), "country": np.array(["NL"] * rows, dtype=object)}
    pred = Prediction(labels=np.zeros(rows, dtype=int), probabilities=np.tile([0.75, 0.25], (rows, 1)))
    return LogBatch(rid, "fraud", 2, columns, pred, 3.0, **kw)  # type: ignore[arg-type]


def test_rows_flush_by_count_with_every_field(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path)
    writer = PredictionLogWriter(log, flush_rows=3, flush_s=60).start()
    try:
        assert writer.submit(item("a", endpoint="fraud-api", variant="blue"))
        assert writer.submit(item("b", rows=2))
        deadline = time.monotonic() + 60  # generous: a busy machine delays the writer
        while writer.rows_written < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        rows = log.read(model="fraud")
        assert rows["request_id"].tolist() == ["a", "b:0", "b:1"]
        first = rows.iloc[0]
        assert (first["endpoint"], first["variant"], first["version"], first["status"]) == (
            "fraud-api", "blue", 2, "ok"
        )  # fmt: skip
        assert json.loads(first["features"]) == {"amount": 0.0, "country": "NL"}
        assert json.loads(first["prediction"]) == {"label": 0, "score": 0.25}
        assert rows["latency_ms"].tolist() == [3.0, 1.5, 1.5]
    finally:
        writer.close()


def test_flush_by_time_and_on_close(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path)
    writer = PredictionLogWriter(log, flush_rows=1000, flush_s=0.1).start()
    writer.submit(item("t"))
    deadline = time.monotonic() + 30  # flushed by time (0.1 s), whatever else the machine runs
    while log.read().empty and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(log.read()) == 1
    writer.submit(item("u"))
    writer.close()
    assert log.read()["request_id"].tolist() == ["t", "u"]


def test_full_queue_drops_without_blocking(tmp_path: Path) -> None:
    writer = PredictionLogWriter(
        PredictionLog(tmp_path), max_rows=5, flush_s=60
    )  # not started: nothing drains
    assert writer.submit(item("a", rows=4))
    start = time.perf_counter()
    assert not writer.submit(item("b", rows=2))
    assert time.perf_counter() - start < 0.05
    assert (writer.rows_dropped, writer.waiting) == (2, 4)


def test_failed_writes_are_counted_and_others_kept(tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    writer = PredictionLogWriter(PredictionLog(blocked), flush_s=0.05).start()
    writer.submit(item("x"))
    writer.close()
    assert writer.rows_failed == 1 and writer.rows_written == 0

    log = PredictionLog(tmp_path / "ok")
    writer = PredictionLogWriter(log, flush_s=60).start()
    writer.submit(item("good"))
    writer.submit(LogBatch("bad", "no/slash", 1, {"x": np.zeros(1)}, None, 1.0))  # model name is invalid
    writer.close()
    assert (writer.rows_written, writer.rows_failed) == (1, 1)
    assert log.read()["request_id"].tolist() == ["good"]


def test_prediction_json_shapes() -> None:
    assert prediction_json(None, 2) == ["null", "null"]
    assert prediction_json(Prediction(values=np.array([1.5, np.nan])), 2) == ["1.5", "null"]
    three = Prediction(labels=np.array(["a"], dtype=object), probabilities=np.array([[0.2, 0.3, 0.5]]))
    assert prediction_json(three, 1) == ['{"label":"a"}']
    error = batch_records(LogBatch("e", "m", 1, {"x": np.zeros(1)}, None, 1.0, status="error"))[0]
    assert (error["prediction"], error["status"]) == ("null", "error")


def test_column_writer_equals_the_validating_append(tmp_path: Path) -> None:
    from serving.predlog import write_batches

    items = [
        item("a", 3, endpoint="e", variant="v"),
        item("b"),
        LogBatch("c", "other", 1, {}, None, 2.0, status="error"),
    ]
    fast, slow = PredictionLog(tmp_path / "fast"), PredictionLog(tmp_path / "slow")
    write_batches(fast, items)
    slow.append([r for i in items for r in batch_records(i)])
    assert fast.read().equals(slow.read())
    assert len(fast.read()) == 5


@pytest.mark.parametrize("where", ["local", "s3"])
def test_the_writer_appends_on_while_the_log_is_compacted(
    tmp_path: Path, where: str, request: pytest.FixtureRequest
) -> None:
    root = request.getfixturevalue("s3_url") + "/predictions" if where == "s3" else str(tmp_path)
    log = PredictionLog(root)
    writer = PredictionLogWriter(log, flush_rows=10_000, flush_s=60).start()
    submitted, flushed, done = [0], threading.Event(), threading.Event()

    def serve() -> None:  # one file per flush, until the compactions are over
        while not done.is_set():
            assert writer.submit(item(f"r{submitted[0]}", rows=2))
            submitted[0] += 2
            assert writer.flush(60)
            flushed.set()

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        merged = 0
        for _ in range(3):
            assert flushed.wait(60)
            flushed.clear()
            merged += PredictionLog(root).compact().partitions
    finally:
        done.set()
        thread.join(60)
        writer.close()
    assert merged >= 1 and writer.rows_failed == 0
    assert len(log.read(model="fraud")) == submitted[0] == writer.rows_written
