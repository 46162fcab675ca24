"""Many clients registering versions of one model at once, through the service, on SQLite and PostgreSQL.

Eight threads, each with its own :class:`mlops.Client` (its own connection
pool), create 50 versions each of the same model, every one with a small file.
The registry must hand out the numbers 1..400 exactly once, store each
version's file, and leave an intact audit chain.
"""

from __future__ import annotations

import threading

import pytest

from mlops.client import Client
from storage.audit import AuditLog
from storage.registry.records import ModelVersion
from tests.service.conftest import Service

THREADS = 8
PER_THREAD = 50
TOTAL = THREADS * PER_THREAD


@pytest.mark.slow
def test_eight_clients_create_400_versions_of_one_model(service: Service) -> None:
    service.registry.create_model("shared")
    created: list[list[ModelVersion]] = [[] for _ in range(THREADS)]
    errors: list[BaseException] = []
    start = threading.Barrier(THREADS)

    def work(t: int) -> None:
        try:
            with Client(service.url, service.keys["contributor"]) as client:
                start.wait()
                for i in range(PER_THREAD):
                    mv = client.create_version(
                        "shared",
                        framework="custom",
                        artifacts={"model.bin": f"thread {t} version {i}".encode()},
                        metrics={"auc": t + i / 100},
                        tags={"thread": str(t), "index": str(i)},
                    )
                    created[t].append(mv)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
            start.abort()

    threads = [threading.Thread(target=work, args=(t,)) for t in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    assert not errors, errors[0]

    numbers = [mv.number for part in created for mv in part]
    assert sorted(numbers) == list(range(1, TOTAL + 1))
    for t, part in enumerate(created):
        assert [mv.number for mv in part] == sorted(mv.number for mv in part)  # each client in order
        assert [mv.tags["index"] for mv in part] == [str(i) for i in range(PER_THREAD)]
        assert {mv.tags["thread"] for mv in part} == {str(t)}

    stored = service.registry.all_versions("shared")
    assert sorted(v.number for v in stored) == list(range(1, TOTAL + 1))
    assert len({v.semver for v in stored}) == TOTAL
    assert len({(v.tags["thread"], v.tags["index"]) for v in stored}) == TOTAL
    assert service.registry.get_model("shared").latest_version == TOTAL
    for v in stored[:: TOTAL // 8]:
        expected = f"thread {v.tags['thread']} version {v.tags['index']}".encode()
        assert service.registry.load_artifact("shared", v.number, "model.bin") == expected

    report = AuditLog(service.registry.db).verify()
    assert report.ok, report.problem
    assert report.checked >= TOTAL
