"""The batch-predict flow and ``mlops predict``: chunks on Dask, order kept, version recorded, lineage.

The flow is one flow run whose ``score-chunk`` task runs are its children; a
failed chunk leaves no parts and the previous output untouched.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import pandas as pd
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, FlowRunFilterParentFlowRunId
from typer.testing import CliRunner

from flows.batch import batch_predict
from mlops.cli import app
from serving.models import ModelCache
from serving.protocol import Batch
from serving.testing import demo_frame, register_demo
from storage.errors import NotFoundError, ValidationError
from storage.governance.lineage import LineageStore
from storage.registry.core import Registry

pytestmark = pytest.mark.usefixtures("prefect_harness")


def expected(registry: Registry, version: str, frame: pd.DataFrame) -> np.ndarray:
    loaded = ModelCache(registry).get("fraud", version)
    columns = {n: frame[n].to_numpy() for n in loaded.spec.names}
    columns["country"] = columns["country"].astype(object)
    return np.asarray(loaded.runtime.predict(Batch(columns, len(frame))).probabilities)


@pytest.fixture
def registry() -> Registry:
    reg = Registry.from_settings()
    register_demo(reg, "fraud", "onnx")
    register_demo(reg, "fraud", "sklearn")
    reg.set_alias("fraud", "champion", 1)
    return reg


@pytest.mark.parametrize(("suffix", "out_suffix"), [(".csv", ".parquet"), (".parquet", ".csv")])
def test_flow_scores_in_order_on_dask(
    registry: Registry, dask_cluster: Any, tmp_path: Path, suffix: str, out_suffix: str
) -> None:
    frame = demo_frame(5000, seed=12).assign(row_id=np.arange(5000)[::-1])
    source, target = tmp_path / f"in{suffix}", tmp_path / "out" / f"scores{out_suffix}"
    frame.to_csv(source, index=False) if suffix == ".csv" else frame.to_parquet(source, row_group_size=500)
    result = batch_predict(
        model="fraud", input=str(source), output=str(target), chunk_rows=700,
        dask_address=dask_cluster.scheduler_address,
    )  # fmt: skip
    assert result["rows"] == 5000 and result["version"] == 1 and result["chunks"] > 3
    scored = pd.read_parquet(target) if out_suffix == ".parquet" else pd.read_csv(target)
    assert scored["row_id"].tolist() == frame["row_id"].tolist()  # input order kept
    assert set(scored["model_version"]) == {1} and set(scored["model"]) == {"fraud"}
    np.testing.assert_allclose(
        scored[["probability_0", "probability_1"]], expected(registry, "1", frame), atol=1e-9
    )
    assert sorted(p.name for p in target.parent.iterdir()) == [target.name]  # parts and temp file gone
    lineage = LineageStore(registry).dataset_lineage(result["lineage"]["input"])
    assert {"name": "fraud/1", "relation": "batch_scored"} in lineage["model_versions"]
    assert LineageStore(registry).get_dataset(result["lineage"]["output"]).uri == str(target)


def test_fsspec_urls_and_an_explicit_version(registry: Registry, dask_cluster: Any) -> None:
    frame = demo_frame(300, seed=2)
    fs = fsspec.filesystem("memory")
    with fs.open("/batch/in.parquet", "wb") as f:
        frame.to_parquet(f)
    result = batch_predict(
        model="fraud", version="2", input="memory://batch/in.parquet", output="memory://batch/out.csv",
        dask_address=dask_cluster.scheduler_address,
    )  # fmt: skip
    with fs.open("/batch/out.csv", "rb") as f:
        scored = pd.read_csv(f)
    assert result["version"] == 2 and len(scored) == 300 and set(scored["model_version"]) == {2}
    np.testing.assert_allclose(
        scored[["probability_0", "probability_1"]], expected(registry, "2", frame), atol=1e-9
    )
    with pytest.raises(NotFoundError):
        batch_predict(model="nope", input="memory://batch/in.parquet", output="memory://batch/x.csv")


def test_mlops_predict_command(registry: Registry, dask_cluster: Any, tmp_path: Path) -> None:
    source, target = tmp_path / "in.csv", tmp_path / "scores.csv"
    demo_frame(200, seed=1).to_csv(source, index=False)
    env = {"MLOPS_DASK_ADDRESS": dask_cluster.scheduler_address}
    result = CliRunner().invoke(
        app, ["predict", "fraud@champion", "-i", str(source), "-o", str(target)], env=env
    )
    assert result.exit_code == 0, result.output
    assert "200 rows scored by fraud v1" in result.output
    bad = CliRunner().invoke(
        app, ["predict", "fraud@3", "-i", str(source), "-o", str(target), "--json"], env=env
    )
    assert bad.exit_code == 1 and "error:" in bad.output
    assert len(pd.read_csv(target)) == 200


def _completed_chunk_runs(run_id: str, expected: int, timeout: float = 120.0) -> list[Any]:
    """The run's completed score-chunk task runs, once ``expected`` of them are recorded (or the deadline).

    Task runs reach the server as events, recorded after the flow returns; on a busy machine that lags.
    """
    from prefect.events.worker import EventsWorker

    EventsWorker.drain_all()
    deadline = time.monotonic() + timeout
    while True:
        with get_client(sync_client=True) as client:
            tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])))
        done = [t for t in tasks if t.task_key.startswith("score") and t.state and t.state.is_completed()]
        if len(done) >= expected or time.monotonic() > deadline:
            return done
        time.sleep(0.5)


def test_one_flow_run_with_a_task_run_per_chunk(
    registry: Registry, dask_cluster: Any, tmp_path: Path
) -> None:
    source, target = tmp_path / "in.csv", tmp_path / "scores.csv"
    frame = demo_frame(3000, seed=5)
    frame.to_csv(source, index=False)
    result = batch_predict(
        model="fraud", input=str(source), output=str(target), chunk_rows=500,
        dask_address=dask_cluster.scheduler_address,
    )  # fmt: skip
    assert result["chunks"] % 2 == 0  # balanced over the cluster's two threads
    chunk_runs = _completed_chunk_runs(result["flow_run_id"], result["chunks"])
    assert len(chunk_runs) == result["chunks"], [(t.name, t.state) for t in chunk_runs]
    with get_client(sync_client=True) as client:
        children = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[result["flow_run_id"]])
            )
        )
    assert children == []  # no nested flow run
    scored = pd.read_csv(target)
    np.testing.assert_allclose(
        scored[["probability_0", "probability_1"]], expected(registry, "1", frame), atol=1e-9
    )


def test_a_failed_chunk_leaves_the_previous_output_and_no_parts(
    registry: Registry, dask_cluster: Any, tmp_path: Path
) -> None:
    source, target = tmp_path / "in.csv", tmp_path / "scores.csv"
    target.write_text("previous output\n")
    frame = demo_frame(2000, seed=6).astype({"amount": object})
    frame.loc[1700, "amount"] = "n/a"  # in a later chunk only
    frame.to_csv(source, index=False)
    with pytest.raises(ValidationError, match=r"chunk [1-9]\): column 'amount'"):
        batch_predict(
            model="fraud", input=str(source), output=str(target), chunk_rows=400,
            dask_address=dask_cluster.scheduler_address,
        )  # fmt: skip
    assert target.read_text() == "previous output\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no parts, no temp file
