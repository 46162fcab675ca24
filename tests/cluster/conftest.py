"""The cluster of tests/cluster: started once per module (skips without PostgreSQL or Redis)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.cluster.hosts import Cluster
from tests.conftest import _PG_REASON, _REDIS_REASON, POSTGRES_URL, REDIS_URL


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    if _PG_REASON or _REDIS_REASON:
        pytest.skip(_PG_REASON or _REDIS_REASON or "")
    running = Cluster(tmp_path_factory.mktemp("cluster"), POSTGRES_URL, REDIS_URL).start()
    try:
        yield running
    finally:
        running.stop()
