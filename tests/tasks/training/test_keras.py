"""The Keras network: the scikit-learn contract, ONNX export with parity, no TensorFlow on torch."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.pipeline import Pipeline

from tasks.training.engineering import FeatureEngineering, build_preprocessor, feature_spec
from tasks.training.estimators import build_estimator, framework_of
from tasks.training.export import export_model
from tasks.training.keras_mlp import KerasMLPClassifier, KerasMLPRegressor

RNG = np.random.default_rng(0)
FRAME = pd.DataFrame(
    {"a": RNG.normal(size=160), "n": RNG.integers(0, 5, 160), "c": RNG.choice(["x", "y"], 160)}
)


def test_estimator_contract_and_framework() -> None:
    est = build_estimator("KerasMLP", "classification", {"epochs": 3}, seed=5)
    assert isinstance(est, KerasMLPClassifier) and est.random_state == 5
    assert clone(est).set_params(lr=0.1).get_params()["lr"] == 0.1
    assert isinstance(build_estimator("KerasMLP", "regression"), KerasMLPRegressor)
    assert framework_of("KerasMLP", "sklearn") == framework_of("anything", "keras") == "keras"


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_pipeline_exports_to_onnx_with_parity(task: str) -> None:
    target = (FRAME["a"] > 0).astype(int) if task == "classification" else FRAME["a"] * 3 + FRAME["n"]
    model = build_estimator("KerasMLP", task, {"epochs": 20, "hidden_dims": [16], "batch_size": 16}, seed=0)
    pre = build_preprocessor(feature_spec(FRAME), FeatureEngineering(), scale_default=True)
    pipe = Pipeline([("pre", pre), ("model", model)]).fit(FRAME, target)
    out = export_model(pipe, "keras", FRAME, task)
    assert sorted(out.files) == ["model.keras", "model.onnx", "preprocess.skops"]
    assert out.onnx["kept"] and out.onnx["max_abs_diff"] < 1e-4
    if task == "regression":  # the target's scale is folded into the network
        assert abs(float(np.mean(pipe.predict(FRAME))) - float(target.mean())) < 1.0
    else:
        assert (pipe.predict(FRAME) == target).mean() > 0.8


def test_keras_on_torch_never_imports_tensorflow() -> None:
    code = (
        "import sys, numpy as np\n"
        "from tasks.training.keras_mlp import KerasMLPClassifier\n"
        "from storage.registry.keras_model import keras_bytes, load_keras_bytes\n"
        "c = KerasMLPClassifier(hidden_dims=[4], epochs=1).fit(np.random.rand(20, 2), [0, 1] * 10)\n"
        "load_keras_bytes(keras_bytes(c.serving_model()))\n"
        "print('tensorflow' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-1000:]
    assert done.stdout.strip().splitlines()[-1] == "False"
