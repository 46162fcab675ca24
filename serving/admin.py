"""The traffic admin API: endpoints, weights, canaries, shadows, blue-green slots, reports.

The app mounts this router under ``/admin`` behind the admin key
(:func:`serving.auth.require_admin`). Every change goes through
:class:`storage.endpoints.store.EndpointStore` (one transaction with its audit entry
and endpoint event) and refreshes this server's router at once; other replicas
see it within their refresh interval. The actor recorded is the
``X-Actor`` header, or ``admin``.

=========================================================  =====================================
route (under ``/admin``)                                   does
=========================================================  =====================================
``GET /endpoints``, ``POST /endpoints``                    list, create
``GET|DELETE /endpoints/{name}``                           show (with per-variant stats), delete
``PUT /endpoints/{name}/traffic``                          ``{"weights": {variant: percent}}``
``PUT|DELETE /endpoints/{name}/variants/{variant}``        add or repoint, remove a variant
``PUT /endpoints/{name}/shadow``                           ``{"shadows": [...], "percent": 10}``
``GET /endpoints/{name}/stats``, ``/events``               per-variant traffic, recorded events
``POST /endpoints/{name}/outcomes``                        ``{"outcomes": [{request_id, variant, value}]}``
``GET /endpoints/{name}/ab-report``                        A/B report with significance and SRM
``POST /endpoints/{name}/promote-winner``                  all traffic to the winner
``POST /endpoints/{name}/canary``                          start a canary
``GET /endpoints/{name}/canary``                           its plan and state
``POST /endpoints/{name}/canary/analyze``                  analyse the step, act on the decision
``POST /endpoints/{name}/canary/advance``, ``/rollback``   move on, or roll back by hand
``POST /endpoints/{name}/slots/{colour}``                  deploy a version to an idle slot
``POST /endpoints/{name}/switch``, ``/switch-back``        blue-green switch and switch-back
``GET /endpoints/{name}/shadow-report``                    disagreement of shadows with live
=========================================================  =====================================

Example:
    >>> from fastapi import FastAPI
    >>> from storage.db import Database
    >>> from serving.config import ServeSettings
    >>> from serving.traffic import TrafficRouter
    >>> db = Database("sqlite:///:memory:")
    >>> router = TrafficRouter(db, background=False)
    >>> app = FastAPI()
    >>> app.include_router(admin_router(router, db, ServeSettings()), prefix="/admin")
    >>> from fastapi.testclient import TestClient
    >>> body = {"name": "fraud", "variants": [{"name": "a", "model": "fraud", "version": "1"}]}
    >>> TestClient(app).post("/admin/endpoints", json=body).json()["weights"]
    {'a': 100.0}
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from fastapi import APIRouter, Header, Query
from pydantic import BaseModel, Field

from serving.abtest import ab_report, ground_truth_outcomes, promote_winner
from serving.canary import run_analysis
from serving.protocol import RequestError
from serving.traffic import TrafficRouter
from storage.db import Database
from storage.endpoints.records import DEFAULT_P99_FLOOR_MS
from storage.endpoints.store import CanaryPlan, Endpoint, EndpointStore, VariantSpec, since_seconds
from storage.errors import AlreadyExistsError, MlopsError, NotFoundError

if TYPE_CHECKING:
    from serving.config import ServeSettings

__all__ = ["admin_router"]

T = TypeVar("T")


class VariantBody(BaseModel):
    """A variant: name, model, version reference, weight in percent."""

    name: str
    model: str
    version: str
    weight: float = 100.0


class CanaryBody(BaseModel):
    """A canary to start: the new version and the plan."""

    model: str | None = None
    version: str
    steps: list[int] = Field(default_factory=lambda: [5, 25, 50, 100])
    max_error_rate_diff: float = 0.02
    max_p99_ratio: float = 1.5
    min_requests: int = 20
    max_p99_ms: float | None = None
    p99_floor_ms: float = DEFAULT_P99_FLOOR_MS

    def plan(self) -> CanaryPlan:
        """The canary plan this body asks for."""
        return CanaryPlan(
            tuple(self.steps),
            self.max_error_rate_diff,
            self.max_p99_ratio,
            self.min_requests,
            max_p99_ms=self.max_p99_ms,
            p99_floor_ms=self.p99_floor_ms,
        )


class EndpointBody(BaseModel):
    """An endpoint to create."""

    name: str
    policy: str = "single"
    variants: list[VariantBody]
    shadows: list[VariantBody] = Field(default_factory=list)
    shadow_percent: float = 0.0
    canary: CanaryBody | None = None


class TrafficBody(BaseModel):
    """New weights (percent) by variant."""

    weights: dict[str, float]
    reason: str = ""


class VariantUpdate(BaseModel):
    """Point a variant at a model version."""

    model: str
    version: str
    weight: float = 0.0
    role: str = "live"


class ShadowBody(BaseModel):
    """Shadow variants and the mirrored percentage."""

    shadows: list[VariantBody]
    percent: float


class Outcome(BaseModel):
    """The outcome of one request (a conversion, a revenue, a correct answer)."""

    request_id: str
    variant: str
    value: float


class OutcomesBody(BaseModel):
    """Outcomes reported back."""

    outcomes: list[Outcome]


class PromoteBody(BaseModel):
    """How to pick the A/B winner."""

    control: str | None = None
    higher_is_better: bool = True
    alpha: float = 0.05
    force: str | None = None
    outcomes: str = "reported"


class AnalyzeBody(BaseModel):
    """Analyse the canary step; ``apply`` acts on the decision."""

    apply: bool = True


class RollbackBody(BaseModel):
    """Why a canary is rolled back by hand."""

    reason: str = "rolled back by an operator"


class SlotBody(BaseModel):
    """A version for a blue-green slot."""

    model: str | None = None
    version: str


class SwitchBody(BaseModel):
    """The slot to make live (the other one when absent)."""

    to: str | None = None


def _call(fn: Callable[[], T]) -> T:
    try:
        return fn()
    except NotFoundError as exc:
        raise RequestError(str(exc), 404) from exc
    except AlreadyExistsError as exc:
        raise RequestError(str(exc), 409) from exc
    except (MlopsError, ValueError) as exc:
        raise RequestError(str(exc), 400) from exc


def _show(endpoint: Endpoint) -> dict[str, Any]:
    data = endpoint.to_dict()
    data["weights"] = endpoint.weights()
    return data


def admin_router(router: TrafficRouter, db: Database, settings: ServeSettings) -> APIRouter:
    """The admin routes; mount under ``/admin`` with the admin-key dependency.

    Args:
        router: This server's traffic router (refreshed after every change).
        db: The metadata database holding endpoints.
        settings: The server settings.
    """
    api = APIRouter(tags=["admin"])
    store = EndpointStore(db, actor="admin")

    def changed(endpoint: Endpoint) -> dict[str, Any]:
        router.refresh()
        return _show(endpoint)

    def actor_of(x_actor: str | None) -> str:
        return (x_actor or "admin").strip()[:255] or "admin"

    @api.get("/endpoints")
    def list_endpoints() -> list[dict[str, Any]]:
        return [_show(e) for e in store.list()]

    @api.post("/endpoints", status_code=201)
    def create_endpoint(body: EndpointBody, x_actor: str | None = Header(default=None)) -> dict[str, Any]:
        variants = [VariantSpec(v.name, v.model, v.version, v.weight) for v in body.variants]
        variants += [VariantSpec(v.name, v.model, v.version, 0.0, "shadow") for v in body.shadows]

        def create() -> Endpoint:
            plan = None
            if body.canary is not None:
                plan = body.canary.plan()
            return store.create(
                body.name,
                variants,
                policy=body.policy,
                shadow_percent=body.shadow_percent,
                canary=plan,
                actor=actor_of(x_actor),
            )

        return changed(_call(create))

    @api.get("/endpoints/{name}")
    def show_endpoint(name: str, since_s: float | None = Query(default=None, gt=0)) -> dict[str, Any]:
        router.flush()  # this server's own counters count too
        endpoint = _call(lambda: store.get(name))
        data = _show(endpoint)
        since = since_seconds(since_s) if since_s else None
        data["stats"] = {k: v.to_dict() for k, v in store.stats(name, since=since).items()}
        return data

    @api.delete("/endpoints/{name}")
    def delete_endpoint(name: str, x_actor: str | None = Header(default=None)) -> dict[str, Any]:
        _call(lambda: store.delete(name, actor=actor_of(x_actor)))
        router.refresh()
        return {"deleted": name}

    @api.put("/endpoints/{name}/traffic")
    def set_traffic(
        name: str, body: TrafficBody, x_actor: str | None = Header(default=None)
    ) -> dict[str, Any]:
        return changed(
            _call(lambda: store.set_weights(name, body.weights, actor=actor_of(x_actor), reason=body.reason))
        )

    @api.put("/endpoints/{name}/variants/{variant}")
    def set_variant(
        name: str, variant: str, body: VariantUpdate, x_actor: str | None = Header(default=None)
    ) -> dict[str, Any]:
        spec = VariantSpec(variant, body.model, body.version, body.weight, body.role)
        return changed(_call(lambda: store.set_variant(name, spec, actor=actor_of(x_actor))))

    @api.delete("/endpoints/{name}/variants/{variant}")
    def remove_variant(name: str, variant: str, x_actor: str | None = Header(default=None)) -> dict[str, Any]:
        return changed(_call(lambda: store.remove_variant(name, variant, actor=actor_of(x_actor))))

    @api.put("/endpoints/{name}/shadow")
    def set_shadow(name: str, body: ShadowBody, x_actor: str | None = Header(default=None)) -> dict[str, Any]:
        specs = [VariantSpec(v.name, v.model, v.version, 0.0, "shadow") for v in body.shadows]
        return changed(_call(lambda: store.set_shadow(name, specs, body.percent, actor=actor_of(x_actor))))

    @api.get("/endpoints/{name}/stats")
    def endpoint_stats(name: str, since_s: float | None = Query(default=None, gt=0)) -> dict[str, Any]:
        router.flush()  # this server's own counters count too
        since = since_seconds(since_s) if since_s else None
        stats = _call(lambda: store.stats(name, since=since))
        return {"endpoint": name, "variants": {k: v.to_dict() for k, v in stats.items()}}

    @api.get("/endpoints/{name}/events")
    def endpoint_events(name: str, kind: str | None = None) -> list[dict[str, Any]]:
        return [e.to_dict() for e in _call(lambda: store.events(name, kind=kind))]

    @api.post("/endpoints/{name}/outcomes")
    def report_outcomes(name: str, body: OutcomesBody) -> dict[str, Any]:
        rows = [(o.request_id, o.variant, o.value) for o in body.outcomes]
        return {"stored": _call(lambda: store.record_outcomes(name, rows))}

    def outcomes_of(name: str, source: str, since_s: float | None) -> dict[str, list[float]] | None:
        if source == "reported":
            return None
        if source not in ("accuracy", "squared_error"):
            raise RequestError(f"outcomes {source!r} must be 'reported', 'accuracy' or 'squared_error'", 400)
        since = since_seconds(since_s) if since_s else None
        return _call(lambda: ground_truth_outcomes(store, name, metric=source, since=since))

    @api.get("/endpoints/{name}/ab-report")
    def endpoint_ab_report(
        name: str,
        control: str | None = None,
        alpha: float = Query(default=0.05, gt=0, lt=1),
        since_s: float | None = Query(default=None, gt=0),
        outcomes: str = Query(default="reported", description="reported, accuracy or squared_error"),
    ) -> dict[str, Any]:
        router.flush()  # this server's own counters count too
        since = since_seconds(since_s) if since_s else None
        values = outcomes_of(name, outcomes, since_s)
        return _call(
            lambda: ab_report(store, name, control=control, alpha=alpha, since=since, outcomes=values)
        ).to_dict()

    @api.post("/endpoints/{name}/promote-winner")
    def endpoint_promote(
        name: str, body: PromoteBody, x_actor: str | None = Header(default=None)
    ) -> dict[str, Any]:
        router.flush()  # this server's own counters count too
        values = outcomes_of(name, body.outcomes, None)
        higher = body.higher_is_better and body.outcomes != "squared_error"
        winner, report = _call(
            lambda: promote_winner(
                store,
                name,
                control=body.control,
                outcomes=values,
                higher_is_better=higher,
                alpha=body.alpha,
                force=body.force,
                actor=actor_of(x_actor),
            )
        )
        router.refresh()
        return {"winner": winner, "report": report.to_dict(), "endpoint": _show(store.get(name))}

    @api.post("/endpoints/{name}/canary", status_code=201)
    def start_canary(
        name: str, body: CanaryBody, x_actor: str | None = Header(default=None)
    ) -> dict[str, Any]:
        def start() -> Endpoint:
            plan = body.plan()
            model = body.model or max(store.get(name).live, key=lambda v: v.weight).model
            return store.start_canary(name, model, body.version, plan, actor=actor_of(x_actor))

        return changed(_call(start))

    @api.get("/endpoints/{name}/canary")
    def canary_state(name: str) -> dict[str, Any]:
        endpoint = _call(lambda: store.get(name))
        plan = endpoint.canary
        return {
            "endpoint": name,
            "policy": endpoint.policy,
            "plan": plan.to_dict() if plan else None,
            "weights": endpoint.weights(),
            "events": [
                e.to_dict() for e in store.events(name) if e.kind.startswith(("canary.", "decision."))
            ],
        }

    @api.post("/endpoints/{name}/canary/analyze")
    def canary_analyze(
        name: str, body: AnalyzeBody, x_actor: str | None = Header(default=None)
    ) -> dict[str, Any]:
        router.flush()  # this server's own counters count too
        result = _call(lambda: run_analysis(store, name, apply=body.apply, actor=actor_of(x_actor)))
        router.refresh()
        return {"analysis": result.to_dict(), "endpoint": _show(store.get(name))}

    @api.post("/endpoints/{name}/canary/advance")
    def canary_advance(name: str, x_actor: str | None = Header(default=None)) -> dict[str, Any]:
        return changed(_call(lambda: store.advance_canary(name, actor=actor_of(x_actor))))

    @api.post("/endpoints/{name}/canary/rollback")
    def canary_rollback(
        name: str, body: RollbackBody, x_actor: str | None = Header(default=None)
    ) -> dict[str, Any]:
        return changed(
            _call(lambda: store.rollback_canary(name, reason=body.reason, actor=actor_of(x_actor)))
        )

    @api.post("/endpoints/{name}/slots/{colour}")
    def deploy_slot(
        name: str, colour: str, body: SlotBody, x_actor: str | None = Header(default=None)
    ) -> dict[str, Any]:
        def deploy() -> Endpoint:
            model = body.model or store.get(name).variant(colour).model
            return store.deploy_slot(name, colour, model, body.version, actor=actor_of(x_actor))

        return changed(_call(deploy))

    @api.post("/endpoints/{name}/switch")
    def switch(name: str, body: SwitchBody, x_actor: str | None = Header(default=None)) -> dict[str, Any]:
        return changed(_call(lambda: store.switch(name, to=body.to, actor=actor_of(x_actor))))

    @api.post("/endpoints/{name}/switch-back")
    def switch_back(name: str, x_actor: str | None = Header(default=None)) -> dict[str, Any]:
        return changed(_call(lambda: store.switch_back(name, actor=actor_of(x_actor))))

    @api.get("/endpoints/{name}/shadow-report")
    def endpoint_shadow_report(
        name: str, since_s: float | None = Query(default=None, gt=0)
    ) -> list[dict[str, Any]]:
        from serving.shadow import shadow_report
        from storage.monitoring.prediction_log import PredictionLog

        endpoint = _call(lambda: store.get(name))
        models = sorted({v.model for v in endpoint.variants})
        log = PredictionLog.from_settings()
        frames = [_read_log(log, m, since_s) for m in models]
        import pandas as pd

        frame = (
            pd.concat([f for f in frames if len(f)], ignore_index=True)
            if any(len(f) for f in frames)
            else pd.DataFrame()
        )
        return [r.to_dict() for r in shadow_report(frame, endpoint=name)]

    return api


def _read_log(log: Any, model: str, since_s: float | None) -> Any:
    import pandas as pd

    try:
        return log.read(model=model, start=since_seconds(since_s) if since_s else None)
    except (MlopsError, FileNotFoundError):
        return pd.DataFrame()
