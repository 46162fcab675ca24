"""The batch-predict flow and ``mlops predict``: chunks on Dask, order kept, version recorded, lineage."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from flows.batch import batch_predict
from mlops.cli import app
from serving.models import ModelCache
from serving.protocol import Batch
from serving.testing import demo_frame, register_demo
from storage.errors import NotFoundError
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
