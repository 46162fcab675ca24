"""Prefect tasks over the model registry.

Each task opens the registry from a saved :class:`~blocks.registry.RegistryBlock`
(by name) or from the ``MLOPS_*`` settings, does one thing, and returns plain
records, so flows pass names and numbers rather than connections. Creating a
version is idempotent per task run: a retry returns the version the first try
created. The flow run id and the code version are recorded automatically.

When the block's ``api_url`` (or, without a block, ``MLOPS_API_URL``) names a
platform service, these tasks go through it with the block's ``api_key`` (or
``MLOPS_API_KEY``): a Prefect worker then needs no database URL and no
artifact store, files are uploaded through the API, and the key's owner is
the actor. Steps that need the database itself (approval stores, reports,
profiles) refuse with an error naming the service.

Example:
    >>> from prefect import flow
    >>> from tasks.registry.steps import register_model_version
    >>> @flow
    ... def publish() -> int:
    ...     version = register_model_version("iris", framework="sklearn",
    ...                                      metrics={"accuracy": 0.97},
    ...                                      artifacts={"model.skops": b"..."})
    ...     return version.number
"""

from __future__ import annotations

import functools
import os
import subprocess
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, cast, overload

from prefect import task
from prefect.runtime import flow_run, task_run

from blocks.registry import RegistryBlock
from blocks.settings import get_settings
from storage.errors import ValidationError
from storage.registry.compare import Comparison, Direction
from storage.registry.core import ArtifactSource, Registry, VersionRef
from storage.registry.records import AliasMove, ModelVersion, VerifyReport

if TYPE_CHECKING:
    from mlops.client_extras import ServiceClient

REMOTE_TASKS = (
    "register-model-version, transition-version-stage, move-alias, compare-model-versions, "
    "verify-model-version, load-model-artifact"
)


@overload
def open_registry(block_name: str | None = None) -> Registry: ...


@overload
def open_registry(block_name: str | None = None, *, remote: Literal[True]) -> Registry | ServiceClient: ...


def open_registry(block_name: str | None = None, *, remote: bool = False) -> Registry | ServiceClient:
    """The registry a saved RegistryBlock describes, or the one ``MLOPS_*`` points at.

    With ``remote=True``, a block with ``api_url`` (or ``MLOPS_API_URL`` when
    no block is named) gives a client of that platform service instead, with
    the registry's method names. Without it, a configured service is an
    error: the caller needs the database itself.

    Registries (and clients) are kept per location, so the tasks of a flow
    share one set of connection pools instead of opening (and schema-checking)
    a database each.
    """
    block = cast(RegistryBlock, RegistryBlock.load(block_name)) if block_name else None
    service = _service_of(block, block_name)
    if service is not None:
        url, key, source = service
        if not remote:
            raise ValidationError(
                f"this step needs the metadata database and artifact store themselves, and {source} "
                f"names the platform service {url}: through the service only the registry tasks run "
                f"({REMOTE_TASKS}). Run this step with a RegistryBlock (or MLOPS_*) that names the database"
            )
        if not key:
            raise ValidationError(f"{source} names the platform service {url} but no API key is given")
        return _client_at(url, key, os.environ.get("MLOPS_API_CA_BUNDLE") or True)
    settings = block.to_settings() if block is not None else get_settings()
    return _registry_at(
        settings.resolved_database_url(), settings.resolved_artifact_root(), settings.resolved_user()
    )


def _service_of(block: RegistryBlock | None, block_name: str | None) -> tuple[str, str, str] | None:
    """(url, key, where it was configured) of the platform service to use, or None for the database."""
    if block is not None:
        if not block.api_url:
            return None
        key = block.api_key.get_secret_value() if block.api_key else ""
        return block.api_url, key, f"RegistryBlock {block_name!r} (api_url)"
    url = os.environ.get("MLOPS_API_URL", "").strip()
    if not url:
        return None
    return url, os.environ.get("MLOPS_API_KEY", "").strip(), "MLOPS_API_URL"


@functools.lru_cache(maxsize=16)
def _registry_at(database_url: str, artifact_root: str, actor: str) -> Registry:
    return Registry.open(database_url, artifact_root, actor=actor)


