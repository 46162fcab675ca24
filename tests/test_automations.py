"""The automations of prefect.yaml fire on a real Prefect server.

``prefect server start`` runs the triggers and actions services; the test
session's Prefect harness is not used here. Events are sent to the server's
``/api/events/in`` exactly as ``tasks/monitoring/steps.py`` and ``tasks/registry/promotion.py``
emit them, and the flow run the trigger creates is read back (it need not run:
no worker polls this server).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest

from tasks.monitoring.steps import DRIFT_EVENT, PERFORMANCE_EVENT
from tasks.registry.promotion import PROMOTED_EVENT
from tests.test_prefect_yaml import DeployedServer, deployed_prefect_server, module_missing

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def deployed_server(request: pytest.FixtureRequest) -> DeployedServer:
    return deployed_prefect_server(request)


def _needs(entrypoint: str) -> None:
    if reason := module_missing(entrypoint):
        pytest.skip(reason)


def emit(api_url: str, event: str, resource: dict[str, str], payload: dict[str, Any] | None = None) -> None:
    """Send one event to the server at ``api_url`` (its websocket, as ``emit_event`` does)."""
    from prefect.events import Event
    from prefect.events.clients import PrefectEventsClient

    async def send() -> None:
        async with PrefectEventsClient(api_url=api_url) as client:
            await client.emit(Event(event=event, resource=resource, payload=payload or {}))

    asyncio.run(send())


def version_resource(model: str, version: int, stage: str | None = None) -> dict[str, str]:
    resource = {
        "prefect.resource.id": f"mlops.model-version.{model}.{version}",
        "mlops.model": model,
        "mlops.version": str(version),
    }
    if stage:
        resource["mlops.stage"] = stage
    return resource


def runs_of(api_url: str, deployment: str) -> list[Any]:
    """The flow runs of ``flow-name/deployment-name`` on the server."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
        found = client.read_deployment_by_name(deployment)
        return list(
            client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[found.id])))
        )


def wait_for_run(api_url: str, deployment: str, parameters: dict[str, Any], timeout: float = 60.0) -> Any:
    """The first run of ``deployment`` whose parameters include ``parameters``; fails after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        for run in runs_of(api_url, deployment):
            if parameters.items() <= run.parameters.items():
                return run
        if time.monotonic() > deadline:
            seen = [r.parameters for r in runs_of(api_url, deployment)]
            pytest.fail(f"no run of {deployment} with {parameters} after {timeout:.0f} s; runs: {seen}")
        time.sleep(0.5)


def test_drift_event_starts_retraining(deployed_server: DeployedServer) -> None:
    _needs("flows/training.py")
    model = f"churn-{uuid.uuid4().hex[:8]}"
    emit(deployed_server.api_url, DRIFT_EVENT, version_resource(model, 3), {"severity": "critical"})
    run = wait_for_run(
        deployed_server.api_url, "train-model/train-model", {"config_path": f"pipelines/{model}.yaml"}
    )
    assert run.state_type.value in {"SCHEDULED", "PENDING", "RUNNING", "COMPLETED", "FAILED", "CRASHED"}


def test_retraining_fires_once_per_model_per_window(deployed_server: DeployedServer) -> None:
    _needs("flows/training.py")
    api_url = deployed_server.api_url
    model, sentinel = f"burst-{uuid.uuid4().hex[:8]}", f"sentinel-{uuid.uuid4().hex[:8]}"
    for column in ("amount", "age", "country"):  # one check, three drifted columns, three alerts
        emit(api_url, DRIFT_EVENT, version_resource(model, 1), {"subject": column})
    wait_for_run(api_url, "train-model/train-model", {"config_path": f"pipelines/{model}.yaml"})
    emit(api_url, PERFORMANCE_EVENT, version_resource(model, 1), {"metric": "f1"})
    emit(api_url, DRIFT_EVENT, version_resource(sentinel, 1))
    wait_for_run(api_url, "train-model/train-model", {"config_path": f"pipelines/{sentinel}.yaml"})
    configs = [r.parameters.get("config_path") for r in runs_of(api_url, "train-model/train-model")]
    assert configs.count(f"pipelines/{model}.yaml") == 1


def test_performance_event_starts_retraining(deployed_server: DeployedServer) -> None:
    _needs("flows/training.py")
    model = f"fraud-{uuid.uuid4().hex[:8]}"
    emit(deployed_server.api_url, PERFORMANCE_EVENT, version_resource(model, 2), {"metric": "f1"})
    wait_for_run(
        deployed_server.api_url, "train-model/train-model", {"config_path": f"pipelines/{model}.yaml"}
    )


def test_other_events_start_nothing(deployed_server: DeployedServer) -> None:
    _needs("flows/training.py")
    api_url = deployed_server.api_url
    quiet, loud = f"quiet-{uuid.uuid4().hex[:8]}", f"loud-{uuid.uuid4().hex[:8]}"
    emit(api_url, "mlops.compliance.failed", version_resource(quiet, 1))
    emit(api_url, DRIFT_EVENT, version_resource(loud, 1))
    # events are processed in order: once the later drift event fired, the earlier one was seen
    wait_for_run(api_url, "train-model/train-model", {"config_path": f"pipelines/{loud}.yaml"})
    configs = {r.parameters.get("config_path") for r in runs_of(api_url, "train-model/train-model")}
    assert f"pipelines/{quiet}.yaml" not in configs


def test_promotion_to_production_starts_canary_rollout(deployed_server: DeployedServer) -> None:
    _needs("flows/rollout.py")
    api_url = deployed_server.api_url
    model = f"recs-{uuid.uuid4().hex[:8]}"
    emit(api_url, PROMOTED_EVENT, version_resource(model, 4, "staging"))
    emit(api_url, PROMOTED_EVENT, version_resource(model, 5, "production"))
    run = wait_for_run(api_url, "canary-rollout/canary-rollout", {"model": model, "endpoint": model})
    assert str(run.parameters["version"]) == "5"
    versions = {str(r.parameters.get("version")) for r in runs_of(api_url, "canary-rollout/canary-rollout")
                if r.parameters.get("model") == model}  # fmt: skip
    assert versions == {"5"}, "a promotion to staging must not start a rollout"
