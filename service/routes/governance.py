"""Governance over REST: the audit log, data lineage, stored reports, attestations and erasure.

Reads need any valid key; running an erasure needs an admin key. Every answer
is what the stores (:mod:`storage.audit`, :mod:`storage.governance`) return,
as JSON: the service computes nothing of its own. The governance report and
the model card are built by :mod:`tasks.governance.report`, and an erasure
runs :func:`storage.governance.erasure.erase_entity` (as ``mlops erase``
does) over the service's own metadata database, feature store and
prediction log. An erasure is recorded and audited even when rows remain
(``verified`` is false and ``remaining`` names the places); rerunning it is safe.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import PlainTextResponse
from pydantic import Field

from service.auth import Admin, Principal, Reader
from service.routes.common import Body, registry_of
from storage.audit import AuditLog
from storage.errors import NotFoundError
from storage.governance.attestations import AttestationStore
from storage.governance.lineage import LineageStore
from storage.governance.reports import ReportStore

if TYPE_CHECKING:
    from storage.features.store import FeatureStore

router = APIRouter(tags=["governance"])

MAX_ID = 2**63 - 1
Limit = Annotated[int, Query(ge=1, le=100_000)]
Frameworks = Annotated[list[str] | None, Query(description="Compliance frameworks (default: all).")]


class ErasureIn(Body):
    keys: dict[str, str | int | float | bool] = Field(
        min_length=1, description="The entity's join-key values, e.g. {'card_id': 1}."
    )
    reason: str = Field(min_length=1, description="Why (e.g. the data-subject request's reference); audited.")


# ------------------------------------------------------------------- audit
@router.get("/audit")
def audit_entries(
    request: Request,
    entity_type: str | None = None,
    entity_id: str | None = None,
    action: str | None = None,
    after_seq: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
    limit: Limit = 100,
    caller: Principal = Reader,
) -> dict[str, Any]:
    """Audit entries in order, filtered, starting after ``after_seq``."""
    found = AuditLog(registry_of(request).db).entries(
        entity_type=entity_type, entity_id=entity_id, action=action, after_seq=after_seq, limit=limit
    )
    return {"items": [e.to_dict() for e in found]}


@router.get("/audit/verify")
def verify_audit(request: Request, caller: Principal = Reader) -> dict[str, Any]:
    """Recompute the audit hash chain and name the first entry that was edited, deleted or moved."""
    return AuditLog(registry_of(request).db).verify().to_dict()


# ----------------------------------------------------------------- lineage
@router.get("/datasets")
def list_datasets(request: Request, caller: Principal = Reader) -> dict[str, Any]:
    """Registered datasets, by name."""
    return {"items": [d.to_dict() for d in LineageStore(registry_of(request)).list_datasets()]}


@router.get("/datasets/{name}")
def get_dataset(request: Request, name: str, caller: Principal = Reader) -> dict[str, Any]:
    """One dataset: location, source, owner, PII flag, retention, transformations."""
    return LineageStore(registry_of(request)).get_dataset(name).to_dict()


@router.get("/datasets/{name}/lineage")
def dataset_lineage(request: Request, name: str, caller: Principal = Reader) -> dict[str, Any]:
    """A dataset, the feature groups and model versions that used it, and the datasets around it."""
    return LineageStore(registry_of(request)).dataset_lineage(name)


@router.get("/models/{name}/data-lineage")
def model_lineage(request: Request, name: str, caller: Principal = Reader) -> dict[str, Any]:
    """Per version: datasets (PII, retention, source), feature groups, run, approvals, stage."""
    return LineageStore(registry_of(request)).model_lineage(name)


# ----------------------------------------------------------------- reports
@router.get("/models/{name}/versions/{ref}/reports/{kind}")
def latest_report(request: Request, name: str, ref: str, kind: str, caller: Principal = Reader) -> dict:
    """The newest stored report of a kind (``bias_report``, ``compliance:GDPR``, ``drift_check``...)."""
    found = ReportStore(registry_of(request)).latest(kind, name, ref)
    if found is None:
        raise NotFoundError(f"no {kind!r} report is stored for {name} version {ref}")
    return found.to_dict()


@router.get("/models/{name}/versions/{ref}/governance")
def governance_report(
    request: Request, name: str, ref: str, framework: Frameworks = None, caller: Principal = Reader
) -> dict[str, Any]:
    """The governance report of a version: metrics, lineage, risk, evidence, approvals, compliance."""
    from tasks.governance.report import governance_report as build

    return build(registry_of(request), name, ref, frameworks=framework)


@router.get("/models/{name}/versions/{ref}/model-card", response_class=PlainTextResponse)
def model_card(
    request: Request, name: str, ref: str, framework: Frameworks = None, caller: Principal = Reader
) -> PlainTextResponse:
    """The readable Markdown model card of a version's governance report."""
    from tasks.governance.report import governance_report as build
    from tasks.governance.report import model_card as card

    text = card(build(registry_of(request), name, ref, frameworks=framework))
    return PlainTextResponse(text, media_type="text/markdown; charset=utf-8")


# ------------------------------------------------------------ attestations
@router.get("/attestations")
def list_attestations(
    request: Request,
    framework: str | None = None,
    model: str | None = None,
    include_expired: bool = False,
    caller: Principal = Reader,
) -> dict[str, Any]:
    """Attestations, newest first (of one framework, for one model or all); unexpired by default."""
    found = AttestationStore(registry_of(request)).list(
        framework=framework, model=model, include_expired=include_expired
    )
    return {"items": [a.to_dict() for a in found]}


# ----------------------------------------------------------------- erasure
def _feature_store(request: Request, actor: str) -> FeatureStore:
    """The feature store over the service's own database and the app's feature and online paths.

    Nothing is opened yet; never ``close()`` it: its database is the registry's, still in use.
    """
    from storage.features.store import FeatureStore

    settings = request.app.state.mlops_settings
    return FeatureStore(
        registry_of(request).db,
        settings.resolved_feature_root(),
        settings.resolved_online_store_url(),
        actor=actor,
    )


@router.get("/erasures")
def list_erasures(request: Request, limit: Limit = 100, caller: Principal = Reader) -> dict[str, Any]:
    """Recorded erasures, newest first."""
    from storage.governance.erasure import list_erasures as listed

    return {"items": [e.to_dict() for e in listed(_feature_store(request, caller.owner), limit=limit)]}


@router.get("/erasures/{erasure_id}")
def get_erasure(
    request: Request, erasure_id: Annotated[int, Path(ge=1, le=MAX_ID)], caller: Principal = Reader
) -> dict[str, Any]:
    """One recorded erasure: what was removed where, what remained, whether it verified."""
    from storage.governance.erasure import get_erasure as get

    return get(_feature_store(request, caller.owner), erasure_id).to_dict()


@router.post("/erasures", status_code=201)
def erase(request: Request, body: ErasureIn, caller: Principal = Admin) -> dict[str, Any]:
    """Erase an entity from the feature stores and prediction log (admins); recorded even if rows remain."""
    from storage.governance.erasure import erase_entity
    from storage.monitoring.prediction_log import PredictionLog

    store = _feature_store(request, caller.owner)
    online = store.online  # opened here, so closed here
    try:
        result = erase_entity(
            body.keys,
            requested_by=caller.owner,
            reason=body.reason,
            store=store,
            log=PredictionLog.from_settings(request.app.state.mlops_settings),
        )
    finally:
        online.close()
    return result.to_dict()
