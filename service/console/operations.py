"""Console pages for serving endpoints: the list, one endpoint, its live panel and the admin actions.

An endpoint page shows the traffic split, a panel of the last minute's
request rate, error rate and latency per variant (``/endpoints/{name}/live``,
an HTML fragment that ``console.js`` reloads every two seconds through
``data-refresh``), the canary plan with its steps and analysis decisions, the
A/B report with significance and the sample-ratio check, and shadow
disagreement.

The admin buttons change the endpoint through the same
:class:`~storage.endpoints.store.EndpointStore` calls the model server's admin
API makes (``serving/admin.py``): promote-winner is
:func:`serving.abtest.promote_winner` (``set_weights`` then
``record_decision``), rollback is ``rollback_canary`` and switch-back is
``switch_back``. Each change bumps the endpoint's ``revision`` in one
transaction with its event and audit entry; every model-server replica's
:class:`serving.traffic.TrafficRouter` polls ``EndpointStore.revisions()``
and re-reads a changed endpoint within its ``refresh_s`` (one second by
default), so the console never needs to call a server.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from service.console import endpoint_view as view
from service.console.render import page
from service.console.session import Session, check_csrf, current_session, require_role
from service.errors import status_for
from storage.endpoints.store import EndpointStore
from storage.errors import MlopsError
from storage.monitoring.prediction_log import PredictionLog
from storage.registry.core import Registry

router = APIRouter(include_in_schema=False)
SessionDep = Annotated[Session, Depends(current_session)]
CsrfField = Annotated[str, Form()]
EVENTS_SHOWN = 50


def _store(request: Request, actor: str = "console") -> EndpointStore:
    reg: Registry = request.app.state.registry
    return EndpointStore(reg.db, actor=actor)


@router.get("/endpoints", response_class=HTMLResponse)
def endpoints_page(request: Request, session: SessionDep) -> HTMLResponse:
    """Every serving endpoint: policy, variants and weights, canary or blue-green state."""
    rows = [view.endpoint_summary(e) for e in _store(request).list()]
    return page(request, "endpoints.html", {"session": session, "rows": rows})


def endpoint_view(
    request: Request, session: Session, name: str, *, flash: str | None = None, error: str | None = None
) -> dict[str, Any]:
    store = _store(request)
    endpoint = store.get(name)
    events = store.events(name)
    log = PredictionLog.from_settings(request.app.state.mlops_settings)
    ab = None
    ab_error = None
    try:
        ab = view.ab_section(store, endpoint)
    except MlopsError as exc:
        ab_error = str(exc)
    return {
        "session": session,
        "endpoint": endpoint,
        "panel": view.live_panel(store, name),
        "canary": view.canary_state(endpoint),
        "analysis": view.analysis_rows(events),
        "ab": ab,
        "ab_error": ab_error,
        "shadow": view.shadow_section(endpoint, log),
        "actions": view.actions(endpoint),
        "events": list(reversed(events))[:EVENTS_SHOWN],
        "flash": flash,
        "error": error,
    }


@router.get("/endpoints/{name}", response_class=HTMLResponse)
def endpoint_page(request: Request, name: str, session: SessionDep, done: str = "") -> HTMLResponse:
    """One endpoint: split, live traffic, canary, A/B, shadow, events and (for admins) actions."""
    flash = DONE.get(done)
    return page(request, "endpoint.html", endpoint_view(request, session, name, flash=flash))


@router.get("/endpoints/{name}/live", response_class=HTMLResponse)
def endpoint_live(request: Request, name: str, session: SessionDep) -> HTMLResponse:
    """The live panel alone (an HTML fragment the page reloads)."""
    context = {"session": session, "panel": view.live_panel(_store(request), name)}
    return page(request, "endpoint_live.html", context)


DONE = {
    "promote_winner": "The winner now takes all the traffic.",
    "rollback": "The canary was rolled back: the stable variant takes all the traffic.",
    "switch_back": "Switched back to the previous colour.",
}


def _act(
    request: Request, session: Session, name: str, action: str, token: str, reason: str = ""
) -> Response:
    """Run one admin action as the signed-in owner; a refusal is shown on the endpoint page."""
    from serving.abtest import promote_winner

    check_csrf(session, token)
    store = _store(request, actor=session.owner)
    try:
        require_role(session, "admin")
        if action == "promote_winner":
            promote_winner(store, name, actor=session.owner)
        elif action == "rollback":
            store.rollback_canary(
                name, reason=reason.strip() or "rolled back in the console", actor=session.owner
            )
        else:
            store.switch_back(name, actor=session.owner)
    except MlopsError as exc:
        context = endpoint_view(request, session, name, error=f"{action.replace('_', '-')} refused: {exc}")
        return page(request, "endpoint.html", context, status=status_for(exc))
    return RedirectResponse(f"/endpoints/{name}?done={action}", status_code=303)


@router.post("/endpoints/{name}/promote-winner", response_model=None)
def promote_winner_action(
    request: Request, name: str, session: SessionDep, csrf_token: CsrfField = ""
) -> Response:
    """All traffic to the variant that beats the control significantly (refused on a ratio mismatch)."""
    return _act(request, session, name, "promote_winner", csrf_token)


@router.post("/endpoints/{name}/rollback", response_model=None)
def rollback_action(
    request: Request,
    name: str,
    session: SessionDep,
    csrf_token: CsrfField = "",
    reason: Annotated[str, Form()] = "",
) -> Response:
    """Send all traffic back to the stable variant of a running canary."""
    return _act(request, session, name, "rollback", csrf_token, reason)


@router.post("/endpoints/{name}/switch-back", response_model=None)
def switch_back_action(
    request: Request, name: str, session: SessionDep, csrf_token: CsrfField = ""
) -> Response:
    """Make the previous colour of a blue-green endpoint live again."""
    return _act(request, session, name, "switch_back", csrf_token)
