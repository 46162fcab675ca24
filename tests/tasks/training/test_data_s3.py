"""Training data read from an object store (a real S3 API): the same frame and hash as from a file."""

from __future__ import annotations

from pathlib import Path

import fsspec
import pandas as pd
import pytest

from blocks.pipeline import PipelineConfig
from storage.errors import ValidationError
from tasks.training.data import file_hash, read_dataset, source_fingerprint


def test_a_csv_in_s3_reads_as_the_same_frame_and_hash_as_the_local_file(s3_url: str, tmp_path: Path) -> None:
    frame = pd.DataFrame({"amount": [1.5, 2.5, 3.0], "label": [0, 1, 0]})
    local = tmp_path / "train.csv"
    frame.to_csv(local, index=False)
    remote = f"{s3_url}/data/train.csv"
    with fsspec.open(remote, "wb") as handle:
        handle.write(local.read_bytes())
    loaded = read_dataset(remote)
    pd.testing.assert_frame_equal(loaded.frame, read_dataset(local).frame)
    assert loaded.dataset_uri == remote and loaded.dataset_hash == file_hash(local)
    config = PipelineConfig(name="m", data_source=remote, target_column="label")
    assert source_fingerprint(config) == file_hash(local)


def test_a_missing_object_is_named(s3_url: str) -> None:
    missing = f"{s3_url}/data/none.csv"
    with pytest.raises(ValidationError, match="none.csv' does not exist"):
        read_dataset(missing)
    config = PipelineConfig(name="m", data_source=missing, target_column="label")
    assert source_fingerprint(config) == f"missing:{missing}"
