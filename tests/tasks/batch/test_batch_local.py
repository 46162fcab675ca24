"""Batch scoring without a flow run, and chunks planned evenly over the scoring threads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from serving.models import ModelCache
from serving.protocol import Batch
from serving.testing import demo_frame, register_demo
from storage.errors import ValidationError
from storage.governance.lineage import LineageStore
from storage.registry.core import Registry
from tasks.batch.files import plan_chunks
from tasks.batch.local import score_file


@pytest.mark.parametrize("parallel", [1, 2, 3])
def test_csv_chunks_are_even_and_a_multiple_of_the_threads(tmp_path: Path, parallel: int) -> None:
    path = tmp_path / "in.csv"
    demo_frame(20_000, seed=1).to_csv(path, index=False)
    chunks = plan_chunks(str(path), chunk_rows=4_500, parallel=parallel)
    assert len(chunks) % parallel == 0 and len(chunks) >= 4
    sizes = [c.end - c.start for c in chunks]
    assert max(sizes) - min(sizes) <= len(chunks)  # cut evenly (the last one takes the rest)


def test_parquet_chunks_are_a_multiple_of_the_threads(tmp_path: Path) -> None:
    path = tmp_path / "in.parquet"
    demo_frame(1000, seed=4).to_parquet(path, row_group_size=50)
    chunks = plan_chunks(str(path), chunk_rows=300, parallel=2)
    assert len(chunks) == 4 and [c.first_row for c in chunks] == [0, 250, 500, 750]


@pytest.fixture
def models() -> Registry:
    reg = Registry.from_settings()
    register_demo(reg, "fraud", "onnx")
    reg.set_alias("fraud", "champion", 1)
    return reg


@pytest.mark.parametrize("out_suffix", [".csv", ".parquet"])
def test_score_file_equals_in_process_predictions_in_order(
    models: Registry, tmp_path: Path, out_suffix: str
) -> None:
    frame = demo_frame(6000, seed=12).assign(row_id=np.arange(6000)[::-1])
    source, target = tmp_path / "in.csv", tmp_path / "out" / f"scores{out_suffix}"
    frame.to_csv(source, index=False)
    result = score_file("fraud", str(source), str(target), chunk_rows=900, workers=3)
    assert result["rows"] == 6000 and result["version"] == 1 and result["chunks"] % 3 == 0
    scored = pd.read_parquet(target) if out_suffix == ".parquet" else pd.read_csv(target)
    assert scored["row_id"].tolist() == frame["row_id"].tolist()
    loaded = ModelCache(models).get("fraud", "1")
    columns = {n: frame[n].to_numpy() for n in loaded.spec.names}
    columns["country"] = columns["country"].astype(object)
    want = loaded.runtime.predict(Batch(columns, len(frame)))
    np.testing.assert_array_equal(scored["prediction"], want.labels)
    assert want.probabilities is not None
    np.testing.assert_allclose(scored[["probability_0", "probability_1"]], want.probabilities, atol=1e-9)
    assert sorted(p.name for p in target.parent.iterdir()) == [target.name]
    lineage = LineageStore(models).dataset_lineage(result["lineage"]["input"])
    assert {"name": "fraud/1", "relation": "batch_scored"} in lineage["model_versions"]


def test_score_file_failure_keeps_the_previous_output(models: Registry, tmp_path: Path) -> None:
    source, target = tmp_path / "in.csv", tmp_path / "scores.csv"
    target.write_text("previous\n")
    frame = demo_frame(3000, seed=2).astype({"age": object})
    frame.loc[2500, "age"] = "old"
    frame.to_csv(source, index=False)
    with pytest.raises(ValidationError, match="invalid value 'old'"):
        score_file("fraud", str(source), str(target), chunk_rows=500, workers=2)
    assert target.read_text() == "previous\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no parts, no temp file
