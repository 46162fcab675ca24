"""A disk that fills while an artifact or a Parquet batch is written (a 2 MiB tmpfs).

Expected: a StorageFullError naming the store; nothing of the failed write is
visible (no version, no file of the batch, no temporary file); the store
verifies clean; and once space is there again the same write succeeds.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from storage.artifacts import ArtifactStore
from storage.audit import AuditLog
from storage.db import Database
from storage.errors import StorageFullError
from storage.features.definitions import Feature, FeatureGroup
from storage.features.offline import OfflineStore
from storage.registry.core import Registry

pytestmark = pytest.mark.chaos

SIZE = 2 * 1024 * 1024


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs (needs root: skipped with the reason when mount fails)."""
    folder = tmp_path / "small-disk"
    folder.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={SIZE}", "tmpfs", str(folder)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.strip() or done.returncode}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def _stored_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_an_artifact_that_fills_the_disk_leaves_no_trace(small_disk: Path, tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'mlops.db'}")
    store = ArtifactStore(str(small_disk / "artifacts"))
    registry = Registry(db, store, actor="tester")
    registry.create_model("fraud")

    def register(size: int) -> int:
        files = {"model.bin": os.urandom(size)}
        return registry.create_version("fraud", framework="sklearn", artifacts=files).number

    first = register(100_000)
    before = _stored_files(small_disk)
    with pytest.raises(StorageFullError, match=f"artifact store {small_disk / 'artifacts'} is full"):
        register(3 * SIZE // 2)
    assert [v.number for v in registry.all_versions("fraud")] == [first]  # no half version
    assert _stored_files(small_disk) == before  # nothing half-written, no temporary file
    upload = store.begin_upload()
    with pytest.raises(StorageFullError):
        for _ in range(3):
            upload.write(os.urandom(SIZE // 2))
        upload.commit()
    assert _stored_files(small_disk) == before
    assert store.verify() == []
    again = register(200_000)
    assert registry.verify_version("fraud", again).ok and registry.verify_version("fraud", first).ok
    assert store.verify() == [] and AuditLog(db).verify().ok
    db.dispose()


def test_a_parquet_batch_that_fills_the_disk_is_not_visible(small_disk: Path) -> None:
    group = FeatureGroup("trips", "driver", ("driver_id",), "ts", ttl_seconds=86_400)
    note = Feature("trips", "note", 1, "string", "active")
    store = OfflineStore(small_disk / "offline")
    small = pd.DataFrame({"driver_id": [1, 2], "ts": pd.Timestamp("2026-01-01 10:00"), "note": ["a", "b"]})
    store.ingest(group, [note], small)
    before = _stored_files(small_disk)
    # two event dates: the first file fits, the second fills the disk; neither may show
    rows = 2_500
    big = pd.DataFrame(
        {
            "driver_id": range(rows),
            "ts": [pd.Timestamp("2026-01-02 10:00")] * 10 + [pd.Timestamp("2026-01-03 10:00")] * (rows - 10),
            "note": [os.urandom(1_000).hex() for _ in range(rows)],  # 2 kB each, 1 kB once compressed
        }
    )
    with pytest.raises(StorageFullError, match="offline store .* is full"):
        store.ingest(group, [note], big)
    assert _stored_files(small_disk) == before
    assert store.read_range(group, [note], None, None)["note"].tolist() == ["a", "b"]
    assert store.verify("trips") == []
    store.ingest(group, [note], big.head(300))  # room for a smaller batch: it commits
    assert len(store.read_range(group, [note], None, None)) == 302
