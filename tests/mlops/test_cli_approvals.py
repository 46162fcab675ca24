"""``mlops approve | reject | approvals | reviewers`` and ``mlops registry rollback``."""

from __future__ import annotations

from storage.audit import AuditLog
from storage.registry.core import Registry
from tests.mlops.test_cli import failed, ok, ok_json


def _staged(*numbers: int) -> Registry:
    registry = Registry.from_settings()
    registry.create_model("churn")
    for _ in numbers:
        registry.create_version("churn", framework="sklearn", metrics={"auc": 0.9})
    for number in numbers:
        registry.transition_stage("churn", number, "staging")
    return registry


def test_request_approve_and_apply_without_a_flow() -> None:
    registry = _staged(1)
    request = ok_json("approvals", "request", "churn", "1", "--stage", "production", "--actor", "ana")
    assert (request["status"], request["required_approvals"]) == ("pending", 2)
    assert [r["id"] for r in ok_json("approvals", "list", "--pending")] == [request["id"]]
    first = ok_json("approve", str(request["id"]), "--reviewer", "bo")
    assert (first["status"], first["flow_run"]) == ("pending", "none")
    second = ok_json("approve", str(request["id"]), "--reviewer", "cy", "--comment", "fine")
    assert second["status"] == "promoted"
    assert registry.get_version("churn", "@champion").number == 1
    assert ok_json("approvals", "list", "--pending") == []


def test_self_approval_and_rejection() -> None:
    registry = _staged(1)
    ok("approvals", "request", "churn", "1", "--stage", "production", "--actor", "ana")
    result = failed("approve", "1", "--reviewer", "ana")
    assert "self-approval is not allowed: ana requested" in result.stderr
    rejected = ok_json("reject", "1", "--reviewer", "bo", "--comment", "needs a bias report")
    assert rejected["status"] == "rejected"
    assert "request 1 is rejected" in failed("approve", "1", "--reviewer", "cy").stderr
    assert registry.get_version("churn", 1).stage == "staging"


def test_reviewer_roles_from_the_command_line() -> None:
    _staged(1)
    ok("reviewers", "add", "bo", "--role", "ml-lead", "--role", "risk")
    assert ok_json("reviewers", "list") == {"bo": ["ml-lead", "risk"]}


def test_rollback_restores_the_previous_champion() -> None:
    registry = _staged(1, 2)
    registry.transition_stage("churn", 1, "production", alias="champion")
    registry.transition_stage("churn", 2, "production", alias="champion")
    done = ok_json("registry", "rollback", "churn", "--stage", "production", "--reason", "latency regression")
    assert (done["restored_version"], done["replaced_version"]) == (1, 2)
    assert registry.get_version("churn", "production").number == 1
    assert "no earlier version" in failed("registry", "rollback", "churn").stderr
    assert AuditLog(registry.db).verify().ok


def test_unknown_request_is_a_clear_error() -> None:
    _staged(1)
    assert "approval request 42 does not exist" in failed("approve", "42", "--reviewer", "bo").stderr
