"""Promotion steps: approval requests, reviews, applying the move, events, summary.

Reviewers decide in the Prefect UI through the typed form :class:`ReviewInput`
that a paused ``promote-model`` run shows, or with ``mlops approve`` /
``mlops reject``, which record the decision and then resume the waiting run so
it re-reads the request (:func:`decide`).

Example:
    >>> from tasks.registry.promotion import promotion_markdown
    >>> callable(promotion_markdown)
    True
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any, Literal
from uuid import UUID

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event
from prefect.input import RunInput
from pydantic import Field

from blocks.approvals import ApprovalPolicyBlock
from blocks.policy import ApprovalPolicy, StagePolicy
from storage.errors import MlopsError, TransitionError
from storage.registry.approvals import (
    APPROVED,
    PROMOTED,
    ApprovalRequest,
    ApprovalStore,
    Decision,
    GateOutcome,
)
from storage.registry.core import Registry
from storage.registry.lifecycle import Rollback
from storage.registry.reads import VersionRef
from tasks.console_links import console_line
from tasks.registry.steps import open_registry

PROMOTED_EVENT = "mlops.model.promoted"
ROLLED_BACK_EVENT = "mlops.model.rolled_back"


class ReviewInput(RunInput):
    """The form a reviewer fills in the Prefect UI to decide on a promotion."""

    reviewer: str = Field(description="Your reviewer name (as registered with `mlops reviewers add`).")
    decision: Literal["approve", "reject"] | None = Field(
        default=None, description="approve or reject; leave empty to only re-check the request."
    )
    comment: str = Field(default="", description="Why: shown in the audit log and the summary.")


@dataclass(frozen=True)
class ReviewResult:
    """The request after a review, and the reason when the review was refused."""

    request: ApprovalRequest
    error: str | None = None


def resolve_policy(policy: ApprovalPolicy | None = None, block_name: str | None = None) -> ApprovalPolicy:
    """The explicit policy, else the saved block's, else the defaults."""
    if policy is not None:
        return policy
    if block_name:
        block = ApprovalPolicyBlock.load(block_name)
        return block.policy  # type: ignore[union-attr]
    return ApprovalPolicy()


def request_promotion(
    registry: Registry,
    model: str,
    ref: VersionRef,
    stage: str,
    *,
    requested_by: str,
    reason: str = "",
    policy_block: str | None = None,
) -> ApprovalRequest:
    """Open a request without a flow: gates are checked now, reviewers decide later."""
    from tasks.registry.gates import evaluate_gate

    policy = resolve_policy(None, policy_block).for_stage(stage)
    gates = [evaluate_gate(registry, model, ref, gate) for gate in policy.gates]
    return ApprovalStore(registry).open_request(
        model, ref, stage, requested_by=requested_by, policy=policy, gates=gates, reason=reason
    )


def approval_store(registry_block: str | None = None) -> ApprovalStore:
    """The approval store next to the registry the block or settings point at."""
    return ApprovalStore(open_registry(registry_block))


@task(name="check-stage-transition")
def check_stage_transition(
    model: str, version: VersionRef, target_stage: str, *, registry_block: str | None = None
) -> int:
    """Fail early when the move is not a legal transition; returns the version number."""
    registry = open_registry(registry_block)
    found = registry.get_version(model, version)
    registry.check_transition(model, found.number, found.stage, target_stage)
    return found.number


@task(name="open-approval-request")
def open_approval_request(
    model: str,
    version: VersionRef,
    target_stage: str,
    *,
    requested_by: str,
    reason: str,
    policy: StagePolicy,
    gates: list[GateOutcome],
    flow_run_id: str | None,
    registry_block: str | None = None,
) -> ApprovalRequest:
    """Store the request with its gate results."""
    return approval_store(registry_block).open_request(
        model,
        version,
        target_stage,
        requested_by=requested_by,
        policy=policy,
        gates=gates,
        reason=reason,
        flow_run_id=flow_run_id,
    )


@task(name="refresh-approval-request", cache_policy=NO_CACHE)  # polled: never answered from a cache
def refresh_request(request_id: int, *, registry_block: str | None = None) -> ApprovalRequest:
    """The request as it stands now (expired when its time has passed)."""
    return approval_store(registry_block).expire_if_due(request_id)


@task(name="record-review")
def record_review(
    request_id: int,
    reviewer: str,
    decision: Decision,
    comment: str = "",
    *,
    registry_block: str | None = None,
) -> ReviewResult:
    """Record a decision; a refused one (self-approval, wrong role) is reported, not raised."""
    store = approval_store(registry_block)
    try:
        return ReviewResult(store.decide(request_id, reviewer, decision, comment))
    except MlopsError as exc:
        get_run_logger().warning("review by %s refused: %s", reviewer, exc)
        return ReviewResult(store.get(request_id), str(exc))


@task(name="apply-promotion")
def apply_promotion(request_id: int, *, actor: str, registry_block: str | None = None) -> ApprovalRequest:
    """Move the stage and alias in one transaction, then emit the promoted event."""
    request = approval_store(registry_block).apply(request_id, actor=actor)
    emit_promoted_event(request)
    return request


def prefect_api_configured() -> bool:
    """Whether a Prefect server is reachable by configuration or the current run.

    Without one, Prefect would start a temporary server just to drop the event,
    so events and resumes are skipped (the change itself is stored and audited).
    The temporary server that a flow in this process already started counts.
    """
    from prefect.context import FlowRunContext, TaskRunContext
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import PREFECT_API_URL

    if PREFECT_API_URL.value() or FlowRunContext.get() is not None or TaskRunContext.get() is not None:
        return True
    return any(server.running for server in SubprocessASGIServer._instances.values())


