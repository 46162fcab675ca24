"""PostgreSQL connections terminated (``pg_terminate_backend``) during registrations and approvals.

A thread terminates this test's own connections (matched by their
``application_name``, never anyone else's) every 50 to 250 milliseconds
while versions are registered and approval requests opened and decided. Each
operation either completes, or fails with an UnavailableError naming the
database, and is then retried the way the Prefect tasks retry it
(registration with the same idempotency key; a reviewer's decision is a no-op
when repeated). Afterwards: every version exists exactly once with its
artifact, every decision once, and the audit chain verifies.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
import sqlalchemy as sa

from blocks.policy import StagePolicy
from storage.artifacts import ArtifactStore
from storage.audit import AuditLog
from storage.db import Database
from storage.errors import UnavailableError
from storage.registry.approvals import ApprovalStore
from storage.registry.core import IDEMPOTENCY_TAG, Registry

pytestmark = [pytest.mark.chaos, pytest.mark.postgres, pytest.mark.slow]

T = TypeVar("T")
MIN_VERSIONS, MAX_VERSIONS, WANTED_FAILURES = 24, 400, 3


def test_terminated_connections_never_leave_half_an_operation(postgres_url: str, tmp_path: Path) -> None:
    app = f"mlops-chaos-{uuid.uuid4().hex[:8]}"
    url = f"{postgres_url}&application_name={app}"
    db = Database(url)
    registry = Registry(db, ArtifactStore(str(tmp_path / "artifacts")), actor="trainer")
    approvals = ApprovalStore(registry)
    policy = StagePolicy(required_approvals=2, allowed_roles=["risk"], alias="candidate")
    registry.create_model("fraud")
    approvals.set_reviewer("ana", ["risk"], actor="admin")
    approvals.set_reviewer("bo", ["risk"], actor="admin")

    stop, terminated = threading.Event(), Counter[str]()
    admin = sa.create_engine(postgres_url.split("?")[0], isolation_level="AUTOCOMMIT")

    def terminate() -> None:
        query = sa.text(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = :a"
        )
        chance = random.Random(17)
        with admin.connect() as conn:
            while not stop.wait(chance.uniform(0.05, 0.25)):
                terminated["connections"] += int(conn.execute(query, {"a": app}).scalar_one())

    failures: Counter[str] = Counter()

    def retried(operation: Callable[[], T], done: Callable[[], T | None] | None = None) -> T:
        """The operation, tried again after a lost connection; ``done`` finds an earlier try that
        committed although its answer was lost (what a careful caller checks before opening twice)."""
        for tries in range(20):
            try:
                if done is not None and tries and (found := retried(done)) is not None:
                    return found
                return operation()
            except UnavailableError as exc:
                assert "metadata database" in str(exc)
                failures["committing" if "while committing" in str(exc) else "before commit"] += 1
        raise AssertionError("20 tries in a row lost their connection")

    killer = threading.Thread(target=terminate, daemon=True)
    killer.start()
    try:
        i = -1
        # until enough operations were cut off mid-way (most terminations hit idle pooled connections,
        # which the pool's pre-ping replaces unnoticed)
        while i + 1 < MIN_VERSIONS or (sum(failures.values()) < WANTED_FAILURES and i + 1 < MAX_VERSIONS):
            i += 1
            key = f"train-run-{i}"
            mv = retried(lambda key=key, i=i: registry.create_version(  # type: ignore[misc]
                "fraud", framework="sklearn", artifacts={"model.bin": f"weights {i}".encode()},
                idempotency_key=key, metrics={"auc": 0.9},
            ))  # fmt: skip
            if i % 3 == 0:
                request = retried(
                    lambda n=mv.number: approvals.open_request(  # type: ignore[misc]
                        "fraud", n, "staging", requested_by="trainer", policy=policy, gates=[]
                    ),
                    done=lambda n=mv.number: _request_of(approvals, n),  # type: ignore[misc]
                )
                for reviewer in ("ana", "bo"):
                    retried(lambda r=reviewer, q=request.id: approvals.decide(q, r, "approve"))  # type: ignore[misc]
                retried(
                    lambda q=request.id: approvals.apply(q, actor="release"),  # type: ignore[misc]
                    done=lambda q=request.id: _applied(approvals, q),  # type: ignore[misc]
                )
            time.sleep(0.01)
    finally:
        stop.set()
        killer.join(10)
        admin.dispose()

    made = i + 1
    versions = sorted(registry.all_versions("fraud"), key=lambda v: v.number)
    assert [v.number for v in versions] == list(range(1, made + 1))  # each once, no gap
    keys = [str(v.tags.get(IDEMPOTENCY_TAG)) for v in versions]
    assert sorted(keys) == sorted(f"train-run-{i}" for i in range(made))
    assert all(registry.verify_version("fraud", v.number).ok for v in versions)
    requests = approvals.list()
    assert len(requests) == len(range(0, made, 3))  # none opened twice
    assert all(r.status == "promoted" and len(r.decisions) == 2 for r in requests)
    assert [v.number for v in versions if v.stage == "staging"] == list(range(1, made + 1, 3))
    assert AuditLog(db).verify().ok
    print(
        f"\npg_terminate_backend every 50-250 ms: {terminated['connections']} connections terminated, "
        f"{sum(failures.values())} operations failed clearly and were retried "
        f"({failures['committing']} while committing), {made} versions and "
        f"{len(requests)} approvals complete, none doubled, audit chain intact"
    )
    assert terminated["connections"] > 0 and sum(failures.values()) >= WANTED_FAILURES
    db.dispose()


def _request_of(approvals: ApprovalStore, number: int) -> Any:
    found = [r for r in approvals.list(model="fraud") if r.version == number]
    return found[0] if found else None


def _applied(approvals: ApprovalStore, request_id: int) -> Any:
    request = approvals.get(request_id)
    return request if request.status == "promoted" else None
