"""The promote-model flow under a real Prefect server, reviewers resuming it by run input."""

from __future__ import annotations

import threading
import time
from typing import Any
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.flow_runs import resume_flow_run

from blocks.policy import ApprovalPolicy, ChampionGate, EvidenceGate, MetricGate, StagePolicy
from flows.promotion import GateFailedError, promote_model
from storage.audit import AuditLog
from storage.registry.approvals import ApprovalStore
from storage.registry.core import Registry
from tasks.registry.promotion import decide

pytestmark = pytest.mark.usefixtures("prefect_harness")


class Reviewers(threading.Thread):
    """Resumes the paused promote-model run once per input, as the UI's form does."""

    def __init__(self, model: str, inputs: list[dict[str, Any]], *, via_cli: bool = False) -> None:
        super().__init__(daemon=True)
        self.model, self.inputs, self.via_cli = model, inputs, via_cli
        self.errors: list[BaseException] = []

    def run(self) -> None:
        try:
            store = ApprovalStore(Registry.from_settings())
            seen: set[UUID] = set()
            for data in self.inputs:
                run_id, state_id = self._wait_for_pause(store, seen)
                seen.add(state_id)
                if self.via_cli:
                    decide(
                        store,
                        store.list(model=self.model)[0].id,
                        data["reviewer"],
                        data["decision"],
                        data.get("comment", ""),
                    )
                else:
                    resume_flow_run(run_id, run_input=data)
        except BaseException as exc:  # reported by the test
            self.errors.append(exc)

    def _wait_for_pause(self, store: ApprovalStore, seen: set[UUID]) -> tuple[UUID, UUID]:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            requests = store.list(model=self.model)
            if requests and requests[0].flow_run_id:
                run_id = UUID(requests[0].flow_run_id)
                with get_client(sync_client=True) as client:
                    state = client.read_flow_run(run_id).state
                if state is not None and state.is_paused() and state.id not in seen:
                    return run_id, state.id
            time.sleep(0.2)
        raise TimeoutError("the promote-model run never paused for review")


def _registry_with_versions(*aucs: float) -> Registry:
    registry = Registry.from_settings()
    registry.create_model("fraud")
    for auc in aucs:
        registry.create_version("fraud", framework="sklearn", metrics={"auc_roc": auc})
    return registry


def _events(prefix: str) -> list[dict[str, Any]]:
    from prefect.events.worker import EventsWorker

    EventsWorker.drain_all()
    for _ in range(240):  # up to a minute: the events worker is slow on a busy machine
        with get_client(sync_client=True) as client:
            found = client.request(
                "POST", "/events/filter", json={"filter": {"event": {"prefix": [prefix]}}, "limit": 50}
            ).json()["events"]
        if found:
            return list(found)
        time.sleep(0.25)
    return []


PRODUCTION = ApprovalPolicy(
    stages={
        "production": StagePolicy(
            required_approvals=2,
            alias="champion",
            gates=[
                MetricGate(metric="auc_roc", threshold=0.9),
                ChampionGate(metric="auc_roc", min_improvement=0.01),
            ],
        )
    }
)


def test_two_reviewers_approve_in_the_ui_and_the_version_is_promoted() -> None:
    registry = _registry_with_versions(0.91, 0.95)
    for number in (1, 2):
        registry.transition_stage("fraud", number, "staging")
    registry.transition_stage("fraud", 1, "production", alias="champion")
    reviewers = Reviewers(
        "fraud",
        [
            {"reviewer": "bo", "decision": "approve", "comment": "metrics hold"},
            {"reviewer": "cy", "decision": "approve", "comment": "ok"},
        ],
    )
    reviewers.start()
    result = promote_model(
        "fraud",
        "2",
        "production",
        requested_by="ana",
        reason="better auc",
        policy=PRODUCTION,
        poll_interval_seconds=1,
    )
    reviewers.join(30)
    assert not reviewers.errors
    assert result["status"] == "promoted" and result["approvals"] == 2
    assert [g["passed"] for g in result["gates"]] == [True, True]
    assert registry.get_version("fraud", 2).stage == "production"
    assert registry.get_version("fraud", 1).stage == "archived"
    assert registry.get_version("fraud", "@champion").number == 2
    history = registry.alias_history("fraud", "champion")
    assert [(h.from_version, h.to_version) for h in history] == [(None, 1), (1, 2)]
    audit = AuditLog(registry.db)
    actions = [e.action for e in audit.entries(limit=1000)]
    tail = actions[actions.index("approval.request") :]
    assert tail == [
        "approval.request",
        "approval.approve",
        "approval.approve",
        "version.stage",
        "version.stage",
        "alias.move",
        "approval.apply",
    ]
    assert audit.verify().ok
    events = _events("mlops.model.promoted")
    assert any(e["resource"]["prefect.resource.id"] == "mlops.model-version.fraud.2" for e in events)
    promoted = next(
        e for e in events if e["resource"]["prefect.resource.id"] == "mlops.model-version.fraud.2"
    )
    assert sorted(promoted["payload"]["approved_by"]) == ["bo", "cy"]
    summary_md = _artifact_markdown("promotion-fraud-v2")
    assert "status**: promoted" in summary_md and "| bo | approve | metrics hold |" in summary_md
    assert "| beats champion on auc_roc by >= 0.01 | pass |" in summary_md


