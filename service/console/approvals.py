"""Console page for approvals: the queue (pending first, then recent) and a reviewer's decision.

A decision goes through :func:`tasks.registry.promotion.decide`, exactly as
``mlops approve`` and the REST API do: it is recorded for the signed-in key's
owner, a ``promote-model`` run waiting for the request is resumed (it applies
the promotion itself), and a request no run waits for is applied here when it
is approved. A refused decision (self-approval, a role the request does not
allow, a request no longer pending, a key whose role may not approve) is shown
on the page with its reason.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from service.console.queries import approval_requests
from service.console.render import page
from service.console.session import Session, check_csrf, current_session, require_role
from service.errors import status_for
from storage.db import Database
from storage.errors import MlopsError, ValidationError
from storage.registry.approvals import PENDING, ApprovalRequest, ApprovalStore
from storage.registry.core import Registry

router = APIRouter(include_in_schema=False)
SessionDep = Annotated[Session, Depends(current_session)]
RECENT = 50
RUN_STATES = {
    "resumed": "the waiting promote-model run was resumed",
    "running": "the promote-model run is busy; it reads the decision when it next pauses",
    "ended": "no promote-model run waits for it any more",
    "unreachable": "no Prefect API is configured here; the waiting run sees it when it next wakes",
    "none": "no promote-model run waits for it",
}


def _registry(request: Request) -> Registry:
    reg: Registry = request.app.state.registry
    return reg


def _queue(db: Database, model: str | None) -> tuple[list[ApprovalRequest], list[ApprovalRequest]]:
    """Pending requests (oldest first: the longest waiting on top), then the most recent others."""
    pending = approval_requests(db, status=PENDING, model=model, oldest_first=True, limit=500)
    recent = approval_requests(db, exclude_status=PENDING, model=model, limit=RECENT)
    return pending, recent


def approvals_view(
    request: Request,
    session: Session,
    *,
    model: str | None = None,
    flash: str | None = None,
    error: str | None = None,
    status: int = 200,
) -> HTMLResponse:
    """The approvals page, with a message on top when a decision was just made or refused."""
    pending, recent = _queue(_registry(request).db, model or None)
    context = {
        "session": session,
        "pending": pending,
        "recent": recent,
        "model": model or "",
        "flash": flash,
        "error": error,
    }
    return page(request, "approvals.html", context, status=status)


@router.get("/approvals", response_class=HTMLResponse)
def approvals_page(
    request: Request,
    session: SessionDep,
    model: str = "",
    decided: int | None = None,
    run: str = "",
) -> HTMLResponse:
    """The queue; after a decision, what became of the request and of its waiting run."""
    flash = None
    if decided is not None:
        done = ApprovalStore(_registry(request)).get(decided)
        flash = (
            f"Request {done.id} ({done.model} version {done.version} → {done.target_stage}) is "
            f"{done.status}: {done.approvals} of {done.required_approvals} approvals."
        )
        if run in RUN_STATES:
            flash += f" {RUN_STATES[run][0].upper()}{RUN_STATES[run][1:]}."
    return approvals_view(request, session, model=model, flash=flash)


@router.post("/approvals/{request_id}/decide", response_model=None)
def decide_request(
    request: Request,
    request_id: int,
    session: SessionDep,
    decision: Annotated[str, Form()],
    comment: Annotated[str, Form()] = "",
    csrf_token: Annotated[str, Form()] = "",
    model: Annotated[str, Form()] = "",
) -> Response:
    """Approve or reject as the signed-in key's owner; a refusal is shown on the page with its reason."""
    check_csrf(session, csrf_token)
    from tasks.registry.promotion import decide  # imports Prefect: only for a real decision

    try:
        require_role(session, "approve")
        if decision not in ("approve", "reject"):
            raise ValidationError(f"decision {decision!r} must be approve or reject")
        _decided, run_state = decide(
            ApprovalStore(_registry(request)),
            request_id,
            session.owner,
            "approve" if decision == "approve" else "reject",
            comment.strip(),
        )
    except MlopsError as exc:
        message = f"Your decision on request {request_id} was refused: {exc}"
        return approvals_view(request, session, model=model, error=message, status=status_for(exc))
    query = {"decided": request_id, "run": run_state, **({"model": model} if model else {})}
    return RedirectResponse(f"/approvals?{urlencode(query)}", status_code=303)
