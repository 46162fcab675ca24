"""The train-model flow, run for real: Prefect harness, the shared Dask cluster, SQLite files."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
import pytest

from blocks.pipeline import ConfigError
from flows.training import train_model
from storage.errors import ValidationError
from storage.registry.model_format import (
    ONNX_FILE,
    PREPROCESS_FILE,
    SKOPS_FILE,
    TORCH_CONFIG_FILE,
    XGBOOST_FILE,
)
from tasks.registry.steps import open_registry
from tasks.scoring import load_sklearn_model
from tasks.training.export import onnx_predictions
from tasks.training.tuning import WORKER_ATTR, open_storage


def make_frame(n: int = 240, seed: int = 0, regression: bool = False) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "amount": rng.normal(50, 10, n).round(2),
            "visits": rng.integers(0, 20, n),
            "country": rng.choice(["NL", "DE", "FR"], n),
        }
    )
    frame.loc[::23, "amount"] = np.nan
    signal = (frame["amount"].fillna(50) - 50) / 10 + frame["visits"] / 10 + (frame["country"] == "NL")
    frame["label"] = signal + rng.normal(0, 0.3, n) if regression else (signal > 1).astype(int)
    return frame


@pytest.fixture
def data_file(tmp_path: Path) -> Path:
    path = tmp_path / "customers.csv"
    make_frame().to_csv(path, index=False)
    return path


@pytest.fixture
def base(prefect_harness: None, dask_cluster: Any, data_file: Path) -> dict[str, Any]:
    return {
        "name": "churn",
        "data_source": str(data_file),
        "target_column": "label",
        "dask_address": dask_cluster.scheduler_address,
        "cross_validation_folds": 3,
    }


@pytest.mark.slow
def test_sklearn_end_to_end_trials_on_both_dask_workers(base: dict[str, Any], dask_cluster: Any) -> None:
    config = {
        **base,
        "model_class": "GradientBoosting",
        "model_params": {"n_estimators": 15},
        "enable_tuning": True,
        "tuning_trials": 8,
        "trials_per_task": 2,
        "tuner": "tpe",
        "param_space": {
            "max_depth": {"type": "int", "low": 2, "high": 4},
            "learning_rate": {"type": "float", "low": 0.05, "high": 0.3, "log": True},
        },
    }
    result = train_model(config=config)
    assert result["model"] == "churn" and result["version"] == 1 and result["onnx"] is True
    assert result["tuning"]["trials"] == 8 and result["tuning"]["completed"] + result["tuning"]["pruned"] == 8

    # every trial ran on a worker of the shared cluster, and both workers took part
    study = optuna.load_study(study_name=result["tuning"]["study"], storage=open_storage())
    workers = {t.user_attrs[WORKER_ATTR] for t in study.trials}
    assert workers == {w.worker_address for w in dask_cluster.workers.values()}
    assert len(study.trials) == 8

    registry = open_registry()
    version = registry.get_version("churn", 1)
    assert version.framework == "sklearn"
    assert {a.name for a in version.artifacts} == {SKOPS_FILE, ONNX_FILE}
    assert version.signature["inputs"] == [
        {"name": "amount", "type": "float"},
        {"name": "visits", "type": "int"},
        {"name": "country", "type": "string"},
    ]
    assert version.signature["classes"] == [0, 1]
    assert set(result["metrics"]) >= {"accuracy", "precision", "recall", "f1", "auc_roc", "cv_accuracy_mean"}
    assert version.hyperparameters["n_estimators"] == 15 and "max_depth" in version.hyperparameters
    assert version.extra["export"]["onnx"]["kept"] is True
    assert version.extra["export"]["onnx"]["max_abs_diff"] < 1e-4
    assert version.extra["explainer"]["kind"] == "shap.TreeExplainer"
    assert set(version.extra["global_importance"]) >= {"amount", "visits"}

    # the stored model loads through the scoring task's trusted types and predicts like the metrics say
    frame = make_frame()
    pipeline = load_sklearn_model(registry, "churn", 1)
    assert pipeline.predict(frame[["amount", "visits", "country"]]).shape == (len(frame),)

    from prefect.artifacts import Artifact

    for key in ("validation-churn", "trials-churn", "metrics-churn"):
        assert Artifact.get(key) is not None, key
    from storage.governance.reports import ReportStore

    assert ReportStore(registry).latest("reference_profile", "churn", 1) is not None


def test_xgboost_onnx_matches_native_on_holdout(base: dict[str, Any], tmp_path: Path) -> None:
    config = {
        **base,
        "name": "churn-xgb",
        "model_type": "xgboost",
        "model_class": "XGBClassifier",
        "model_params": {"n_estimators": 20, "max_depth": 3},
        "cross_validation_folds": 0,
    }
    config["output_dir"] = str(tmp_path / "out")
    result = train_model(config=config)
    registry = open_registry()
    version = registry.get_version("churn-xgb", result["version"])
    out = tmp_path / "out" / "churn-xgb" / f"v{result['version']}"
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [PREPROCESS_FILE, XGBOOST_FILE, ONNX_FILE, "version.json"]
    )
    assert json.loads((out / "version.json").read_text())["dataset_hash"] == version.dataset_hash
    assert version.framework == "xgboost"
    assert {a.name for a in version.artifacts} == {PREPROCESS_FILE, XGBOOST_FILE, ONNX_FILE}
    onnx = version.extra["export"]["onnx"]
    assert onnx["kept"] is True and onnx["max_abs_diff"] < 1e-4

    # independent check: the stored ONNX and the stored UBJ booster agree on fresh rows
    import skops.io as sio
    import xgboost as xgb

    frame = make_frame(seed=5)[["amount", "visits", "country"]]
    pre_bytes = registry.load_artifact("churn-xgb", result["version"], PREPROCESS_FILE)
    pre = sio.loads(pre_bytes, trusted=sio.get_untrusted_types(data=pre_bytes))
    booster = xgb.XGBClassifier()
    booster.load_model(bytearray(registry.load_artifact("churn-xgb", result["version"], XGBOOST_FILE)))
    native = booster.predict_proba(np.asarray(pre.transform(frame), dtype=np.float32))
    via_onnx = onnx_predictions(
        registry.load_artifact("churn-xgb", result["version"], ONNX_FILE), frame, "classification"
    )
    assert np.abs(native - via_onnx).max() < 1e-4


def test_pytorch_mlp_trains_and_registers(base: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "prices.parquet"
    make_frame(regression=True).to_parquet(path)
    config = {
        **base,
        "name": "price-mlp",
        "data_source": str(path),
        "model_type": "pytorch",
        "model_class": "TabularMLP",
        "task": "regression",
        "device": "cpu",
        "model_params": {"hidden_dims": [16], "epochs": 15},
        "cross_validation_folds": 0,
    }
    result = train_model(config=config)
    assert result["framework"] == "pytorch" and result["task"] == "regression"
    assert result["metrics"]["r2"] > 0.3
    registry = open_registry()
    version = registry.get_version("price-mlp", result["version"])
    names = {a.name for a in version.artifacts}
    assert {PREPROCESS_FILE, "model.pt", TORCH_CONFIG_FILE} <= names
    arch = json.loads(registry.load_artifact("price-mlp", result["version"], TORCH_CONFIG_FILE))
    assert arch["hidden_dims"] == [16] and arch["task"] == "regression"
    assert version.extra["export"]["onnx"]["kept"] == (ONNX_FILE in names)


def test_transient_failure_is_retried(
    base: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "failed-once"
    monkeypatch.setenv("MLOPS_TRAINING_FAIL_STAGE", "train")
    monkeypatch.setenv("MLOPS_TRAINING_FAIL_ONCE", str(marker))
    result = train_model(
        config={**base, "name": "retry", "model_class": "LogisticRegression", "cross_validation_folds": 0}
    )
    assert marker.exists()  # the first try failed ...
    assert result["version"] == 1  # ... and the retry trained and registered


def _task_states(flow_run_id: Any) -> dict[str, str]:
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId

    async def read() -> dict[str, str]:
        async with get_client() as client:
            children = await client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[flow_run_id])
                )
            )
            runs = await client.read_task_runs(
                flow_run_filter=FlowRunFilter(id={"any_": [c.id for c in children]})
            )
            return {r.name.rsplit("-", 1)[0] + f"#{i}": r.state.name for i, r in enumerate(runs) if r.state}

    import asyncio

    return asyncio.run(read())


@pytest.mark.slow
def test_resume_after_a_failure_in_training_reuses_stages_1_to_5(
    base: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = {
        **base,
        "name": "resume",
        "model_class": "RandomForest",
        "model_params": {"n_estimators": 10},
        "enable_tuning": True,
        "tuning_trials": 4,
        "tuner": "random",
        "param_space": {"max_depth": {"type": "int", "low": 2, "high": 5}},
    }
    monkeypatch.setenv("MLOPS_TRAINING_FAIL_STAGE", "train")
    failed = train_model(config=config, return_state=True)
    assert failed.is_failed()
    assert not _has_model("resume")  # nothing half-registered

    monkeypatch.delenv("MLOPS_TRAINING_FAIL_STAGE")
    state = train_model(config=config, return_state=True)
    assert state.is_completed()
    states = _task_states(state.state_details.flow_run_id)
    stages = ("load-data", "validate-data", "engineer-features", "split-data", "run-trial-chunk")
    for stage in stages:
        found = [s for k, s in states.items() if k.startswith(stage)]
        assert found and all(s == "Cached" for s in found), (stage, found)
    assert [s for k, s in states.items() if k.startswith("train-best-model")] == ["Completed"]
    result = state.result()
    assert result["version"] == 1 and result["tuning"]["trials"] == 4


def _has_model(name: str) -> bool:
    try:
        open_registry().get_model(name)
    except Exception:
        return False
    return True


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"data_source": "nowhere.csv"}, "nowhere.csv does not exist"),
        ({"target_column": "churned"}, "target column 'churned' is not in"),
        ({"model_class": "RandomForrest"}, "unknown model_class 'RandomForrest'"),
        (
            {"enable_tuning": True, "param_space": {"depth": {"type": "int", "low": 9, "high": 2}}},
            "param_space.depth",
        ),
        ({"model_class": "sklearn.ensemble:NoSuchForest"}, "has no class 'NoSuchForest'"),
        (
            {
                "enable_tuning": True,
                "tuning_metric": "rmse",
                "param_space": {"C": {"type": "float", "low": 1, "high": 2}},
            },
            "tuning_metric 'rmse' does not apply to classification",
        ),
    ],
)
def test_bad_input_stops_before_training(base: dict[str, Any], change: dict[str, Any], message: str) -> None:
    with pytest.raises((ValidationError, ConfigError)) as err:
        train_model(config={**base, "name": "bad", **change})
    assert message in str(err.value)
    assert not _has_model("bad")


def test_empty_file_and_single_class_target_stop_the_flow(base: dict[str, Any], tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(ValidationError, match="empty"):
        train_model(config={**base, "name": "bad", "data_source": str(empty)})
    one = tmp_path / "one.csv"
    make_frame().assign(label=1).to_csv(one, index=False)
    with pytest.raises(ValidationError, match="has one class"):
        train_model(config={**base, "name": "bad", "data_source": str(one)})
    assert not _has_model("bad")


def test_feature_store_training_set_records_feature_usage(base: dict[str, Any], tmp_path: Path) -> None:
    from storage.features.store import FeatureStore

    t0 = datetime(2026, 9, 1, tzinfo=UTC)
    frame = make_frame(n=120)
    store = FeatureStore.from_settings()
    d = store.definitions
    d.create_entity("customer", join_keys=["customer_id"])
    d.create_group("activity", entity="customer", event_time_column="ts", ttl_seconds=30 * 86400)
    d.register_feature("activity", "amount", "float")
    d.register_feature("activity", "visits", "int")
    values = frame[["amount", "visits"]].assign(customer_id=range(len(frame)), ts=t0)
    store.ingest("activity", values)
    labels = tmp_path / "labels.parquet"
    pd.DataFrame(
        {"customer_id": range(len(frame)), "event_timestamp": t0 + timedelta(days=1), "label": frame["label"]}
    ).to_parquet(labels)
    config = {
        **base,
        "name": "fs-model",
        "data_source": None,
        "model_class": "LogisticRegression",
        "cross_validation_folds": 0,
        "feature_store": {"entity_source": str(labels), "features": ["activity:amount", "activity:visits"]},
        "feature_engineering": {"drop_columns": ["customer_id"]},
    }
    result = train_model(config=config)
    assert sorted(result["features"]) == ["activity:amount@1", "activity:visits@1"]
    lineage = store.definitions.lineage("activity")
    assert lineage["features"]["activity:amount@1"] == [f"fs-model/{result['version']}"]
    version = open_registry().get_version("fs-model", result["version"])
    assert [f["name"] for f in version.signature["inputs"]] == ["amount", "visits"]
    store.close()


@pytest.mark.slow
def test_training_walkthrough_example(prefect_harness: None, capsys: pytest.CaptureFixture[str]) -> None:
    from examples import training_walkthrough

    result = training_walkthrough.main()
    out = capsys.readouterr().out
    assert "churn v1 registered (sklearn)" in out and "ONNX kept: True" in out
    assert result["tuning"]["trials"] == 8 and result["metrics"]["auc_roc"] > 0.8


def test_xgboost_dask_training_on_the_cluster(base: dict[str, Any], caplog: pytest.LogCaptureFixture) -> None:
    import logging

    config = {
        **base,
        "name": "churn-xgb-dask",
        "model_type": "xgboost",
        "model_class": "XGBClassifier",
        "distributed": True,
        "model_params": {"n_estimators": 20, "max_depth": 3},
        "cross_validation_folds": 0,
    }
    with caplog.at_level(logging.INFO, logger="distributed.worker"):
        result = train_model(config=config)
    assert result["framework"] == "xgboost" and result["metrics"]["accuracy"] > 0.8
    assert result["onnx"] is True and result["export"]["onnx"]["max_abs_diff"] < 1e-4
    # xgboost.dask started its collective tracker on the cluster: trained there, not on one worker
    assert any("_start_tracker" in r.getMessage() for r in caplog.records)
