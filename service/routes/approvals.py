"""Approvals: open a request, list the queue, approve or reject, manage reviewers.

A decision is recorded for the key's owner (never the requester: no
self-approval) and hands the request back exactly as ``mlops approve`` does:
a ``promote-model`` run that waits for it is resumed; a request with no
waiting run is applied when approved.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from pydantic import Field

from service.auth import Admin, Principal, Reader, Requester, Reviewer
from service.routes.common import Body, registry_of
from storage.registry.approvals import ApprovalStore

router = APIRouter(tags=["approvals"])


class RequestIn(Body):
    model: str
    version: str
    stage: str
    reason: str = ""
    policy_block: str | None = Field(
        default=None,
        pattern=r"^[a-z0-9-]+$",  # a Prefect block name: anything else cannot name one
        max_length=255,
        description="The name of a saved ApprovalPolicyBlock (default: the built-in policy).",
    )


class DecisionIn(Body):
    comment: str = ""


class ReviewerIn(Body):
    roles: list[str] = Field(default_factory=list)


@router.post("/approvals", status_code=201)
def open_request(request: Request, body: RequestIn, caller: Principal = Requester) -> dict[str, Any]:
    """Open a promotion request for reviewers; the evidence gates are checked now."""
    from tasks.registry.promotion import request_promotion

    opened = request_promotion(
        registry_of(request),
        body.model,
        body.version,
        body.stage,
        requested_by=caller.owner,
        reason=body.reason,
        policy_block=body.policy_block,
    )
    return opened.to_dict()


@router.get("/approvals")
def list_requests(
    request: Request,
    status: str | None = None,
    model: str | None = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
    caller: Principal = Reader,
) -> dict[str, Any]:
    """Requests, newest first (``status=pending`` for the queue)."""
    found = ApprovalStore(registry_of(request)).list(status=status, model=model, limit=limit)
    return {"items": [r.to_dict() for r in found]}


@router.get("/approvals/{request_id}")
def get_request(request: Request, request_id: int, caller: Principal = Reader) -> dict[str, Any]:
    """One request with its gates and decisions."""
    return ApprovalStore(registry_of(request)).get(request_id).to_dict()


def _decide(
    request: Request,
    request_id: int,
    decision: Literal["approve", "reject"],
    body: DecisionIn,
    caller: Principal,
) -> dict[str, Any]:
    from tasks.registry.promotion import decide

    decided, run_state = decide(
        ApprovalStore(registry_of(request)), request_id, caller.owner, decision, body.comment
    )
    return decided.to_dict() | {"flow_run": run_state}


@router.post("/approvals/{request_id}/approve")
def approve(
    request: Request, request_id: int, body: DecisionIn, caller: Principal = Reviewer
) -> dict[str, Any]:
    """Approve as the key's owner; resumes the waiting ``promote-model`` run."""
    return _decide(request, request_id, "approve", body, caller)


@router.post("/approvals/{request_id}/reject")
def reject(
    request: Request, request_id: int, body: DecisionIn, caller: Principal = Reviewer
) -> dict[str, Any]:
    """Reject as the key's owner: one rejection ends the request."""
    return _decide(request, request_id, "reject", body, caller)


@router.get("/reviewers")
def list_reviewers(request: Request, caller: Principal = Reader) -> dict[str, Any]:
    """Registered reviewers and their roles."""
    return {"reviewers": ApprovalStore(registry_of(request)).reviewers()}


@router.put("/reviewers/{name}")
def set_reviewer(request: Request, name: str, body: ReviewerIn, caller: Principal = Admin) -> dict[str, Any]:
    """Register a reviewer with roles (audited)."""
    store = ApprovalStore(registry_of(request))
    store.set_reviewer(name, body.roles, actor=caller.owner)
    return {"reviewers": store.reviewers()}
