"""examples/run_deployment_example.py: a deployment started from another pipeline, and a subflow.

The deployment part runs against the real Prefect server that has prefect.yaml
deployed (shared with tests/test_prefect_yaml.py); no worker polls it, so the
runs are created and stay scheduled. The subflow part trains a small model in
the test harness on the session's Dask cluster.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from examples.run_deployment_example import (
    nightly_retrain,
    start_training,
    train_then_check,
    training_parameters,
)
from tests.test_prefect_yaml import DeployedServer, deployed_prefect_server, module_missing


@pytest.fixture(scope="session")
def deployed_server(request: pytest.FixtureRequest) -> DeployedServer:
    return deployed_prefect_server(request)


def _needs_training() -> None:
    if reason := module_missing("flows/training.py:train_model"):
        pytest.skip(reason)


def test_training_parameters() -> None:
    assert training_parameters(config={"name": "m"}) == {"config": {"name": "m"}}
    assert training_parameters("a.yaml", {"seed": 1}) == {"config_path": "a.yaml", "config": {"seed": 1}}
    with pytest.raises(ValueError, match="config_path or config"):
        training_parameters()


@pytest.mark.slow
def test_other_pipeline_starts_the_training_deployment(deployed_server: DeployedServer) -> None:
    _needs_training()
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: deployed_server.api_url}):
        direct = start_training("pipelines/example-direct.yaml")
        assert direct.parameters == {"config_path": "pipelines/example-direct.yaml"}
        assert direct.state is not None and direct.state.is_scheduled()

        parent = nightly_retrain(["pipelines/a.yaml", "pipelines/b.yaml"], return_state=True)
        child_ids = parent.result()
        assert len(child_ids) == 2
        with get_client(sync_client=True) as client:
            parent_id = parent.state_details.flow_run_id
            deployment = client.read_deployment_by_name("train-model/train-model")
            children = [client.read_flow_run(run_id) for run_id in child_ids]
            linked = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[parent_id])
                )
            )
    assert {c.deployment_id for c in children} == {deployment.id}
    assert sorted(c.parameters["config_path"] for c in children) == ["pipelines/a.yaml", "pipelines/b.yaml"]
    assert {str(r.id) for r in linked} == set(child_ids), "deployment runs are children of the calling flow"


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_harness")
def test_training_as_a_subflow(tmp_path: Path, dask_cluster: Any) -> None:
    _needs_training()
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"x1": rng.normal(size=120), "x2": rng.normal(size=120)})
    frame["label"] = (frame["x1"] + 0.5 * frame["x2"] > 0).astype(int)
    data = tmp_path / "points.csv"
    frame.to_csv(data, index=False)
    config = {
        "name": "subflow-example",
        "data_source": str(data),
        "target_column": "label",
        "model_class": "LogisticRegression",
        "cross_validation_folds": 0,
        "dask_address": dask_cluster.scheduler_address,
    }
    state = train_then_check(config, return_state=True)
    result = state.result()
    assert result["version"] == 1
    from tasks.registry.steps import open_registry

    assert open_registry().get_version("subflow-example", 1).flow_run_id is not None
