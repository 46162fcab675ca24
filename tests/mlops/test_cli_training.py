"""``mlops train CONFIG.yaml``: the flow from a shell, JSON on stdout, the trial progress bar."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.flows.test_training import make_frame
from tests.mlops.test_cli import failed, run


def write_config(tmp_path: Path, **extra: Any) -> Path:
    data = tmp_path / "customers.csv"
    make_frame(n=160).to_csv(data, index=False)
    lines = [
        "name: cli-model",
        f"data_source: {data}",
        "target_column: label",
        "model_class: LogisticRegression",
        "cross_validation_folds: 0",
        *(f"{k}: {json.dumps(v)}" for k, v in extra.items()),
    ]
    path = tmp_path / "train.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.slow
def test_train_prints_json_and_shows_trial_progress(
    prefect_harness: None, dask_cluster: Any, tmp_path: Path
) -> None:
    config = write_config(
        tmp_path,
        enable_tuning=True,
        tuning_trials=4,
        param_space={"C": {"type": "float", "low": 0.01, "high": 10, "log": True}},
    )
    result = run("train", str(config), "--dask-address", dask_cluster.scheduler_address, "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["model"] == "cli-model" and out["version"] == 1 and out["onnx"] is True
    assert out["tuning"]["trials"] == 4 and "accuracy" in out["metrics"]
    assert "4/4" in result.stderr  # the progress bar reached the requested trial count


def test_human_output(prefect_harness: None, dask_cluster: Any, tmp_path: Path) -> None:
    result = run("train", str(write_config(tmp_path)), "--dask-address", dask_cluster.scheduler_address)
    assert result.exit_code == 0, result.output
    assert "cli-model v1 registered (sklearn, classification, with ONNX)" in result.stdout
    assert "accuracy" in result.stdout


@pytest.mark.parametrize(
    ("extra", "message"),
    [({"tunning": True}, "tunning: unknown key"), ({"test_size": 2}, "test_size")],
)
def test_bad_config_is_one_error_line(tmp_path: Path, extra: dict[str, Any], message: str) -> None:
    result = failed("train", str(write_config(tmp_path, **extra)))
    assert message in result.stderr and "train.yaml" in result.stderr


def test_missing_config_file(tmp_path: Path) -> None:
    result = failed("train", str(tmp_path / "none.yaml"))
    assert "none.yaml does not exist" in result.stderr
