"""Registry tasks under a real Prefect server and a real Dask cluster."""

from __future__ import annotations

from typing import Any

import pytest
from prefect import flow
from prefect.runtime import flow_run

from storage.registry.core import Registry
from tasks.registry.steps import (
    compare_model_versions,
    move_alias,
    register_model_version,
    transition_version_stage,
    verify_model_version,
)

pytestmark = pytest.mark.usefixtures("prefect_harness")


def test_flow_registers_promotes_and_compares() -> None:
    @flow
    def publish() -> dict[str, Any]:
        v1 = register_model_version(
            "churn", framework="sklearn", metrics={"auc": 0.81}, artifacts={"model.skops": b"one"}
        )
        v2 = register_model_version(
            "churn",
            framework="sklearn",
            metrics={"auc": 0.86},
            artifacts={"model.skops": b"two"},
            parent_version=v1.number,
        )
        result = compare_model_versions("churn", [v1.number, v2.number], primary="auc", min_improvement=0.02)
        transition_version_stage("churn", result.winner, "staging", reason="won comparison")
        move_alias("churn", "challenger", result.winner)
        report = verify_model_version("churn", result.winner)
        return {"winner": result.winner, "verified": report.ok, "run_id": str(flow_run.id)}

    out = publish()
    assert out == {"winner": 2, "verified": True, "run_id": out["run_id"]}
    registry = Registry.from_settings()
    version = registry.get_version("churn", "@challenger")
    assert (version.number, version.stage, version.parent_version) == (2, "staging", 1)
    assert version.flow_run_id == out["run_id"]
    assert version.code_version  # the git commit (or MLOPS_CODE_VERSION)


def test_retried_registration_creates_one_version(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"n": 0}
    original = Registry.create_version

    def flaky(self: Registry, *args: Any, **kwargs: Any) -> Any:
        created = original(self, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 1:
            raise ConnectionError("lost the connection after the commit")
        return created

    monkeypatch.setattr(Registry, "create_version", flaky)

    @flow
    def publish() -> int:
        return register_model_version.with_options(retry_delay_seconds=0)(
            "retry-model", framework="sklearn"
        ).number

    assert publish() == 1
    assert calls["n"] == 2
    assert Registry.from_settings().get_model("retry-model").latest_version == 1


def test_registration_fans_out_on_dask(dask_cluster: Any) -> None:
    from prefect_dask import DaskTaskRunner

    @flow(task_runner=DaskTaskRunner(address=dask_cluster.scheduler_address))
    def publish_many() -> list[int]:
        futures = [
            register_model_version.submit("fanout", framework="sklearn", metrics={"i": i}) for i in range(6)
        ]
        return sorted(f.result().number for f in futures)

    assert publish_many() == [1, 2, 3, 4, 5, 6]
