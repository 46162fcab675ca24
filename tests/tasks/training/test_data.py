"""Stage 1: reading CSV/Parquet/JSON files and the feature store, and fingerprints."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from blocks.pipeline import PipelineConfig
from storage.errors import ValidationError
from tasks.training.data import (
    config_token,
    file_hash,
    frame_hash,
    load_dataset,
    read_dataset,
    source_fingerprint,
)

FRAME = pd.DataFrame({"x": [1.5, 2.5, None], "c": ["a", "b", "a"], "y": [0, 1, 0]})


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".json", ".jsonl"])
def test_every_format_reads_the_same_frame(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"d{suffix}"
    if suffix == ".csv":
        FRAME.to_csv(path, index=False)
    elif suffix == ".parquet":
        FRAME.to_parquet(path)
    else:
        FRAME.to_json(path, orient="records", lines=suffix == ".jsonl")
    loaded = read_dataset(path)
    pd.testing.assert_frame_equal(loaded.frame, FRAME, check_dtype=False)
    assert loaded.dataset_uri == str(path) and loaded.dataset_hash == file_hash(path)


def test_hash_follows_the_content(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    FRAME.to_csv(path, index=False)
    first = read_dataset(path).dataset_hash
    FRAME.assign(y=[1, 1, 0]).to_csv(path, index=False)
    assert read_dataset(path).dataset_hash != first
    import hashlib

    assert read_dataset(path).dataset_hash == hashlib.sha256(path.read_bytes()).hexdigest()
    assert frame_hash(FRAME) != frame_hash(FRAME.assign(y=[1, 1, 0]))


def test_bad_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match=r"nowhere\.csv does not exist"):
        read_dataset(tmp_path / "nowhere.csv")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(ValidationError, match=r"empty\.csv is empty"):
        read_dataset(empty)
    header = tmp_path / "header.csv"
    header.write_text("x,y\n")
    with pytest.raises(ValidationError, match="has no rows"):
        read_dataset(header)
    with pytest.raises(ValidationError, match="unsupported file type '.xlsx'"):
        read_dataset(tmp_path / "d.xlsx")
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"not parquet")
    with pytest.raises(ValidationError, match=r"broken\.parquet cannot be read as parquet"):
        read_dataset(broken)


def test_config_token_ignores_runtime_fields_but_not_data(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    FRAME.to_csv(path, index=False)
    cfg = PipelineConfig(name="m", data_source=str(path), target_column="y")
    token = config_token(cfg, source_fingerprint(cfg))
    assert token == config_token(
        cfg.model_copy(update={"dask_address": "tcp://x:1"}), source_fingerprint(cfg)
    )
    assert token != config_token(cfg.model_copy(update={"seed": 1}), source_fingerprint(cfg))
    FRAME.assign(y=[1, 1, 0]).to_csv(path, index=False)
    assert token != config_token(cfg, source_fingerprint(cfg))


def test_feature_store_source_is_point_in_time(tmp_path: Path) -> None:
    from storage.features.store import FeatureStore

    store = FeatureStore.from_settings()
    d = store.definitions
    d.create_entity("customer", join_keys=["customer_id"])
    d.create_group("spend", entity="customer", event_time_column="ts", ttl_seconds=10 * 86400)
    d.register_feature("spend", "total", "float")
    store.ingest(
        "spend",
        pd.DataFrame(
            {
                "customer_id": [1, 1],
                "total": [10.0, 99.0],
                "ts": [datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 5, tzinfo=UTC)],
            }
        ),
    )
    store.close()
    labels = tmp_path / "labels.parquet"
    pd.DataFrame(
        {"customer_id": [1], "event_timestamp": [datetime(2026, 1, 3, tzinfo=UTC)], "y": [1]}
    ).to_parquet(labels)
    cfg = PipelineConfig(
        name="m", target_column="y", feature_store={"entity_source": str(labels), "features": ["spend:total"]}
    )
    loaded = load_dataset(cfg)
    assert loaded.frame["total"].tolist() == [10.0]  # the value known on Jan 3, not the later one
    assert "event_timestamp" not in loaded.frame.columns
    assert loaded.feature_refs == ["spend:total@1"] and loaded.dataset_uri.startswith(
        "feature-store:spend:total@"
    )
    assert loaded.dataset_hash == frame_hash(loaded.frame)
