"""The training stage cache on the object store: a stage computed by one process is reused by another."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from prefect import flow
from prefect.states import State

from blocks.pipeline import PipelineConfig
from storage.objectstore import Place
from tasks.training.data import (
    cache_location,
    config_token,
    load_data,
    source_fingerprint,
    stage_cache_options,
)

pytestmark = pytest.mark.usefixtures("prefect_harness")


@flow(name="stage-cache-probe")
def load_once(config: dict[str, Any]) -> State:
    cfg = PipelineConfig.parse(config)
    cached = stage_cache_options(cfg.cache)
    return load_data.with_options(**cached)(
        cfg, cache_token=config_token(cfg, source_fingerprint(cfg)), return_state=True
    )


def config(tmp_path: Path, cache: bool = True) -> dict[str, Any]:
    data = tmp_path / "data.csv"
    pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "y": [0, 1, 0, 1]}).to_csv(data, index=False)
    return {"name": "cached", "data_source": str(data), "target_column": "y", "cache": cache}


def fresh_s3_clients() -> None:
    """Forget this process's s3fs clients, as a process on another machine would have none."""
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()


def test_a_stage_cached_on_the_object_store_is_reused_by_another_home(
    s3_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLOPS_STORAGE_URL", s3_url)
    monkeypatch.setenv("MLOPS_HOME", str(tmp_path / "worker-a"))
    cfg = config(tmp_path)
    assert cache_location() == f"{s3_url}/cache"

    first = load_once(cfg)
    assert first.is_completed() and first.name == "Completed"
    stored = Place(cache_location()).names()
    assert len(stored) == 1 and stored[0].startswith("load-data-")

    monkeypatch.setenv("MLOPS_HOME", str(tmp_path / "worker-b"))
    fresh_s3_clients()
    second = load_once(cfg)
    assert second.name == "Cached"
    assert second.result().dataset_hash == first.result().dataset_hash
    assert not (tmp_path / "worker-a" / "cache").exists() and not (tmp_path / "worker-b" / "cache").exists()


def test_without_an_object_store_the_cache_stays_in_mlops_home(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    assert load_once(cfg).name == "Completed"
    assert load_once(cfg).name == "Cached"
    assert [p.name.startswith("load-data-") for p in (tmp_path / "mlops-home" / "cache").iterdir()] == [True]


def test_a_store_this_process_cannot_open_turns_the_cache_off_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("MLOPS_STORAGE_URL", "abfs://container/mlops")
    with caplog.at_level(logging.WARNING, logger="tasks.training.data"):
        options = stage_cache_options(True)
    assert options["persist_result"] is False and "result_storage" not in options
    assert "stage cache off" in caplog.text and "abfs://container/mlops/cache" in caplog.text
    assert "MLOPS_STORAGE_URL" in caplog.text
