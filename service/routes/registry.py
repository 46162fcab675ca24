"""Models and versions: create, read, search, stages, aliases, tags, compare, verify, lineage.

A version reference in a path is what the registry takes everywhere: a number
(``3``), a semantic version (``1.4.0``), an alias (``champion``), ``latest``
or a stage name.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from pydantic import Field

from service.auth import Admin, Contributor, Principal, Reader
from service.routes.common import INLINE_PAGE, Body, page, read, registry_of, tag_filters
from storage.artifacts import ArtifactRef

router = APIRouter(tags=["registry"])


class ModelIn(Body):
    name: str
    description: str = ""
    owner: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)


class ArtifactIn(Body):
    sha256: str
    size: int


class VersionIn(Body):
    framework: str
    metrics: dict[str, float] = Field(default_factory=dict)
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    artifacts: dict[str, ArtifactIn] = Field(default_factory=dict)
    semver: str | None = None
    bump: str = "minor"
    description: str = ""
    changelog: str = ""
    tags: dict[str, str] = Field(default_factory=dict)
    signature: dict[str, Any] | None = None
    dataset_uri: str | None = None
    dataset_hash: str | None = None
    code_version: str | None = None
    flow_run_id: str | None = None
    parent_version: str | None = None
    extra: dict[str, Any] = Field(default_factory=dict)
    idempotency_key: str | None = None


class StageIn(Body):
    stage: str
    reason: str = ""
    demote_to: str = "archived"
    allow_multiple: bool = False
    alias: str | None = None


class AliasIn(Body):
    version: str
    reason: str = ""


class TagIn(Body):
    value: str


class ExtraIn(Body):
    value: Any


class RollbackIn(Body):
    stage: str = "production"
    alias: str = "champion"
    reason: str = ""


# ------------------------------------------------------------------ models
@router.get("/models")
def list_models(
    request: Request,
    name_contains: str | None = None,
    tag: Annotated[list[str] | None, Query()] = None,
    page_size: Annotated[int, Query(ge=1, le=10_000)] = 100,
    page_token: str | None = None,
    caller: Principal = Reader,
) -> dict[str, Any]:
    """Models by name, filtered by name and tags, one page at a time."""
    found = registry_of(request).list_models(
        name_contains=name_contains, tags=tag_filters(tag), page_size=page_size, page_token=page_token
    )
    return page([m.to_dict() for m in found.items], found.next_token)


@router.post("/models", status_code=201)
def create_model(request: Request, body: ModelIn, caller: Principal = Contributor) -> dict[str, Any]:
    """Register a model name (409 when taken)."""
    model = registry_of(request).create_model(
        body.name, description=body.description, owner=body.owner, tags=body.tags, actor=caller.owner
    )
    return model.to_dict()


@router.get("/models/{name}")
def get_model(request: Request, name: str, caller: Principal = Reader) -> dict[str, Any]:
    """One model with its tags, aliases and latest version."""
    return registry_of(request).get_model(name).to_dict()


@router.put("/models/{name}/tags/{key}")
def set_model_tag(
    request: Request, name: str, key: str, body: TagIn, caller: Principal = Contributor
) -> dict:
    """Set a model tag (audited)."""
    registry = registry_of(request)
    registry.set_model_tag(name, key, body.value, actor=caller.owner)
    return registry.get_model(name).to_dict()


# ---------------------------------------------------------------- versions
@router.get("/versions")
async def search_versions(
    request: Request,
    model: str | None = None,
    stage: str | None = None,
    alias: str | None = None,
    tag: Annotated[list[str] | None, Query()] = None,
    metric: Annotated[list[str] | None, Query()] = None,
    page_size: Annotated[int, Query(ge=1, le=10_000)] = 100,
    page_token: str | None = None,
    caller: Principal = Reader,
) -> dict[str, Any]:
    """Versions matching every filter (``metric=auc>=0.9``, ``tag=key=value``), newest first."""
    tags, metrics = tag_filters(tag), list(metric or ())

    def run() -> dict[str, Any]:
        found = registry_of(request).search_versions(
            model=model,
            stage=stage,
            alias=alias,
            tags=tags,
            metrics=metrics,
            page_size=page_size,
            page_token=page_token,
        )
        return page([v.to_dict() for v in found.items], found.next_token)

    return await read(request, run, small=page_size <= INLINE_PAGE)


@router.get("/models/{name}/versions")
async def list_versions(
    request: Request,
    name: str,
    stage: str | None = None,
    tag: Annotated[list[str] | None, Query()] = None,
    metric: Annotated[list[str] | None, Query()] = None,
    page_size: Annotated[int, Query(ge=1, le=10_000)] = 100,
    page_token: str | None = None,
    caller: Principal = Reader,
) -> dict[str, Any]:
    """A model's versions, newest first, one page at a time."""
    return await search_versions(request, name, stage, None, tag, metric, page_size, page_token, caller)


@router.post("/models/{name}/versions", status_code=201)
def create_version(request: Request, name: str, body: VersionIn, caller: Principal = Contributor) -> dict:
    """Register the next version; its files are uploaded first (``PUT /artifacts/{sha256}``)."""
    version = registry_of(request).create_version(
        name,
        framework=body.framework,
        metrics=body.metrics,
        hyperparameters=body.hyperparameters,
        artifacts={k: ArtifactRef(a.sha256, a.size) for k, a in body.artifacts.items()},
        semver=body.semver,
        bump=body.bump,  # type: ignore[arg-type]  # checked by the registry
        description=body.description,
        changelog=body.changelog,
        tags=body.tags,
        signature=body.signature,
        dataset_uri=body.dataset_uri,
        dataset_hash=body.dataset_hash,
        code_version=body.code_version,
        flow_run_id=body.flow_run_id,
        parent_version=body.parent_version,
        extra=body.extra,
        idempotency_key=body.idempotency_key,
        actor=caller.owner,
    )
    return version.to_dict()