@functools.lru_cache(maxsize=16)
def _client_at(url: str, api_key: str, verify: bool | str) -> ServiceClient:
    from mlops.client_extras import ServiceClient

    return ServiceClient(url, api_key, verify=verify)


def code_version() -> str | None:
    """``MLOPS_CODE_VERSION``, else the git commit of the working directory, else None."""
    if os.environ.get("MLOPS_CODE_VERSION"):
        return os.environ["MLOPS_CODE_VERSION"]
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def _current(getter: Any) -> str | None:
    try:
        value = getter()
    except Exception:  # outside a run the runtime module raises or returns None
        return None
    return str(value) if value else None


@task(name="register-model-version", retries=2, retry_delay_seconds=1)
def register_model_version(
    model: str,
    *,
    framework: str,
    metrics: Mapping[str, Any] | None = None,
    hyperparameters: Mapping[str, Any] | None = None,
    artifacts: Mapping[str, ArtifactSource] | None = None,
    semver: str | None = None,
    bump: str = "minor",
    description: str = "",
    changelog: str = "",
    tags: Mapping[str, Any] | None = None,
    signature: Mapping[str, Any] | None = None,
    dataset_uri: str | None = None,
    dataset_hash: str | None = None,
    parent_version: VersionRef | None = None,
    create_model: bool = True,
    registry_block: str | None = None,
) -> ModelVersion:
    """Register a new version (and the model itself when ``create_model``)."""
    registry = open_registry(registry_block, remote=True)
    if create_model:
        registry.ensure_model(model)
    run_id = _current(lambda: task_run.id)
    return registry.create_version(
        model,
        framework=framework,
        metrics=metrics,
        hyperparameters=hyperparameters,
        artifacts=artifacts,
        semver=semver,
        bump=bump,  # type: ignore[arg-type]
        description=description,
        changelog=changelog,
        tags=tags,
        signature=signature,
        dataset_uri=dataset_uri,
        dataset_hash=dataset_hash,
        code_version=code_version(),
        flow_run_id=_current(lambda: flow_run.id),
        parent_version=parent_version,
        idempotency_key=f"task-run:{run_id}" if run_id else None,
    )


@task(name="transition-version-stage", retries=2, retry_delay_seconds=1)
def transition_version_stage(
    model: str,
    version: VersionRef,
    stage: str,
    *,
    reason: str = "",
    actor: str | None = None,
    alias: str | None = None,
    registry_block: str | None = None,
) -> ModelVersion:
    """Move a version to another stage (and optionally an alias with it)."""
    registry = open_registry(registry_block, remote=True)
    current = registry.get_version(model, version)
    if current.stage == stage:  # a retry after a committed move
        return current
    return registry.transition_stage(model, version, stage, reason=reason, actor=actor, alias=alias)


@task(name="move-alias", retries=2, retry_delay_seconds=1)
def move_alias(
    model: str,
    alias: str,
    version: VersionRef,
    *,
    reason: str = "",
    actor: str | None = None,
    registry_block: str | None = None,
) -> AliasMove:
    """Point an alias at a version."""
    return open_registry(registry_block, remote=True).set_alias(
        model, alias, version, reason=reason, actor=actor
    )


@task(name="compare-model-versions")
def compare_model_versions(
    model: str,
    versions: Sequence[VersionRef],
    *,
    primary: str,
    metrics: Sequence[str] | None = None,
    direction: Direction = "max",
    min_improvement: float = 0.0,
    baseline: VersionRef | None = None,
    registry_block: str | None = None,
) -> Comparison:
    """Compare versions and pick a winner by the primary metric."""
    return open_registry(registry_block, remote=True).compare(
        model,
        versions,
        primary=primary,
        metrics=metrics,
        direction=direction,
        min_improvement=min_improvement,
        baseline=baseline,
    )


@task(name="verify-model-version")
def verify_model_version(
    model: str, version: VersionRef, *, registry_block: str | None = None
) -> VerifyReport:
    """Re-hash every artifact of a version."""
    return open_registry(registry_block, remote=True).verify_version(model, version)


@task(name="load-model-artifact", retries=2, retry_delay_seconds=1)
def load_model_artifact(
    model: str, version: VersionRef, name: str, *, registry_block: str | None = None
) -> bytes:
    """The verified bytes of one artifact of a version."""
    return open_registry(registry_block, remote=True).load_artifact(model, version, name)
