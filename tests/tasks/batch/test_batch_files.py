"""Batch scoring files and chunks: CSV byte ranges own whole lines, Parquet row groups, ordered merges."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from serving.models import ModelCache
from serving.protocol import Batch
from serving.testing import demo_frame, register_demo
from storage.errors import ValidationError
from storage.registry.core import Registry
from tasks.batch.files import merge_parts, parts_folder, plan_chunks, read_chunk, write_part
from tasks.batch.scoring import score_table

TYPES = {"amount": "float", "age": "int", "country": "string"}


@pytest.mark.parametrize("chunk_bytes", [1, 7, 64, 1000, 10**6])
def test_csv_chunks_cover_every_line_once(tmp_path: Path, chunk_bytes: int) -> None:
    frame = demo_frame(300, seed=3)
    frame.loc[5, "country"] = 'Côte d\'Ivoire, "quoted"'  # a quoted comma, multibyte text
    path = tmp_path / "in.csv"
    frame.to_csv(path, index=False)
    chunks = plan_chunks(str(path), chunk_bytes=chunk_bytes)
    tables = [read_chunk(c, TYPES) for c in chunks]
    got = pa.concat_tables(tables).to_pandas()
    pd.testing.assert_frame_equal(got, frame.astype({"country": object}), check_dtype=False)
    assert [c.index for c in chunks] == list(range(len(chunks)))


def test_parquet_chunks_follow_row_groups(tmp_path: Path) -> None:
    frame = demo_frame(1000, seed=4)
    path = tmp_path / "in.parquet"
    frame.to_parquet(path, row_group_size=100)
    chunks = plan_chunks(str(path), chunk_rows=250)
    assert [c.row_groups for c in chunks] == [(0, 1, 2), (3, 4, 5), (6, 7, 8), (9,)]
    assert [c.first_row for c in chunks] == [0, 300, 600, 900]
    got = pa.concat_tables([read_chunk(c, TYPES) for c in chunks]).to_pandas()
    pd.testing.assert_frame_equal(got, frame)


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_parts_merge_in_order_and_leave_nothing_behind(tmp_path: Path, fmt: str) -> None:
    output = str(tmp_path / f"out.{fmt}")
    parts = [pa.table({"i": np.arange(k * 10, k * 10 + 10)}) for k in range(3)]
    for k in (2, 0, 1):  # chunks finish in any order
        write_part(parts[k], output, "job1", k)
    merge_parts(output, "job1", 3)
    got = pd.read_csv(output) if fmt == "csv" else pd.read_parquet(output)
    assert got["i"].tolist() == list(range(30))
    assert not Path(parts_folder(output, "job1")).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"out.{fmt}"]


def test_bad_inputs_are_named(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match=r"\.csv or \.parquet"):
        plan_chunks(str(tmp_path / "in.json"))
    with pytest.raises(ValidationError, match="does not exist"):
        plan_chunks(str(tmp_path / "nope.csv"))


def test_score_table_matches_the_server_runtime_and_names_bad_rows(registry: Registry) -> None:
    register_demo(registry, "fraud", "onnx")
    loaded = ModelCache(registry).get("fraud")
    frame = demo_frame(50, seed=8)
    scored = score_table(loaded.runtime, pa.Table.from_pandas(frame), "fraud", 1).to_pandas()
    columns = {n: frame[n].to_numpy() for n in loaded.spec.names}
    columns["country"] = columns["country"].astype(object)
    want = loaded.runtime.predict(Batch(columns, 50))
    np.testing.assert_array_equal(scored["prediction"], want.labels)
    assert want.probabilities is not None
    np.testing.assert_allclose(scored[["probability_0", "probability_1"]], want.probabilities, atol=1e-12)
    assert set(scored["model_version"]) == {1} and set(scored["model"]) == {"fraud"}
    bad = frame.astype({"age": float})
    bad.loc[7, "age"] = 30.5
    with pytest.raises(ValidationError, match=r"column 'age': row 107 of the file holds 30.5"):
        score_table(loaded.runtime, pa.Table.from_pandas(bad), "fraud", 1, offset=100)
    with pytest.raises(ValidationError, match="lacks column"):
        score_table(loaded.runtime, pa.Table.from_pandas(frame.drop(columns=["age"])), "fraud", 1)
