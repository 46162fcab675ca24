"""Operations over REST: serving endpoints (read only), monitoring alerts, feature definitions.

Endpoints are read from the metadata database (:class:`storage.endpoints.EndpointStore`),
never from a model server: traffic changes go through the server's admin API.
Alerts come from :class:`storage.monitoring.alerts.AlertStore`; resolving one
needs a contributor or admin key. Feature entities, groups, features, a
group's lineage and its stored statistics come from the feature definitions
in the service's metadata database (:mod:`storage.features`).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Literal

import sqlalchemy as sa
from fastapi import APIRouter, Path, Query, Request

from service.auth import Contributor, Principal, Reader
from service.routes.common import registry_of
from storage.endpoints import EndpointStore
from storage.features.definitions import FeatureDefinitions
from storage.monitoring.alerts import AlertStore
from storage.schema import feature_entities, utcnow

router = APIRouter(tags=["operations"])

MAX_ID = 2**63 - 1
TEN_YEARS_S = 10 * 366 * 86_400


def _endpoints(request: Request) -> EndpointStore:
    return EndpointStore(registry_of(request).db)


def _definitions(request: Request) -> FeatureDefinitions:
    return FeatureDefinitions(registry_of(request).db)


# --------------------------------------------------------------- endpoints
@router.get("/endpoints")
def list_endpoints(request: Request, caller: Principal = Reader) -> dict[str, Any]:
    """Every serving endpoint with its policy, variants and settings, by name."""
    return {"items": [e.to_dict() for e in _endpoints(request).list()]}


@router.get("/endpoints/{name}")
def get_endpoint(request: Request, name: str, caller: Principal = Reader) -> dict[str, Any]:
    """One endpoint: policy, revision, variants (model, version, weight, role), settings."""
    return _endpoints(request).get(name).to_dict()


@router.get("/endpoints/{name}/events")
def endpoint_events(
    request: Request,
    name: str,
    kind: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100_000)] = 1000,
    caller: Principal = Reader,
) -> dict[str, Any]:
    """Recorded steps and decisions of an endpoint (traffic moves, canary steps), oldest first."""
    return {"items": [e.to_dict() for e in _endpoints(request).events(name, kind=kind, limit=limit)]}


@router.get("/endpoints/{name}/stats")
def endpoint_stats(
    request: Request,
    name: str,
    since_seconds: Annotated[float | None, Query(gt=0, le=TEN_YEARS_S)] = None,
    caller: Principal = Reader,
) -> dict[str, Any]:
    """Per-variant requests, errors, error rate and latency percentiles (of the last seconds, or all)."""
    since = None if since_seconds is None else utcnow() - timedelta(seconds=since_seconds)
    stats = _endpoints(request).stats(name, since=since)
    return {"endpoint": name, "variants": {variant: s.to_dict() for variant, s in sorted(stats.items())}}


# ------------------------------------------------------------------ alerts
@router.get("/alerts")
def list_alerts(
    request: Request,
    model: str | None = None,
    status: Literal["open", "resolved"] | None = None,
    limit: Annotated[int, Query(ge=1, le=100_000)] = 200,
    caller: Principal = Reader,
) -> dict[str, Any]:
    """Monitoring alerts, newest first, of one model and status (``open``, ``resolved``) or all."""
    found = AlertStore(registry_of(request)).list(model=model, status=status, limit=limit)
    return {"items": [a.to_dict() for a in found]}


@router.post("/alerts/{alert_id}/resolve")
def resolve_alert(
    request: Request, alert_id: Annotated[int, Path(ge=1, le=MAX_ID)], caller: Principal = Contributor
) -> dict[str, Any]:
    """Close an alert as the key's owner (audited); a later repeat opens a new one."""
    return AlertStore(registry_of(request)).resolve(alert_id, actor=caller.owner).to_dict()


# ---------------------------------------------------------------- features
@router.get("/features/entities")
def list_entities(request: Request, caller: Principal = Reader) -> dict[str, Any]:
    """Feature entities and their join keys, by name."""
    definitions = _definitions(request)
    with definitions.db.read() as conn:
        names = conn.execute(sa.select(feature_entities.c.name).order_by(feature_entities.c.name))
        found = list(names.scalars())
    return {"items": [definitions.get_entity(n).to_dict() for n in found]}


@router.get("/features/entities/{name}")
def get_entity(request: Request, name: str, caller: Principal = Reader) -> dict[str, Any]:
    """One entity and its join keys."""
    return _definitions(request).get_entity(name).to_dict()


@router.get("/features/groups")
def list_groups(request: Request, caller: Principal = Reader) -> dict[str, Any]:
    """Feature groups: entity, join keys, event and availability time, TTL, source, by name."""
    return {"items": [g.to_dict() for g in _definitions(request).list_groups()]}


@router.get("/features/groups/{name}")
def get_group(request: Request, name: str, caller: Principal = Reader) -> dict[str, Any]:
    """One feature group."""
    return _definitions(request).get_group(name).to_dict()


@router.get("/features/groups/{name}/lineage")
def group_lineage(request: Request, name: str, caller: Principal = Reader) -> dict[str, Any]:
    """Source → group → feature versions → the model versions trained on them."""
    return _definitions(request).lineage(name)


@router.get("/features/groups/{name}/statistics")
def group_statistics(
    request: Request,
    name: str,
    kind: Literal["reference", "window"] | None = None,
    caller: Principal = Reader,
) -> dict[str, Any]:
    """The newest stored statistics of each feature of a group (of one kind, or either)."""
    from storage.features.stats import load_stats  # pandas loads only for this route

    definitions = _definitions(request)
    stats = {}
    for feature in definitions.list_features(name):
        found = load_stats(definitions.db, name, feature.name, kind=kind)
        if found is not None:
            stats[feature.name] = found
    return {"group": name, "features": stats}


@router.get("/features")
def list_features(
    request: Request, group: str | None = None, all_versions: bool = False, caller: Principal = Reader
) -> dict[str, Any]:
    """Features (the newest version of each unless ``all_versions``), by group and name."""
    found = _definitions(request).list_features(group, all_versions=all_versions)
    return {"items": [f.to_dict() for f in found]}