def _artifact_markdown(key: str) -> str:
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))
    assert found, f"no artifact {key}"
    return str(found[0].data)


def test_self_approval_is_refused_and_others_still_can_approve() -> None:
    registry = _registry_with_versions(0.9)
    reviewers = Reviewers(
        "fraud",
        [
            {"reviewer": "ana", "decision": "approve"},
            {"reviewer": "bo", "decision": "approve"},
        ],
    )
    reviewers.start()
    result = promote_model("fraud", "1", "staging", requested_by="ana", poll_interval_seconds=1)
    reviewers.join(30)
    assert result["status"] == "promoted"
    assert [d["reviewer"] for d in result["decisions"]] == ["bo"]
    assert registry.get_version("fraud", 1).stage == "staging"


def test_one_rejection_ends_the_request() -> None:
    registry = _registry_with_versions(0.9)
    registry.transition_stage("fraud", 1, "staging")
    reviewers = Reviewers(
        "fraud",
        [
            {"reviewer": "bo", "decision": "approve"},
            {"reviewer": "cy", "decision": "reject", "comment": "bias report pending"},
        ],
    )
    reviewers.start()
    result = promote_model("fraud", "1", "production", requested_by="ana", poll_interval_seconds=1)
    reviewers.join(30)
    assert result["status"] == "rejected" and "cy" in result["outcome"]
    assert registry.get_version("fraud", 1).stage == "staging"
    assert registry.get_model("fraud").aliases == {}


def test_expired_request_ends_unapproved() -> None:
    registry = _registry_with_versions(0.9)
    policy = ApprovalPolicy(stages={"staging": StagePolicy(expiry_hours=3 / 3600)})
    started = time.monotonic()
    result = promote_model(
        "fraud", "1", "staging", requested_by="ana", policy=policy, poll_interval_seconds=1
    )
    assert result["status"] == "expired"
    assert time.monotonic() - started < 60
    assert registry.get_version("fraud", 1).stage == "development"


@pytest.mark.parametrize(
    ("gate", "message"),
    [
        (
            MetricGate(metric="auc_roc", threshold=0.99),
            "gate 'auc_roc >= 0.99' failed: version 1 has auc_roc 0.9",
        ),
        (EvidenceGate(kind="bias_report"), "no bias report for version 1"),
    ],
)
def test_failed_gate_stops_before_any_reviewer_is_asked(gate: Any, message: str) -> None:
    registry = _registry_with_versions(0.9)
    policy = ApprovalPolicy(stages={"staging": StagePolicy(gates=[gate])})
    state = promote_model("fraud", "1", "staging", requested_by="ana", policy=policy, return_state=True)
    assert state.is_failed()
    with pytest.raises(GateFailedError, match=message):
        state.result()
    request = ApprovalStore(registry).list(model="fraud")[0]
    assert request.status == "gates_failed" and request.decisions == []
    assert registry.get_version("fraud", 1).stage == "development"


@pytest.mark.timeout(300)
@pytest.mark.parametrize("persisted", [False, True], ids=["results-in-memory", "results-persisted"])
def test_cli_decisions_resume_the_waiting_run(persisted: bool) -> None:
    """With results persisted (as across machines) the polled request is read afresh, not from a cache."""
    from prefect.settings import PREFECT_RESULTS_PERSIST_BY_DEFAULT, temporary_settings

    registry = _registry_with_versions(0.93)
    registry.transition_stage("fraud", 1, "staging")
    reviewers = Reviewers(
        "fraud",
        [
            {"reviewer": "bo", "decision": "approve"},
            {"reviewer": "cy", "decision": "approve"},
        ],
        via_cli=True,
    )
    reviewers.start()
    with temporary_settings({PREFECT_RESULTS_PERSIST_BY_DEFAULT: persisted}):
        result = promote_model("fraud", "1", "production", requested_by="ana", poll_interval_seconds=1)
    reviewers.join(30)
    assert not reviewers.errors
    assert result["status"] == "promoted"
    assert registry.get_version("fraud", "@champion").number == 1
