"""Console pages: sign-in, the models list, a model (versions, metrics, comparison), a version.

More pages (approvals, endpoints, monitoring, features, audit) live in their
own modules beside this one and join :data:`router`.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from service.console.queries import PAGE_SIZE, model_rows
from service.console.render import bar_figure, line_figure, page
from service.console.session import COOKIE, Session, check_csrf, current_session
from storage.audit import AuditLog
from storage.governance.lineage import LineageStore
from storage.governance.reports import ReportStore
from storage.registry.approvals import ApprovalStore
from storage.registry.core import Registry

router = APIRouter(include_in_schema=False)
SessionDep = Annotated[Session, Depends(current_session)]
FRAMEWORKS = ("GDPR", "EU_AI_ACT", "CCPA", "HIPAA", "SOC2")


def registry(request: Request) -> Registry:
    reg: Registry = request.app.state.registry
    return reg


def _safe_next(target: str | None) -> str:
    """Only local paths: a login never sends anyone to another site."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/models"
    return target


# ------------------------------------------------------------------ session
@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str = "/models") -> HTMLResponse:
    """The sign-in form."""
    return page(request, "login.html", {"next": _safe_next(next), "session": None})


@router.post("/login", response_model=None)
def login(
    request: Request, key: Annotated[str, Form()], next: Annotated[str, Form()] = "/models"
) -> Response:
    """Check the key and keep it in an http-only, same-site cookie."""
    found = request.app.state.keys.authenticate(key.strip())
    if found is None:
        context = {
            "next": _safe_next(next),
            "session": None,
            "error": "That key is not valid (unknown or revoked).",
        }
        return page(request, "login.html", context, status=401)
    response = RedirectResponse(_safe_next(next), status_code=303)
    response.set_cookie(
        COOKIE,
        key.strip(),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        max_age=12 * 3600,
        path="/",
    )
    return response


@router.post("/logout")
def logout(session: SessionDep, csrf_token: Annotated[str, Form()] = "") -> RedirectResponse:
    """Forget the session."""
    check_csrf(session, csrf_token)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


@router.get("/")
def home() -> RedirectResponse:
    return RedirectResponse("/models", status_code=303)


# ------------------------------------------------------------------- models
MODEL_COLUMNS = [
    ("name", "Name"),
    ("latest", "Latest"),
    ("changed", "Last change"),
    ("approvals", "Open approvals"),
    ("alerts", "Alerts"),
    ("health", "Health"),
]


@router.get("/models", response_class=HTMLResponse)
def models_page(
    request: Request,
    session: SessionDep,
    q: str = "",
    sort: str = "name",
    page_number: Annotated[int, Query(alias="page", ge=1, le=1_000_000)] = 1,
) -> HTMLResponse:
    """Every model: searchable, sortable, paged."""
    rows, total = model_rows(registry(request).db, search=q, sort=sort, page=page_number)
    context = {
        "session": session,
        "rows": rows,
        "total": total,
        "search": q,
        "sort": sort,
        "page": page_number,
        "pages": max(1, math.ceil(total / PAGE_SIZE)),
        "columns": MODEL_COLUMNS,
    }
    return page(request, "models.html", context)


@router.get("/models/{name}", response_class=HTMLResponse)
def model_page(
    request: Request,
    name: str,
    session: SessionDep,
    compare: Annotated[list[int] | None, Query()] = None,
    primary: str | None = None,
) -> HTMLResponse:
    """A model: versions, a metric chart across versions, alias history, and a comparison."""
    reg = registry(request)
    model = reg.get_model(name)
    versions = reg.list_versions(name, page_size=200).items
    metric_names = sorted({k for v in versions for k in v.metrics})
    chosen = primary if primary in metric_names else (metric_names[0] if metric_names else None)
    comparison, compared, param_names = None, [], []
    numbers = sorted(set(compare or []))
    if len(numbers) >= 2 and chosen:
        comparison = reg.compare(name, numbers, primary=chosen)
        compared = [reg.get_version(name, n) for n in numbers]
        param_names = sorted({k for c in compared for k in c.hyperparameters})
    ordered = sorted(versions, key=lambda v: v.number)
    figure = line_figure(
        [v.number for v in ordered],
        {m: [v.metrics.get(m) for v in ordered] for m in metric_names},
        title="metrics by version",
    )
    context = {
        "session": session,
        "model": model,
        "versions": versions,
        "metric_names": metric_names,
        "primary": chosen,
        "compare_numbers": numbers,
        "comparison": comparison,
        "compared": compared,
        "param_names": param_names,
        "metrics_figure": figure,
        "alias_moves": list(reversed(reg.alias_history(name))),
    }
    return page(request, "model.html", context)


def _bias_results(payload: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for result in payload.get("results", []):
        groups = [g for g in result.get("groups", []) if g.get("selection_rate") is not None]
        figure = bar_figure(
            [str(g.get("label")) for g in groups],
            [float(g["selection_rate"]) for g in groups],
            title=f"selection rate by {result.get('name', '')}",
        )
        out.append({"name": result.get("name", ""), "metrics": result.get("metrics", {}), "figure": figure})
    return out


def _endpoints_serving(
    request: Request, model: str, number: int, aliases: tuple[str, ...]
) -> list[dict[str, str]]:
    from storage.endpoints.store import EndpointStore

    refs = {str(number), *aliases, *(f"@{a}" for a in aliases)}
    found = []
    for endpoint in EndpointStore(registry(request).db).list():
        for variant in endpoint.variants:
            if variant.model == model and str(variant.version) in refs:
                found.append({"name": endpoint.name, "variant": variant.name})
    return found


@router.get("/models/{name}/versions/{ref}", response_class=HTMLResponse)
def version_page(request: Request, name: str, ref: str, session: SessionDep) -> HTMLResponse:
    """A version: signature, files, lineage, evidence (bias, compliance, drift, explanations), card, audit."""
    from tasks.governance.report import governance_report, model_card

    reg = registry(request)
    version = reg.get_version(name, ref)
    reports = ReportStore(reg)
    bias = reports.latest("bias_report", name, version.number)
    compliance = [r for fw in FRAMEWORKS if (r := reports.latest(f"compliance:{fw}", name, version.number))]
    importance = sorted(
        ((str(k), float(v)) for k, v in (version.extra.get("global_importance") or {}).items()),
        key=lambda kv: -abs(kv[1]),
    )[:20]
    try:
        card = model_card(governance_report(reg, name, version.number, frameworks=[]))
    except Exception as exc:  # a card is a summary: say why it is missing rather than fail the page
        card = f"The model card could not be built: {exc}"
    audit = AuditLog(reg.db).entries(
        entity_type="model_version", entity_id=f"{name}/{version.number}", limit=500
    )
    context = {
        "session": session,
        "version": version,
        "verify": reg.verify_version(name, version.number),
        "sizes": {a.name: a.size for a in version.artifacts},
        "lineage": LineageStore(reg).version_lineage(name, version.number),
        "approvals": [
            r for r in ApprovalStore(reg).list(model=name, limit=1000) if r.version == version.number
        ],
        "endpoints": _endpoints_serving(request, name, version.number, version.aliases),
        "bias": bias,
        "bias_results": _bias_results(bias.payload) if bias else [],
        "compliance": compliance,
        "drift": reports.latest("drift_check", name, version.number),
        "importance": importance,
        "importance_figure": bar_figure(
            [k for k, _ in importance][::-1],
            [v for _, v in importance][::-1],
            title="global importance",
            horizontal=True,
        ),
        "model_card": card,
        "audit": [e.to_dict() for e in audit],
    }
    return page(request, "version.html", context)
