"""Approval requests on SQLite and PostgreSQL: reviewers, roles, expiry, atomic apply."""

from __future__ import annotations

import threading
import time

import pytest

from blocks.policy import StagePolicy
from storage.audit import AuditLog
from storage.errors import AlreadyExistsError, TransitionError, ValidationError
from storage.registry.approvals import ApprovalStore, GateOutcome
from storage.registry.core import Registry

PROD = StagePolicy(required_approvals=2, alias="champion")


@pytest.fixture
def store(registry: Registry) -> ApprovalStore:
    registry.create_model("fraud")
    for _ in range(2):
        registry.create_version("fraud", framework="sklearn")
        registry.transition_stage("fraud", "latest", "staging")
    return ApprovalStore(registry)


def test_two_approvals_then_apply_moves_stage_and_alias(store: ApprovalStore) -> None:
    req = store.open_request("fraud", 1, "production", requested_by="ana", policy=PROD, gates=[])
    assert store.decide(req.id, "bo", "approve", "ok").status == "pending"
    assert store.decide(req.id, "cy", "approve").status == "approved"
    done = store.apply(req.id, actor="ana")
    assert done.status == "promoted" and done.approvals == 2
    assert store.registry.get_version("fraud", "@champion").number == 1
    assert AuditLog(store.db).verify().ok


def test_reviewer_rules(store: ApprovalStore) -> None:
    policy = StagePolicy(required_approvals=2, allowed_roles=["ml-lead"])
    store.set_reviewer("bo", ["ml-lead"])
    store.set_reviewer("cy", ["intern"])
    req = store.open_request("fraud", 1, "production", requested_by="bo", policy=policy, gates=[])
    with pytest.raises(ValidationError, match="self-approval is not allowed: bo requested"):
        store.decide(req.id, "bo", "approve")
    with pytest.raises(ValidationError, match="needs one of the roles ml-lead, has intern"):
        store.decide(req.id, "cy", "approve")
    with pytest.raises(ValidationError, match="has none"):
        store.decide(req.id, "dan", "approve")
    store.set_reviewer("dan", ["ml-lead"])
    store.decide(req.id, "dan", "approve")
    assert store.decide(req.id, "dan", "approve").approvals == 1  # repeated: no-op
    with pytest.raises(AlreadyExistsError, match="dan already decided 'approve'"):
        store.decide(req.id, "dan", "reject")
    assert [d.reviewer for d in store.get(req.id).decisions] == ["dan"]


def test_rejection_ends_and_later_decisions_are_refused(store: ApprovalStore) -> None:
    req = store.open_request("fraud", 1, "production", requested_by="ana", policy=PROD, gates=[])
    assert store.decide(req.id, "bo", "reject", "too risky").status == "rejected"
    with pytest.raises(TransitionError, match="is rejected, not pending"):
        store.decide(req.id, "cy", "approve")
    with pytest.raises(TransitionError, match="not approved"):
        store.apply(req.id, actor="ana")
    assert store.registry.get_version("fraud", 1).stage == "staging"


def test_expiry(store: ApprovalStore) -> None:
    req = store.open_request(
        "fraud", 1, "production", requested_by="ana", gates=[], policy=StagePolicy(expiry_hours=0.5 / 3600)
    )
    time.sleep(0.7)
    with pytest.raises(TransitionError, match="is expired"):
        store.decide(req.id, "bo", "approve")
    assert store.get(req.id).status == "expired"


def test_illegal_move_and_failed_gates(store: ApprovalStore) -> None:
    store.registry.create_version("fraud", framework="sklearn")
    with pytest.raises(TransitionError, match="from development to production"):
        store.open_request("fraud", 3, "production", requested_by="ana", policy=PROD, gates=[])
    assert store.list() == []
    req = store.open_request(
        "fraud",
        1,
        "production",
        requested_by="ana",
        policy=PROD,
        gates=[GateOutcome("auc >= 0.9", False, "version 1 has auc 0.8")],
    )
    assert req.status == "gates_failed" and "gate 'auc >= 0.9' failed" in req.outcome
    with pytest.raises(TransitionError):
        store.decide(req.id, "bo", "approve")


def test_apply_that_became_illegal_fails_whole(store: ApprovalStore) -> None:
    req = store.open_request("fraud", 1, "production", requested_by="ana", policy=PROD, gates=[])
    store.decide(req.id, "bo", "approve")
    store.decide(req.id, "cy", "approve")
    store.registry.transition_stage("fraud", 1, "archived", reason="withdrawn")
    with pytest.raises(TransitionError, match="from archived to production"):
        store.apply(req.id, actor="ana")
    assert store.get(req.id).status == "failed"
    assert store.registry.get_version("fraud", 1).stage == "archived"
    assert store.registry.get_model("fraud").aliases == {}
    assert AuditLog(store.db).verify().ok


def test_concurrent_promotions_leave_one_production_version(store: ApprovalStore) -> None:
    requests = []
    for number in (1, 2):
        req = store.open_request("fraud", number, "production", requested_by="ana", policy=PROD, gates=[])
        store.decide(req.id, "bo", "approve")
        store.decide(req.id, "cy", "approve")
        requests.append(req.id)
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def apply(request_id: int) -> None:
        try:
            barrier.wait()
            store.apply(request_id, actor="ana")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=apply, args=(r,)) for r in requests]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    production = store.registry.search_versions(model="fraud", stage="production").items
    assert len(production) == 1
    assert store.registry.get_version("fraud", "@champion").number == production[0].number
    assert AuditLog(store.db).verify().ok
