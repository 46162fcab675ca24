"""Console page for monitoring: open alerts (resolvable), health per day, drift and performance per window.

Charts come with a table view of the same values. Health is rebuilt per day
from the alerts' history and drift and performance from the stored
``drift_check`` / ``performance_check`` reports (see
:mod:`service.console.history`). Resolving an alert needs a role that may
write (contributor or admin) and is audited under the signed-in key's owner.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from service.console.history import CheckRow, check_history, health_history, monitored_models, open_alerts
from service.console.render import line_figure, page
from service.console.session import Session, check_csrf, current_session, require_role
from service.errors import status_for
from storage.errors import MlopsError
from storage.monitoring.alerts import Alert, AlertStore
from storage.registry.core import Registry

router = APIRouter(include_in_schema=False)
SessionDep = Annotated[Session, Depends(current_session)]
DAYS = 30


def _registry(request: Request) -> Registry:
    reg: Registry = request.app.state.registry
    return reg


def drift_rows(checks: list[CheckRow]) -> list[dict[str, Any]]:
    """One row per drift check: share and names of drifted columns."""
    rows = []
    for c in checks:
        if c.kind != "drift_check":
            continue
        p = c.payload
        rows.append(
            {
                "at": c.at,
                "version": c.version,
                "passed": c.passed,
                "rows": p.get("current_rows"),
                "share": p.get("drift_share"),
                "drifted": list(p.get("drifted_columns", [])),
                "summary": c.summary,
            }
        )
    return rows


def performance_rows(checks: list[CheckRow]) -> list[dict[str, Any]]:
    """One row per performance check, with the windows and metrics it found degraded."""
    rows = []
    for c in checks:
        if c.kind != "performance_check":
            continue
        p = c.payload
        findings = [f for f in p.get("findings", []) if isinstance(f, dict)]
        rows.append(
            {
                "at": c.at,
                "version": c.version,
                "passed": c.passed,
                "labelled": p.get("labelled_rows"),
                "degraded": sum(f.get("kind") == "degraded" for f in findings),
                "concept_drift": p.get("concept_drift"),
                "findings": findings,
                "summary": c.summary,
            }
        )
    return rows


def _charts(health: list[Any], drift: list[dict[str, Any]], perf: list[dict[str, Any]]) -> dict[str, Any]:
    stamp = "%Y-%m-%d %H:%M"
    findings = [f for row in perf for f in row["findings"] if f.get("observed") is not None]
    metrics = sorted({str(f.get("metric")) for f in findings})
    windows = sorted({str(f.get("window_end")) for f in findings})
    by_key = {(str(f.get("metric")), str(f.get("window_end"))): float(f["observed"]) for f in findings}
    return {
        "health": line_figure(
            [d.isoformat() for d, _ in health],
            {"health": [s for _, s in health]},
            title="health score per day",
        ),
        "drift": line_figure(
            [r["at"].strftime(stamp) for r in drift],
            {"share of columns drifted": [r["share"] for r in drift]},
            title="drift per checked window",
        )
        if drift
        else None,
        "performance": line_figure(
            [r["at"].strftime(stamp) for r in perf],
            {"degraded windows": [float(r["degraded"]) for r in perf]},
            title="degraded windows per performance check",
        )
        if perf
        else None,
        "observed": line_figure(
            windows,
            {m: [by_key.get((m, w)) for w in windows] for m in metrics},
            title="observed metric in degraded windows",
        )
        if findings
        else None,
    }


def _first_model(alerts: list[Alert], models: list[str]) -> str:
    """The model shown by default: the one with the newest critical alert, else a warning, else the first."""
    for severity in ("critical", "warning"):
        for alert in alerts:  # newest first
            if alert.severity == severity:
                return alert.model
    return models[0] if models else ""


def monitoring_view(
    request: Request, session: Session, model: str, *, flash: str | None = None, error: str | None = None
) -> dict[str, Any]:
    reg = _registry(request)
    models = monitored_models(reg.db)
    alerts = open_alerts(reg.db)
    chosen = model or _first_model(alerts, models)
    health = health_history(reg.db, chosen, DAYS) if chosen else []
    checks = check_history(reg.db, chosen) if chosen else []
    drift, perf = drift_rows(checks), performance_rows(checks)
    return {
        "session": session,
        "alerts": alerts,
        "models": models,
        "model": chosen,
        "health": health,
        "drift": drift,
        "performance": perf,
        "charts": _charts(health, drift, perf),
        "flash": flash,
        "error": error,
    }


@router.get("/monitoring", response_class=HTMLResponse)
def monitoring_page(
    request: Request, session: SessionDep, model: str = "", resolved: int | None = None
) -> HTMLResponse:
    """Open alerts of every model; health, drift and performance over time of one."""
    flash = f"Alert {resolved} resolved." if resolved is not None else None
    return page(request, "monitoring.html", monitoring_view(request, session, model, flash=flash))


@router.post("/monitoring/alerts/{alert_id}/resolve", response_model=None)
def resolve_alert(
    request: Request,
    alert_id: int,
    session: SessionDep,
    csrf_token: Annotated[str, Form()] = "",
    model: Annotated[str, Form()] = "",
) -> Response:
    """Close an alert (contributor or admin); a later repeat opens a new one."""
    check_csrf(session, csrf_token)
    try:
        require_role(session, "write")
        AlertStore(_registry(request)).resolve(alert_id, actor=session.owner)
    except MlopsError as exc:
        context = monitoring_view(request, session, model, error=f"Alert {alert_id} was not resolved: {exc}")
        return page(request, "monitoring.html", context, status=status_for(exc))
    query = {"resolved": alert_id, **({"model": model} if model else {})}
    return RedirectResponse(f"/monitoring?{urlencode(query)}", status_code=303)
