"""Metadata database: migrations, SQLite settings, concurrency, crash safety."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from storage.artifacts import ArtifactStore
from storage.audit import AuditLog
from storage.db import Database, current_revision, head_revision
from storage.registry.core import Registry
from storage.schema import metadata


def test_migrations_create_exactly_the_schema(db: Database) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    assert current_revision(db) == head_revision()
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []


def test_sqlite_runs_in_wal_mode_with_foreign_keys(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'm.db'}")
    with db.read() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 30_000


def _create_versions(url: str, root: str, worker: int, count: int, start_at: float) -> list[int]:
    registry = Registry.open(url, root, actor=f"worker-{worker}")
    while time.time() < start_at:
        time.sleep(0.005)
    return [
        registry.create_version(
            "shared",
            framework="sklearn",
            bump="patch",
            metrics={"worker": worker},
            artifacts={"model.bin": f"{worker}-{i}".encode()},
        ).number
        for i in range(count)
    ]


@pytest.mark.slow
def test_eight_processes_create_400_versions_at_once(
    registry: Registry, database_url: str, tmp_path: Path
) -> None:
    registry.create_model("shared")
    root = str(tmp_path / "artifacts")
    start_at = time.time() + 4.0
    with mp.get_context("spawn").Pool(8) as pool:
        results = pool.starmap(_create_versions, [(database_url, root, w, 50, start_at) for w in range(8)])
    numbers = sorted(n for chunk in results for n in chunk)
    assert numbers == list(range(1, 401))
    versions = registry.all_versions("shared")
    assert len(versions) == 400
    assert len({v.semver for v in versions}) == 400
    assert all(v.semver == f"0.0.{v.number}" for v in versions)
    report = AuditLog(registry.db).verify()
    assert report.ok and report.checked == 401


_CRASHING_CHILD = textwrap.dedent(
    """
    import os, signal, sys
    import storage.registry.core as registry_module
    from storage.registry.core import Registry

    def die(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGKILL)

    registry = Registry.open(sys.argv[1], sys.argv[2], actor="crasher")
    # The artifact is already stored and the version rows are inserted when
    # the audit entry is appended: die there, inside the open transaction.
    registry_module.append_entry = die
    registry.create_version("fraud", framework="sklearn", artifacts={"model.bin": b"weights"})
    """
)


def test_process_killed_mid_commit_leaves_no_version(
    registry: Registry, database_url: str, tmp_path: Path
) -> None:
    registry.create_model("fraud")
    root = str(tmp_path / "artifacts")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.run(
        [sys.executable, "-c", _CRASHING_CHILD, database_url, root],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert registry.search_versions(model="fraud").items == []
    assert AuditLog(registry.db).verify().ok
    version = registry.create_version("fraud", framework="sklearn", artifacts={"model.bin": b"weights"})
    assert (version.number, version.semver) == (1, "0.1.0")
    assert registry.load_artifact("fraud", 1, "model.bin") == b"weights"


def test_failure_between_artifact_write_and_commit_is_retryable(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry.create_model("fraud")

    def fail(*args: object, **kwargs: object) -> None:
        raise ConnectionError("database went away")

    monkeypatch.setattr(registry, "_insert_version", fail)
    with pytest.raises(ConnectionError):
        registry.create_version("fraud", framework="sklearn", artifacts={"model.bin": b"w"})
    monkeypatch.undo()
    assert registry.get_model("fraud").latest_version is None
    assert registry.create_version("fraud", framework="sklearn", artifacts={"model.bin": b"w"}).number == 1


def test_read_does_not_block_on_a_writer(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'm.db'}")
    reg = Registry(db, ArtifactStore(str(tmp_path / "a")))
    reg.create_model("m")
    with db.write() as conn:
        conn.execute(sa.text("UPDATE models SET description = 'x'"))
        started = time.perf_counter()
        assert reg.get_model("m").description == ""
        assert time.perf_counter() - started < 5
