"""Registry tasks on a Prefect worker that has only the platform service's URL and a key.

The service runs in a thread over its own home; the worker side has an empty
``MLOPS_HOME``, no database URL and no artifact store, and must keep it empty.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prefect import flow
from prefect.runtime import flow_run

from blocks.registry import RegistryBlock
from blocks.settings import MlopsSettings
from mlops.client_extras import ServiceClient
from service.app import create_app
from service.config import ServiceSettings
from service.server import running_service
from storage.errors import ValidationError
from storage.registry.core import Registry
from tasks.registry.promotion import approval_store
from tasks.registry.steps import (
    compare_model_versions,
    load_model_artifact,
    move_alias,
    open_registry,
    register_model_version,
    transition_version_stage,
    verify_model_version,
)

pytestmark = pytest.mark.usefixtures("prefect_harness")


@dataclass
class Service:
    url: str
    key: str
    registry: Registry


@pytest.fixture
def service(tmp_path: Path, _isolated_home: Path) -> Iterator[Service]:
    app = create_app(ServiceSettings(port=0), settings=MlopsSettings(home=tmp_path / "server-home"))
    key = app.state.keys.create("worker", "admin", actor="setup")[0]
    with running_service(app) as url:
        yield Service(url, key, app.state.registry)
    assert not _isolated_home.exists() or list(_isolated_home.rglob("*")) == []


@pytest.fixture
def through_env(service: Service, monkeypatch: pytest.MonkeyPatch) -> Service:
    monkeypatch.setenv("MLOPS_API_URL", service.url)
    monkeypatch.setenv("MLOPS_API_KEY", service.key)
    return service


def _publish(registry_block: str | None = None) -> dict[str, Any]:
    @flow
    def publish() -> dict[str, Any]:
        v1 = register_model_version(
            "churn",
            framework="sklearn",
            metrics={"auc": 0.81},
            hyperparameters={"depth": 3},
            artifacts={"model.skops": b"one", "card.json": b"{}"},
            signature={"inputs": [{"name": "age", "type": "double"}]},
            dataset_uri="s3://raw/churn.parquet",
            dataset_hash="sha256:1",
            registry_block=registry_block,
        )
        v2 = register_model_version(
            "churn",
            framework="sklearn",
            metrics={"auc": 0.86},
            artifacts={"model.skops": b"two"},
            parent_version=v1.number,
            registry_block=registry_block,
        )
        result = compare_model_versions(
            "churn",
            [v1.number, v2.number],
            primary="auc",
            min_improvement=0.02,
            registry_block=registry_block,
        )
        transition_version_stage(
            "churn", result.winner, "staging", reason="won comparison", registry_block=registry_block
        )
        move_alias("churn", "challenger", result.winner, registry_block=registry_block)
        report = verify_model_version("churn", result.winner, registry_block=registry_block)
        weights = load_model_artifact("churn", result.winner, "model.skops", registry_block=registry_block)
        return {
            "winner": result.winner,
            "verified": report.ok,
            "weights": weights,
            "run_id": str(flow_run.id),
        }

    return publish()


def test_registry_tasks_through_the_service(through_env: Service) -> None:
    out = _publish()
    assert out == {"winner": 2, "verified": True, "weights": b"two", "run_id": out["run_id"]}
    version = through_env.registry.get_version("churn", "@challenger")
    assert (version.number, version.stage, version.parent_version) == (2, "staging", 1)
    assert version.flow_run_id == out["run_id"] and version.code_version
    assert version.created_by == "worker"  # the key's owner
    first = through_env.registry.get_version("churn", 1)
    assert first.signature == {"inputs": [{"name": "age", "type": "double"}]}
    assert first.hyperparameters == {"depth": 3} and first.dataset_uri == "s3://raw/churn.parquet"
    assert through_env.registry.load_artifact("churn", 1, "card.json") == b"{}"


def test_retried_registration_through_the_service_creates_one_version(
    through_env: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = {"n": 0}
    original = ServiceClient.create_version

    def flaky(self: ServiceClient, *args: Any, **kwargs: Any) -> Any:
        created = original(self, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 1:
            raise ConnectionError("lost the answer after the service committed")
        return created

    monkeypatch.setattr(ServiceClient, "create_version", flaky)

    @flow
    def publish() -> int:
        return register_model_version.with_options(retry_delay_seconds=0)(
            "retry-model", framework="sklearn"
        ).number

    assert publish() == 1
    assert calls["n"] == 2
    assert through_env.registry.get_model("retry-model").latest_version == 1


def test_a_registry_block_names_the_service(service: Service) -> None:
    RegistryBlock(api_url=service.url, api_key=service.key).save("remote-registry", overwrite=True)
    out = _publish("remote-registry")
    assert out["winner"] == 2
    assert service.registry.get_version("churn", "@challenger").number == 2


def test_steps_that_need_the_database_refuse_clearly(through_env: Service) -> None:
    with pytest.raises(ValidationError, match="MLOPS_API_URL names the platform service"):
        open_registry()
    with pytest.raises(ValidationError, match="needs the metadata database"):
        approval_store()
    assert isinstance(open_registry(remote=True), ServiceClient)


def test_a_service_without_a_key_is_an_error(service: Service, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLOPS_API_URL", service.url)
    monkeypatch.delenv("MLOPS_API_KEY", raising=False)
    with pytest.raises(ValidationError, match="no API key"):
        open_registry(remote=True)
    RegistryBlock(api_url=service.url).save("keyless-registry", overwrite=True)
    with pytest.raises(ValidationError, match="RegistryBlock 'keyless-registry'"):
        open_registry("keyless-registry", remote=True)