def emit_promoted_event(request: ApprovalRequest) -> None:
    """Emit ``mlops.model.promoted`` with the model version as the resource."""
    if not prefect_api_configured():
        return
    emit_event(
        event=PROMOTED_EVENT,
        resource=_version_resource(request.model, request.version, request.target_stage),
        related=[{"prefect.resource.id": f"mlops.model.{request.model}", "prefect.resource.role": "model"}],
        payload={
            "request_id": request.id,
            "stage": request.target_stage,
            "alias": request.alias,
            "requested_by": request.requested_by,
            "approved_by": [d.reviewer for d in request.decisions if d.decision == "approve"],
        },
    )


def emit_rolled_back_event(done: Rollback, actor: str) -> None:
    """Emit ``mlops.model.rolled_back`` with the restored version as the resource."""
    if not prefect_api_configured():
        return
    emit_event(
        event=ROLLED_BACK_EVENT,
        resource=_version_resource(done.model, done.restored_version, done.stage),
        payload={"replaced_version": done.replaced_version, "alias": done.alias, "actor": actor},
    )


def _version_resource(model: str, version: int, stage: str) -> dict[str, str]:
    return {
        "prefect.resource.id": f"mlops.model-version.{model}.{version}",
        "prefect.resource.name": f"{model} version {version}",
        "mlops.model": model,
        "mlops.version": str(version),
        "mlops.stage": stage,
    }


def promotion_markdown(request: ApprovalRequest) -> str:
    """A readable summary of a request: gates, reviewers, outcome."""
    lines = [
        f"# Promotion of {request.model} version {request.version} to {request.target_stage}",
        "",
        f"- **request**: {request.id}, by {request.requested_by}: {request.reason or '-'}",
        f"- **status**: {request.status} — {request.outcome or '-'}",
        f"- **approvals**: {request.approvals} of {request.required_approvals} required"
        + (f" (roles: {', '.join(request.allowed_roles)})" if request.allowed_roles else ""),
        "",
        "| gate | result | detail |",
        "|---|---|---|",
        *[f"| {g.name} | {'pass' if g.passed else 'FAIL'} | {g.detail} |" for g in request.gates],
        "",
        "| reviewer | decision | comment | at |",
        "|---|---|---|---|",
        *[
            f"| {d.reviewer} | {d.decision} | {d.comment} | {d.at:%Y-%m-%d %H:%M:%S} |"
            for d in request.decisions
        ],
    ]
    link = console_line("approvals", request.model)
    if link:
        lines += ["", link]
    return "\n".join(lines)


@task(name="publish-promotion-summary")
def publish_promotion_artifact(request: ApprovalRequest) -> None:
    """Publish the summary as a Prefect markdown artifact."""
    slug = re.sub(r"[^a-z0-9-]+", "-", f"promotion-{request.model}-v{request.version}".lower()).strip("-")
    create_markdown_artifact(
        markdown=promotion_markdown(request),
        key=slug,
        description=f"{request.model} v{request.version} → {request.target_stage}: {request.status}",
    )


def resume_waiting_run(flow_run_id: str, reviewer: str, *, wait_seconds: float = 30.0) -> str:
    """Wake a paused ``promote-model`` run so it re-reads its request.

    Returns ``resumed``; ``running`` (still busy after ``wait_seconds``);
    ``ended`` (the run finished or crashed, or the server does not know it);
    or ``unreachable`` (no Prefect API is configured here).
    """
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound
    from prefect.flow_runs import resume_flow_run

    if not prefect_api_configured():
        return "unreachable"
    # A run between two pauses may not have seen the decision yet: wait until it
    # pauses again (then wake it) or ends, so no decision is left unread.
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            with get_client(sync_client=True) as client:
                state = client.read_flow_run(UUID(flow_run_id)).state
        except ObjectNotFound:
            return "ended"
        if state is None or state.is_final():
            return "ended"
        if state.is_paused():
            resume_flow_run(
                UUID(flow_run_id), run_input={"reviewer": reviewer, "decision": None, "comment": ""}
            )
            return "resumed"
        if time.monotonic() >= deadline:
            return "running"
        time.sleep(0.2)


def decide(
    store: ApprovalStore, request_id: int, reviewer: str, decision: Decision, comment: str = ""
) -> tuple[ApprovalRequest, str]:
    """Record a decision outside the UI and hand the request back to whoever carries it out.

    When a ``promote-model`` run waits for the request it is resumed and
    applies the promotion itself; when none does (a request made from the CLI,
    or a run that ended), an approved request is applied here. A run that
    cannot be reached (no Prefect API configured) applies it when it next
    wakes, at the latest at the request's expiry.
    """
    request = store.decide(request_id, reviewer, decision, comment)
    run_state = resume_waiting_run(request.flow_run_id, reviewer) if request.flow_run_id else "none"
    if request.status == APPROVED and run_state in ("none", "ended"):
        try:
            request = store.apply(request_id, actor=reviewer)
        except TransitionError:
            request = store.get(request_id)
            if request.status != PROMOTED:  # not the run that ended just after applying it
                raise
        else:
            emit_promoted_event(request)
    return request, run_state


def summary(request: ApprovalRequest) -> dict[str, Any]:
    """What the flow returns: the request as JSON-ready data."""
    return request.to_dict() | {"approvals": request.approvals}
