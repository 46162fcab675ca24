"""Console page for the audit log: filtered by entity type, entity id, action and actor, newest first, paged.

A page holds :data:`~service.console.history.AUDIT_PAGE` entries; "Older"
continues below the last sequence number shown, so a page costs the same
wherever it is in the log. The verify button (a form with the session's
token) recomputes the whole hash chain with
:meth:`storage.audit.AuditLog.verify` and shows its result: the number of
entries checked, or the first entry that was edited, deleted or moved.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse

from service.console.history import AuditFilter, audit_choices, audit_page
from service.console.render import page
from service.console.session import Session, check_csrf, current_session
from storage.audit import AuditLog, AuditReport
from storage.registry.core import Registry

router = APIRouter(include_in_schema=False)
SessionDep = Annotated[Session, Depends(current_session)]
FILTERS = ("entity_type", "entity_id", "action", "actor")


def audit_view(
    request: Request,
    session: Session,
    filters: AuditFilter,
    before: int | None = None,
    verified: AuditReport | None = None,
) -> dict[str, Any]:
    reg: Registry = request.app.state.registry
    entries, older = audit_page(reg.db, filters, before=before)
    query = {k: getattr(filters, k) for k in FILTERS if getattr(filters, k)}
    return {
        "session": session,
        "entries": entries,
        "older": older,
        "before": before,
        "filters": filters,
        "query": query,
        "choices": audit_choices(reg.db),
        "verified": verified,
    }


@router.get("/audit", response_class=HTMLResponse)
def audit_log_page(
    request: Request,
    session: SessionDep,
    entity_type: str = "",
    entity_id: str = "",
    action: str = "",
    actor: str = "",
    before: Annotated[int | None, Query(ge=1)] = None,
) -> HTMLResponse:
    """The audit log, newest first, with filters."""
    filters = AuditFilter(entity_type.strip(), entity_id.strip(), action.strip(), actor.strip())
    return page(request, "audit.html", audit_view(request, session, filters, before))


@router.post("/audit/verify", response_class=HTMLResponse)
def verify_audit_log(
    request: Request,
    session: SessionDep,
    csrf_token: Annotated[str, Form()] = "",
    entity_type: Annotated[str, Form()] = "",
    entity_id: Annotated[str, Form()] = "",
    action: Annotated[str, Form()] = "",
    actor: Annotated[str, Form()] = "",
) -> HTMLResponse:
    """Recompute the hash chain and show whether it holds (any signed-in role may check it)."""
    check_csrf(session, csrf_token)
    reg: Registry = request.app.state.registry
    report = AuditLog(reg.db).verify()
    filters = AuditFilter(entity_type.strip(), entity_id.strip(), action.strip(), actor.strip())
    return page(request, "audit.html", audit_view(request, session, filters, verified=report))
