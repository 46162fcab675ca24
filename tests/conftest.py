"""Shared fixtures: Prefect harness, Dask cluster, metadata databases, registries.

The Prefect test harness and the Dask ``LocalCluster`` are session-scoped:
starting either costs seconds, and every Dask worker that runs a Prefect task
must reach the same Prefect API.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from storage.artifacts import ArtifactStore
from storage.db import Database
from storage.registry.core import Registry
from tests.s3_server import MotoS3, aws_environment

POSTGRES_URL = os.environ.get("MLOPS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _postgres_reason() -> str | None:
    try:
        engine = sa.create_engine(POSTGRES_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.exec_driver_sql("select 1")
        engine.dispose()
    except Exception as exc:  # any failure means: no server to test against
        return f"no PostgreSQL server answers at {POSTGRES_URL}: {type(exc).__name__}"
    return None


_PG_REASON = _postgres_reason()

REDIS_URL = os.environ.get("MLOPS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def _redis_reason() -> str | None:
    try:
        import redis

        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except Exception as exc:  # any failure: nothing to test against
        return f"no Redis server answers at {REDIS_URL}: {type(exc).__name__}"
    return None


_REDIS_REASON = _redis_reason()


@pytest.fixture(params=["sqlite", "redis"])
def online_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The online store URL: a SQLite file, and a unique key prefix on the real Redis (skips without one)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'online.db'}"
        return
    if _REDIS_REASON:
        pytest.skip(_REDIS_REASON)
    import redis

    prefix = f"mlops-test-{uuid.uuid4().hex}:"
    yield f"{REDIS_URL}?prefix={prefix}"
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own MLOPS_HOME, so nothing leaks between tests."""
    home = tmp_path / "mlops-home"
    monkeypatch.setenv("MLOPS_HOME", str(home))
    monkeypatch.delenv("MLOPS_DATABASE_URL", raising=False)
    for part in ("ARTIFACT_ROOT", "STORAGE_URL", "FEATURE_ROOT", "PREDICTION_LOG_ROOT", "GROUND_TRUTH_ROOT"):
        monkeypatch.delenv(f"MLOPS_{part}", raising=False)
    monkeypatch.setenv("MLOPS_USER", "tester")
    return home


@pytest.fixture(scope="session")
def s3_server() -> Iterator[MotoS3]:
    """One S3 API (moto's server) on 127.0.0.1 for the whole session."""
    server = MotoS3().start()
    yield server
    server.stop()


@pytest.fixture
def s3_url(s3_server: MotoS3, monkeypatch: pytest.MonkeyPatch) -> str:
    """``s3://<fresh bucket>/mlops``, with the AWS variables pointing at the test's S3 server."""
    from s3fs import S3FileSystem

    for key, value in aws_environment(s3_server.endpoint).items():
        monkeypatch.setenv(key, value)
    # fsspec caches filesystems without the endpoint (read from the environment) in the key
    S3FileSystem.clear_instance_cache()
    return f"s3://{s3_server.new_bucket()}/mlops"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL schema for one test (skips when no server)."""
    if _PG_REASON:
        pytest.skip(_PG_REASON)
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in POSTGRES_URL else "?"
    try:
        yield f"{POSTGRES_URL}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The metadata database URL: SQLite in a temporary folder, and PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'mlops.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    yield database
    database.dispose()


@pytest.fixture
def artifact_store(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore(str(tmp_path / "artifacts"))


@pytest.fixture
def registry(db: Database, artifact_store: ArtifactStore) -> Registry:
    """A registry on each database backend, acting as 'tester'."""
    return Registry(db, artifact_store, actor="tester")


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """One Prefect test server for the whole session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def dask_cluster() -> Iterator[object]:
    """One in-process Dask cluster for the whole session."""
    from distributed import LocalCluster

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None)
    try:
        yield cluster
    finally:
        cluster.close()
