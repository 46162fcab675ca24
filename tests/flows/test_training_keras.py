"""``model_type: keras`` end to end: tuned by Optuna, cross-validated, exported with parity, served."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from flows.training import train_model
from serving.app import create_app
from serving.config import ServeSettings
from serving.protocol import Batch
from serving.runtimes import load_runtime
from serving.server import running_server
from storage.registry.model_format import KERAS_FILE, ONNX_FILE, PREPROCESS_FILE
from tasks.governance.risk import model_risk
from tasks.registry.steps import open_registry
from tasks.training.export import onnx_predictions
from tests.flows.test_training import make_frame


@pytest.mark.slow
def test_keras_network_is_tuned_exported_registered_and_served(
    prefect_harness: None, dask_cluster: Any, tmp_path: Path
) -> None:
    path = tmp_path / "customers.csv"
    frame = make_frame(seed=4)
    frame.to_csv(path, index=False)
    config = {
        "name": "churn-keras",
        "data_source": str(path),
        "target_column": "label",
        "model_type": "keras",  # model_class defaults to KerasMLP
        "model_params": {"hidden_dims": [16], "batch_size": 32},
        "enable_tuning": True,
        "tuning_trials": 2,
        "param_space": {"epochs": {"type": "int", "low": 5, "high": 10}},
        "tuning_metric": "roc_auc",  # the seed's spelling of auc_roc
        "metrics": ["accuracy_score", "f1_score", "auc"],
        "cross_validation_folds": 2,
        "dask_address": dask_cluster.scheduler_address,
        "model_tags": {"domain": "telecom", "use_case": "churn prediction"},
        "tags": {"team": "growth"},
    }
    result = train_model(config=config)
    assert result["framework"] == "keras" and result["task"] == "classification"
    assert set(result["metrics"]) >= {"accuracy", "f1", "auc_roc", "cv_auc_roc_mean"}
    assert result["metrics"]["auc_roc"] > 0.7
    assert result["onnx"], result["export"]
    assert result["export"]["onnx"]["max_abs_diff"] < 1e-4

    registry = open_registry()
    version = registry.get_version("churn-keras", result["version"])
    assert {ONNX_FILE, PREPROCESS_FILE, KERAS_FILE} <= {a.name for a in version.artifacts}
    assert version.tags["team"] == "growth" and version.tags["model_class"] == "KerasMLP"
    assert registry.get_model("churn-keras").tags["use_case"] == "churn prediction"
    risk = model_risk(registry, "churn-keras", version.number)
    assert risk is not None and risk.level == "minimal"

    rows = frame.dropna().drop(columns="label").iloc[:20]
    onnx = onnx_predictions(
        registry.load_artifact("churn-keras", version.number, ONNX_FILE), rows, "classification"
    )
    names = {a.name for a in version.artifacts}

    def read(name: str) -> bytes:
        return registry.load_artifact("churn-keras", version.number, name)

    native = load_runtime(version.signature, read, names, order=("keras",))
    batch = Batch({c: rows[c].to_numpy() for c in rows.columns}, len(rows))
    np.testing.assert_allclose(native.predict(batch).probabilities, onnx, atol=1e-4)

    app = create_app(ServeSettings(), registry=registry)
    with running_server(app) as url:
        body = {"instances": rows.to_dict("records")}
        response = httpx.post(f"{url}/v1/models/churn-keras/predict", json=body, timeout=60)
    assert response.status_code == 200, response.text
    served = response.json()
    np.testing.assert_allclose(served["probabilities"], onnx, atol=1e-5)
    assert served["predictions"] == np.asarray(served["classes"])[onnx.argmax(axis=1)].tolist()
