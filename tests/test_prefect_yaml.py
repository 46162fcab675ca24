"""prefect.yaml: known keys only (Prefect ignores misspelled ones), every entrypoint is a flow
whose signature takes the parameters given, the schedules and triggers the platform promises,
and the whole file deployed to a real Prefect server and read back."""

from __future__ import annotations

import datetime as dt
import importlib
import itertools
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import pytest
import yaml
from prefect import Flow
from prefect.cli.deploy._models import DeploymentConfig, PrefectYamlModel, RawScheduleConfig, WorkPoolConfig
from prefect.events.schemas.deployment_triggers import DeploymentEventTrigger
from pydantic import TypeAdapter

from tasks.monitoring.steps import DRIFT_EVENT, PERFORMANCE_EVENT
from tasks.registry.promotion import PROMOTED_EVENT

ROOT = Path(__file__).resolve().parents[1]
PREFECT_YAML = ROOT / "prefect.yaml"
WORK_POOL = "mlops-process"

#: Every lifecycle flow and the entrypoint its deployment must name.
LIFECYCLE = {
    "train-model": "flows/training.py:train_model",
    "promote-model": "flows/promotion.py:promote_model",
    "canary-rollout": "flows/rollout.py:canary_rollout",
    "materialize-features": "flows/features.py:materialize_features",
    "feature-statistics": "flows/features.py:feature_statistics",
    "check-drift": "flows/monitoring.py:check_drift",
    "check-performance": "flows/monitoring.py:check_performance",
    "bias-check": "flows/governance.py:bias_check",
    "compliance-audit": "flows/governance.py:compliance_audit",
    "erase-entity": "flows/erasure.py:erase_entity_flow",
    "ingest-features": "flows/features.py:ingest_features",
    "blue-green-switch": "flows/rollout.py:blue_green_switch",
    "check-operations": "flows/monitoring.py:check_operations",
    "monitoring-report": "flows/monitoring.py:monitoring_report_flow",
    "build-reference-profile": "flows/monitoring.py:build_reference_profile",
    "governance-report": "flows/governance.py:governance_report_flow",
    "batch-predict": "flows/batch.py:batch_predict",
    "cluster-check": "flows/ops.py:cluster_check",
}
#: Flows of flows/ without a deployment of their own, and why.
NOT_DEPLOYED = {
    "training-pipeline": "subflow of train-model, that picks its task runner from the config",
    "cluster-probe": "subflow of cluster-check, run on the cluster cluster-check connects to",
}
#: The guides that name flows: every flow named there can be started from a deployment.
GUIDES = (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")))
HOUR, DAY = dt.timedelta(hours=1), dt.timedelta(days=1)
#: The promised cadence: (shortest, longest) gap between two runs.
CADENCE = {
    "materialize-features": (HOUR, HOUR),
    "check-drift": (DAY, DAY),
    "bias-check": (7 * DAY, 7 * DAY),
    "compliance-audit": (28 * DAY, 31 * DAY),
}
#: Which platform events start which deployment.
TRIGGERS = {
    "train-model": {DRIFT_EVENT, PERFORMANCE_EVENT},
    "canary-rollout": {PROMOTED_EVENT},
}


def _data() -> dict[str, Any]:
    return dict(yaml.safe_load(PREFECT_YAML.read_text()))


def _deployments() -> list[dict[str, Any]]:
    return list(_data()["deployments"])


def _by_name() -> dict[str, dict[str, Any]]:
    return {d["name"]: d for d in _deployments()}


def module_missing(entrypoint: str) -> str | None:
    """Why an entrypoint cannot be checked yet: its file is not in the tree (else ``None``)."""
    path = entrypoint.partition(":")[0]
    return None if (ROOT / path).exists() else f"{path} is not in the tree yet"


def load_flow(entrypoint: str) -> Flow[Any, Any]:
    """Import ``path/to/file.py:name`` as a flow; skip while the file does not exist."""
    if reason := module_missing(entrypoint):
        pytest.skip(reason)
    path, _, name = entrypoint.partition(":")
    module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
    flow = getattr(module, name)
    assert isinstance(flow, Flow), f"{entrypoint} is not a Prefect flow"
    return flow


def _fields(model: Any) -> set[str]:
    return {info.alias or name for name, info in model.model_fields.items()}


def _required(flow: Flow[Any, Any]) -> set[str]:
    return set(flow.parameters.required or [])


def _sample_event(event: str, stage: str = "production") -> Any:
    """An event shaped as the platform emits it (resource id and labels of tasks/*)."""
    from prefect.server.events.schemas.events import ReceivedEvent

    return ReceivedEvent.model_validate(
        {
            "id": uuid.uuid4(),
            "event": event,
            "occurred": dt.datetime.now(dt.UTC),
            "resource": {
                "prefect.resource.id": "mlops.model-version.fraud.7",
                "mlops.model": "fraud",
                "mlops.version": "7",
                "mlops.stage": stage,
            },
        }
    )


def _server_trigger(spec: dict[str, Any]) -> Any:
    from prefect.server.events.schemas.automations import EventTrigger

    trigger = DeploymentEventTrigger.model_validate(spec)
    return EventTrigger.model_validate(trigger.model_dump(include=set(EventTrigger.model_fields)))


# ------------------------------------------------------------ the file itself
def test_prefect_reads_the_file() -> None:
    data = _data()
    PrefectYamlModel.model_validate(data)
    adapter: TypeAdapter[Any] = TypeAdapter(DeploymentEventTrigger)
    for deployment in data["deployments"]:
        for trigger in deployment.get("triggers") or []:
            adapter.validate_python(trigger)


def test_top_level_keys_are_known() -> None:
    assert set(_data()) <= _fields(PrefectYamlModel), set(_data()) - _fields(PrefectYamlModel)


def test_names_are_unique() -> None:
    names = [d["name"] for d in _deployments()]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("deployment", _deployments(), ids=lambda d: d["name"])
def test_deployment_keys_are_known(deployment: dict[str, Any]) -> None:
    assert set(deployment) <= _fields(DeploymentConfig), set(deployment) - _fields(DeploymentConfig)
    assert set(deployment["work_pool"]) <= _fields(WorkPoolConfig)
    assert deployment["work_pool"]["name"] == WORK_POOL
    for schedule in deployment.get("schedules") or []:
        assert set(schedule) <= _fields(RawScheduleConfig), set(schedule) - _fields(RawScheduleConfig)
    for trigger in deployment.get("triggers") or []:
        known = _fields(DeploymentEventTrigger)
        assert set(trigger) <= known, set(trigger) - known


@pytest.mark.parametrize("deployment", _deployments(), ids=lambda d: d["name"])
def test_entrypoint_is_a_flow_taking_the_parameters(deployment: dict[str, Any]) -> None:
    flow = load_flow(deployment["entrypoint"])
    accepted = set(flow.parameters.properties)
    given = set(deployment.get("parameters") or {})
    assert given <= accepted, f"{deployment['name']}: unknown flow parameters {given - accepted}"
    for schedule in deployment.get("schedules") or []:
        extra = set(schedule.get("parameters") or {})
        assert extra <= accepted, f"{deployment['name']}: unknown schedule parameters {extra - accepted}"
        if schedule.get("active", True):
            missing = _required(flow) - given - extra
            assert not missing, f"{deployment['name']}: scheduled runs lack required parameters {missing}"
    for trigger in deployment.get("triggers") or []:
        extra = set(trigger.get("parameters") or {})
        assert extra <= accepted, f"{deployment['name']}: unknown trigger parameters {extra - accepted}"
        missing = _required(flow) - given - extra
        assert not missing, f"{deployment['name']}: triggered runs lack required parameters {missing}"


def test_every_lifecycle_flow_has_a_deployment() -> None:
    deployed = {name: d["entrypoint"] for name, d in _by_name().items()}
    for name, entrypoint in LIFECYCLE.items():
        assert deployed.get(name) == entrypoint, f"no deployment {name!r} of {entrypoint}"


def flows_in_tree() -> dict[str, str]:
    """Every flow defined in flows/, by flow name, as ``path:function``."""
    found = {}
    for path in sorted((ROOT / "flows").glob("*.py")):
        module_name = f"flows.{path.stem}"
        module = importlib.import_module(module_name)
        for attr, value in vars(module).items():
            if isinstance(value, Flow) and value.fn.__module__ == module_name:
                found[value.name] = f"flows/{path.name}:{attr}"
    return found


def _deployed_flow_names() -> set[str]:
    return {load_flow(d["entrypoint"]).name for d in _deployments()}


def test_every_flow_has_a_deployment_or_a_reason() -> None:
    flows = flows_in_tree()
    assert "train-model" in flows and "training-pipeline" in flows  # the scan sees flows and subflows
    deployed = _deployed_flow_names()
    undeployed = sorted(set(flows) - deployed - set(NOT_DEPLOYED))
    assert not undeployed, (
        f"flows without a deployment in prefect.yaml (or a reason in NOT_DEPLOYED): {undeployed}"
    )
    stale = sorted(name for name in NOT_DEPLOYED if name not in flows or name in deployed)
    assert not stale, f"NOT_DEPLOYED names flows that are gone or deployed: {stale}"


def test_every_flow_the_guides_name_has_a_deployment() -> None:
    flows = flows_in_tree()
    deployed = _deployed_flow_names()
    for guide in GUIDES:
        named = set(re.findall(r"`([a-z][a-z0-9-]*)`", guide.read_text())) & set(flows)
        missing = sorted(named - deployed)
        assert not missing, f"{guide.relative_to(ROOT)} names flows without a deployment: {missing}"


@pytest.mark.parametrize("name", sorted(CADENCE))
def test_schedule_cadence(name: str) -> None:
    from prefect._vendor.croniter import croniter

    shortest, longest = CADENCE[name]
    schedules = [s for s in _by_name()[name].get("schedules") or [] if s.get("active", True)]
    assert schedules, f"{name} has no active schedule"
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    for schedule in schedules:
        it = croniter(schedule["cron"], start)
        runs = [it.get_next(dt.datetime) for _ in range(4)]
        gaps = {b - a for a, b in itertools.pairwise(runs)}
        assert all(shortest <= gap <= longest for gap in gaps), (name, schedule["cron"], gaps)


@pytest.mark.parametrize("name", sorted(TRIGGERS))
def test_triggers_listen_to_the_platforms_events(name: str) -> None:
    triggers = _by_name()[name].get("triggers") or []
    assert triggers, f"{name} has no trigger"
    expected = {e for t in triggers for e in t.get("expect", [])}
    assert expected == TRIGGERS[name]
    for spec in triggers:
        trigger = _server_trigger(spec)
        for event in spec["expect"]:
            assert trigger.covers(_sample_event(event)), f"{spec['name']} does not match {event}"
        assert not trigger.covers(_sample_event("mlops.model.rolled_back"))


def test_rollout_trigger_only_for_production() -> None:
    (spec,) = _by_name()["canary-rollout"]["triggers"]
    trigger = _server_trigger(spec)
    assert trigger.covers(_sample_event(PROMOTED_EVENT, stage="production"))
    assert not trigger.covers(_sample_event(PROMOTED_EVENT, stage="staging"))


def _render(parameters: dict[str, Any], event: Any) -> dict[str, Any]:
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    return {k: env.from_string(v).render(event=event) for k, v in parameters.items()}


def test_trigger_parameters_render_from_the_event() -> None:
    by_name = _by_name()
    (retrain,) = by_name["train-model"]["triggers"]
    assert _render(retrain["parameters"], _sample_event(DRIFT_EVENT)) == {
        "config_path": "pipelines/fraud.yaml"
    }
    (rollout,) = by_name["canary-rollout"]["triggers"]
    assert _render(rollout["parameters"], _sample_event(PROMOTED_EVENT)) == {
        "endpoint": "fraud",
        "model": "fraud",
        "version": "7",
    }


def test_promotion_event_carries_the_labels_the_rollout_trigger_reads() -> None:
    from tasks.registry.promotion import _version_resource

    labels = _version_resource("fraud", 7, "production")
    assert labels["prefect.resource.id"] == "mlops.model-version.fraud.7"
    assert {"mlops.model", "mlops.version", "mlops.stage"} <= set(labels)


@pytest.mark.parametrize("name", sorted(TRIGGERS))
def test_rendered_trigger_parameters_pass_the_flows_schema(name: str) -> None:
    """The server validates a triggered run's parameters against the flow's schema before it starts."""
    from prefect.utilities.schema_tools import validate

    spec = _by_name()[name]
    flow = load_flow(spec["entrypoint"])
    for trigger in spec["triggers"]:
        event = _sample_event(next(iter(trigger["expect"])))
        parameters = {**(spec.get("parameters") or {}), **_render(trigger["parameters"], event)}
        validate(parameters, flow.parameters.model_dump(), raise_on_error=True)


# ------------------------------------------------------- deployed for real
def deployable() -> list[str]:
    """Deployments whose flow file is in the tree (all of them once every part has landed)."""
    return [d["name"] for d in _deployments() if not module_missing(d["entrypoint"])]


@dataclass(frozen=True)
class DeployedServer:
    """A real Prefect server with prefect.yaml deployed to it."""

    api_url: str
    deployed: tuple[str, ...]


_SERVER = pytest.StashKey[DeployedServer | BaseException]()


def deployed_prefect_server(request: pytest.FixtureRequest) -> DeployedServer:
    """One ``prefect server start`` per test session, on a free loopback port, with prefect.yaml deployed.

    Started on first use (this module and tests/test_automations.py share it)
    and stopped when the session ends, whatever the outcome of the tests.
    """
    from mlops.stack import free_port, start_prefect_server, stop_service

    stash = request.config.stash
    if _SERVER not in stash:
        from mlops.stack import deploy_prefect_yaml

        factory: pytest.TempPathFactory = request.getfixturevalue("tmp_path_factory")
        home = factory.mktemp("prefect-server-home")
        try:
            record, api_url = start_prefect_server(home=home, port=free_port(), timeout=150)

            def stop() -> None:
                stop_service(record)

            request.config.add_cleanup(stop)
            names = deployable()
            selection = None if len(names) == len(_deployments()) else names
            deploy_prefect_yaml(api_url, selection, project_dir=ROOT, home=home)
            stash[_SERVER] = DeployedServer(api_url, tuple(names))
        except BaseException as exc:
            stash[_SERVER] = exc
    found = stash[_SERVER]
    if isinstance(found, BaseException):
        raise found
    return found


@pytest.fixture(scope="session")
def deployed_server(request: pytest.FixtureRequest) -> DeployedServer:
    return deployed_prefect_server(request)


@pytest.mark.slow
def test_deploys_to_a_prefect_server(deployed_server: DeployedServer) -> None:
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    by_name = _by_name()
    api_url = deployed_server.api_url
    with temporary_settings({PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
        for name in deployed_server.deployed:
            spec = by_name[name]
            flow_name = load_flow(spec["entrypoint"]).name
            deployment = client.read_deployment_by_name(f"{flow_name}/{name}")
            assert deployment.work_pool_name == WORK_POOL
            assert deployment.entrypoint == spec["entrypoint"]
            for key, value in (spec.get("parameters") or {}).items():
                assert deployment.parameters[key] == value
            crons = sorted(s.schedule.cron for s in deployment.schedules)  # type: ignore[union-attr]
            assert crons == sorted(s["cron"] for s in spec.get("schedules") or [])
            automations = client.read_resource_related_automations(f"prefect.deployment.{deployment.id}")
            assert sorted(a.name for a in automations) == sorted(
                t["name"] for t in spec.get("triggers") or []
            )
            for automation in automations:
                (trigger_spec,) = [t for t in spec["triggers"] if t["name"] == automation.name]
                assert set(automation.trigger.expect) == set(trigger_spec["expect"])  # type: ignore[union-attr]
                (action,) = automation.actions
                assert action.deployment_id == deployment.id  # type: ignore[union-attr]
                # the Jinja templates reach the server unrendered, to be filled from each event
                assert action.parameters == trigger_spec["parameters"]  # type: ignore[union-attr]
    missing = sorted(set(by_name) - set(deployed_server.deployed))
    if missing:
        pytest.skip(f"deployed {len(deployed_server.deployed)} deployments; not in the tree yet: {missing}")
