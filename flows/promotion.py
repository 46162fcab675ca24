"""``promote-model``: evidence gates, N-of-M reviewer approvals, then the stage move.

Reviewers approve or reject in the Prefect UI: the paused run shows the
:class:`~tasks.registry.promotion.ReviewInput` form. ``mlops approve`` and ``mlops
reject`` do the same from a terminal. The run ends when enough reviewers
approved (the stage, the previous holder and the alias move in one
transaction and ``mlops.model.promoted`` is emitted), when anyone rejects, or
when the request expires.

Example:
    >>> from flows.promotion import promote_model
    >>> promote_model.name
    'promote-model'
"""

from __future__ import annotations

import threading
from typing import Any

from prefect import flow, get_run_logger
from prefect.context import FlowRunContext
from prefect.flow_runs import pause_flow_run

from blocks.policy import ApprovalPolicy
from storage.errors import MlopsError
from storage.registry.approvals import APPROVED, GATES_FAILED, PENDING, ApprovalRequest
from storage.schema import utcnow
from tasks.registry.gates import evaluate_gates
from tasks.registry.promotion import (
    ReviewInput,
    apply_promotion,
    check_stage_transition,
    open_approval_request,
    publish_promotion_artifact,
    record_review,
    refresh_request,
    resolve_policy,
    resume_waiting_run,
    summary,
)


class GateFailedError(MlopsError):
    """An evidence gate failed, so no reviewer was asked."""


def _wake_at_expiry(flow_run_id: str, seconds: float) -> threading.Timer:
    """Resume the paused run when the request expires, so it can close the request."""

    def wake() -> None:
        for _ in range(12):
            if resume_waiting_run(flow_run_id, "mlops", wait_seconds=5) != "running":
                return

    timer = threading.Timer(max(seconds, 0.0) + 0.5, wake)
    timer.daemon = True
    timer.start()
    return timer


def await_reviews(
    request: ApprovalRequest, *, poll_interval: int, registry_block: str | None
) -> ApprovalRequest:
    """Pause for reviewer input until the request is approved, rejected or expired."""
    context = FlowRunContext.get()
    assert context is not None and context.flow_run is not None
    run_id = str(context.flow_run.id)
    rounds = 0
    while True:
        request = refresh_request(request.id, registry_block=registry_block)
        if request.status != PENDING:
            return request
        assert request.expires_at is not None
        remaining = (request.expires_at - utcnow()).total_seconds()
        get_run_logger().info(
            "request %s waits for %s more approval(s); reviewers: open this run and choose Resume",
            request.id,
            request.required_approvals - request.approvals,
        )
        waker = _wake_at_expiry(run_id, remaining)
        try:
            review = pause_flow_run(
                wait_for_input=ReviewInput,
                timeout=int(remaining) + 300,
                poll_interval=poll_interval,
                key=f"review-{request.id}-{rounds}",
            )
        finally:
            waker.cancel()
        rounds += 1
        if review is not None and review.decision is not None:
            record_review(
                request.id, review.reviewer, review.decision, review.comment, registry_block=registry_block
            )


@flow(name="promote-model")
def promote_model(
    model: str,
    version: str,
    target_stage: str,
    requested_by: str,
    reason: str = "",
    policy: ApprovalPolicy | None = None,
    policy_block: str | None = None,
    registry_block: str | None = None,
    poll_interval_seconds: int = 5,
) -> dict[str, Any]:
    """Gate, collect approvals, and move ``model`` ``version`` into ``target_stage``."""
    stage_policy = resolve_policy(policy, policy_block).for_stage(target_stage)
    number = check_stage_transition(model, version, target_stage, registry_block=registry_block)
    gates = evaluate_gates(model, number, stage_policy.gates, registry_block=registry_block)
    context = FlowRunContext.get()
    run_id = str(context.flow_run.id) if context and context.flow_run else None
    request = open_approval_request(
        model,
        number,
        target_stage,
        requested_by=requested_by,
        reason=reason,
        policy=stage_policy,
        gates=gates,
        flow_run_id=run_id,
        registry_block=registry_block,
    )
    if request.status == GATES_FAILED:
        publish_promotion_artifact(request)
        raise GateFailedError(f"promotion of {model} version {number} stopped: {request.outcome}")
    request = await_reviews(request, poll_interval=poll_interval_seconds, registry_block=registry_block)
    if request.status == APPROVED:
        request = apply_promotion(request.id, actor=requested_by, registry_block=registry_block)
    publish_promotion_artifact(request)
    return summary(request)