@router.get("/models/{name}/versions/{ref}")
async def get_version(request: Request, name: str, ref: str, caller: Principal = Reader) -> dict[str, Any]:
    """One version by number, semver, alias, ``latest`` or stage."""
    return await read(request, lambda: registry_of(request).get_version(name, ref).to_dict())


@router.post("/models/{name}/versions/{ref}/stage")
def transition_stage(request: Request, name: str, ref: str, body: StageIn, caller: Principal = Admin) -> dict:
    """Move a version to a stage directly (admins; reviewers promote through approvals)."""
    version = registry_of(request).transition_stage(
        name,
        ref,
        body.stage,
        reason=body.reason,
        actor=caller.owner,
        demote_to=body.demote_to,
        allow_multiple=body.allow_multiple,
        alias=body.alias,
    )
    return version.to_dict()


@router.put("/models/{name}/versions/{ref}/tags/{key}")
def set_version_tag(
    request: Request, name: str, ref: str, key: str, body: TagIn, caller: Principal = Contributor
) -> dict[str, Any]:
    """Set a version tag (audited)."""
    registry = registry_of(request)
    registry.set_version_tag(name, ref, key, body.value, actor=caller.owner)
    return registry.get_version(name, ref).to_dict()


@router.put("/models/{name}/versions/{ref}/extra/{key}")
def set_version_extra(
    request: Request, name: str, ref: str, key: str, body: ExtraIn, caller: Principal = Contributor
) -> dict[str, Any]:
    """Record something learned about a version after registration (audited)."""
    return registry_of(request).set_version_extra(name, ref, key, body.value, actor=caller.owner).to_dict()


@router.get("/models/{name}/versions/{ref}/verify")
def verify_version(request: Request, name: str, ref: str, caller: Principal = Reader) -> dict[str, Any]:
    """Re-hash every file of a version against its recorded SHA-256."""
    return registry_of(request).verify_version(name, ref).to_dict()


@router.get("/models/{name}/versions/{ref}/lineage")
async def version_lineage(
    request: Request, name: str, ref: str, caller: Principal = Reader
) -> dict[str, Any]:
    """Data set → training run → version → parent → endpoints of one version."""
    return await read(request, registry_of(request).lineage, name, ref)


# ----------------------------------------------------------------- aliases
@router.put("/models/{name}/aliases/{alias}")
def set_alias(request: Request, name: str, alias: str, body: AliasIn, caller: Principal = Admin) -> dict:
    """Point an alias at a version (the move is kept in the alias history)."""
    return (
        registry_of(request)
        .set_alias(name, alias, body.version, reason=body.reason, actor=caller.owner)
        .to_dict()
    )


@router.delete("/models/{name}/aliases/{alias}")
def delete_alias(
    request: Request, name: str, alias: str, reason: str = "", caller: Principal = Admin
) -> dict:
    """Remove an alias (recorded as a move to no version)."""
    return registry_of(request).delete_alias(name, alias, reason=reason, actor=caller.owner).to_dict()


@router.get("/models/{name}/aliases")
def alias_history(request: Request, name: str, alias: str | None = None, caller: Principal = Reader) -> dict:
    """Every move of the model's aliases (or one alias), oldest first."""
    return {"items": [m.to_dict() for m in registry_of(request).alias_history(name, alias)]}


@router.get("/models/{name}/stages")
def stage_history(
    request: Request, name: str, version: str | None = None, caller: Principal = Reader
) -> dict:
    """Every stage move of the model's versions (or one version), oldest first."""
    return {"items": [m.to_dict() for m in registry_of(request).stage_history(name, version)]}


@router.post("/models/{name}/rollback")
def rollback(request: Request, name: str, body: RollbackIn, caller: Principal = Admin) -> dict[str, Any]:
    """Return the stage and alias to the version that held the alias before."""
    done = registry_of(request).rollback(
        name, stage=body.stage, alias=body.alias, reason=body.reason, actor=caller.owner
    )
    return done.to_dict()


# --------------------------------------------------------- compare, lineage
@router.get("/models/{name}/compare")
def compare(
    request: Request,
    name: str,
    version: Annotated[list[str], Query(min_length=1)],
    primary: str,
    metric: Annotated[list[str] | None, Query()] = None,
    direction: Literal["max", "min"] = "max",
    min_improvement: float = 0.0,
    baseline: str | None = None,
    caller: Principal = Reader,
) -> dict[str, Any]:
    """Versions side by side on chosen metrics, and the winner by the registry's rule."""
    result = registry_of(request).compare(
        name,
        version,
        primary=primary,
        metrics=metric,
        direction=direction,
        min_improvement=min_improvement,
        baseline=baseline,
    )
    return result.to_dict()


@router.get("/models/{name}/lineage")
def model_lineage(request: Request, name: str, caller: Principal = Reader) -> dict[str, Any]:
    """Lineage of every version of a model."""
    return registry_of(request).lineage(name)
