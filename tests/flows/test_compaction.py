"""The compact-files flow runs for real under the Prefect test harness."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from flows.compaction import compact_files
from storage.monitoring.prediction_log import PredictionLog

pytestmark = pytest.mark.usefixtures("prefect_harness")


def _many_small_files(log: PredictionLog, models: int = 2, days: int = 3, files: int = 6) -> None:
    start = datetime(2026, 5, 1, 9, tzinfo=UTC)
    for m in range(models):
        for d in range(days):
            for f in range(files):
                ts = start + timedelta(days=d, minutes=f)
                log.append(
                    [{"request_id": f"m{m}-{d}-{f}-{i}", "model": f"model{m}", "version": 1, "ts": ts,
                      "entity_key": {"card_id": i}, "prediction": i, "latency_ms": 1.0} for i in range(3)]
                )  # fmt: skip


def test_compact_files_merges_small_files_and_keeps_every_row() -> None:
    from prefect.artifacts import Artifact

    log = PredictionLog.from_settings()
    _many_small_files(log)
    files_before, rows_before = len(log.files()), log.read()
    summary = compact_files()
    plog = summary["prediction_log"]
    assert plog["files_before"] == files_before and plog["files_after"] == len(log.files()) < files_before
    assert len(log.files()) == 2 * 3  # one file per model and day
    assert log.read().equals(rows_before) and plog["rows"] == len(rows_before)
    assert isinstance(summary["feature_groups"], dict)
    artifact: Any = Artifact.get("compact-files")
    assert artifact is not None and f"| prediction log | {files_before} | {len(log.files())} |" in str(
        artifact.data
    )


def test_compact_files_on_a_log_under_an_object_store_url(s3_url: str) -> None:
    log = PredictionLog(s3_url + "/predictions")
    _many_small_files(log, models=1, days=1, files=4)
    summary = compact_files(prediction_log_root=log.root)
    assert summary["prediction_log"]["files_before"] == 4 and len(log.files()) == 1
    assert len(log.read()) == 4 * 3
