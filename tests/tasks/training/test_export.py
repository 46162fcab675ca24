"""Stage 9: native files in the shared layout, ONNX kept only when it matches the native model."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import onnx
import pandas as pd
import pytest
import skops.io as sio

from blocks.pipeline import FeatureEngineering
from storage.registry.model_format import (
    ONNX_FILE,
    ONNX_LABEL,
    ONNX_PROBABILITIES,
    ONNX_REGRESSION,
    PREPROCESS_FILE,
    SKOPS_FILE,
    TORCH_CONFIG_FILE,
    TORCH_STATE_FILE,
    XGBOOST_FILE,
)
from tasks.scoring import TRUSTED_PREFIXES
from tasks.training.engineering import feature_spec, needs_scaling, prepare_inputs
from tasks.training.export import export_model, onnx_feed, onnx_predictions
from tasks.training.fit import TrainingSpec, fit_pipeline


def frame(n: int = 200, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(
        {
            "amount": rng.normal(50, 10, n),
            "visits": rng.integers(0, 20, n),
            "country": rng.choice(["NL", "DE", "FR"], n),
        }
    )
    X.loc[::17, "amount"] = np.nan
    X.loc[::13, "country"] = None
    return prepare_inputs(X, feature_spec(X))


def label(X: pd.DataFrame) -> np.ndarray:
    return (
        (((X["amount"].fillna(50) - 50) / 10 + X["visits"] / 10 + (X["country"] == "NL")) > 1)
        .astype(int)
        .to_numpy()
    )


def fitted(
    model: str,
    framework: str,
    task: str = "classification",
    fe: FeatureEngineering | None = None,
    params: dict[str, Any] | None = None,
) -> tuple[Any, pd.DataFrame]:
    X = frame()
    y = (
        label(X)
        if task == "classification"
        else X["visits"].to_numpy() * 2.0 + X["amount"].fillna(50).to_numpy()
    )
    spec = TrainingSpec(
        model,
        task,
        framework,
        feature_spec(X),
        fe or FeatureEngineering(),
        needs_scaling(model),
        device="cpu",
    )
    return fit_pipeline(spec, params or {}, X, y), frame(60, seed=9)


@pytest.mark.parametrize(
    ("model", "framework", "params"),
    [
        ("LogisticRegression", "sklearn", {}),
        ("GradientBoosting", "sklearn", {"n_estimators": 20}),
        ("RandomForest", "sklearn", {"n_estimators": 10}),
        ("XGBClassifier", "xgboost", {"n_estimators": 20}),
        ("TabularMLP", "pytorch", {"hidden_dims": [8], "epochs": 5}),
    ],
)
def test_classifiers_export_onnx_within_parity(model: str, framework: str, params: dict[str, Any]) -> None:
    pipe, holdout = fitted(model, framework, params=params)
    out = export_model(pipe, framework, holdout, "classification")
    assert out.onnx["kept"] is True and out.onnx["reason"] is None, out.onnx
    # an independent recomputation of the parity on other rows
    fresh = frame(80, seed=3)
    diff = np.abs(
        onnx_predictions(out.files[ONNX_FILE], fresh, "classification") - pipe.predict_proba(fresh)
    ).max()
    assert diff < 1e-4 and out.onnx["max_abs_diff"] < 1e-4
    graph = onnx.load_from_string(out.files[ONNX_FILE]).graph
    assert [i.name for i in graph.input] == ["amount", "visits", "country"]
    assert [o.name for o in graph.output] == [ONNX_LABEL, ONNX_PROBABILITIES]
    import onnxruntime as ort

    labels = ort.InferenceSession(out.files[ONNX_FILE]).run([ONNX_LABEL], onnx_feed(fresh))[0]
    assert np.array_equal(labels.ravel(), pipe.predict(fresh))


def test_native_files_follow_the_shared_layout() -> None:
    sk, holdout = fitted("LogisticRegression", "sklearn")
    files = export_model(sk, "sklearn", holdout, "classification").files
    data = files[SKOPS_FILE]
    assert all(t.startswith(TRUSTED_PREFIXES) for t in sio.get_untrusted_types(data=data))
    assert np.array_equal(
        sio.loads(data, trusted=sio.get_untrusted_types(data=data)).predict(holdout), sk.predict(holdout)
    )

    xg, _ = fitted("XGBClassifier", "xgboost", params={"n_estimators": 10})
    files = export_model(xg, "xgboost", holdout, "classification").files
    import xgboost as xgb

    booster = xgb.XGBClassifier()
    booster.load_model(bytearray(files[XGBOOST_FILE]))
    pre = sio.loads(files[PREPROCESS_FILE], trusted=sio.get_untrusted_types(data=files[PREPROCESS_FILE]))
    assert np.allclose(booster.predict_proba(pre.transform(holdout)), xg.predict_proba(holdout))

    from storage.registry.torch_mlp import load_tabular_mlp, predict_output

    mlp, _ = fitted("TabularMLP", "pytorch", params={"hidden_dims": [8], "epochs": 3})
    files = export_model(mlp, "pytorch", holdout, "classification").files
    net = load_tabular_mlp(json.loads(files[TORCH_CONFIG_FILE]), files[TORCH_STATE_FILE])
    pre = sio.loads(files[PREPROCESS_FILE], trusted=sio.get_untrusted_types(data=files[PREPROCESS_FILE]))
    assert np.allclose(predict_output(net, pre.transform(holdout)), mlp.predict_proba(holdout))


@pytest.mark.parametrize(
    ("model", "framework", "params"),
    [
        ("GradientBoosting", "sklearn", {"n_estimators": 20}),
        ("XGBRegressor", "xgboost", {"n_estimators": 20}),
        ("TabularMLP", "pytorch", {"hidden_dims": [8], "epochs": 5}),
    ],
)
def test_regressors_export_onnx_within_parity(model: str, framework: str, params: dict[str, Any]) -> None:
    pipe, holdout = fitted(model, framework, task="regression", params=params)
    out = export_model(pipe, framework, holdout, "regression")
    assert out.onnx["kept"] is True, out.onnx
    assert [o.name for o in onnx.load_from_string(out.files[ONNX_FILE]).graph.output] == [ONNX_REGRESSION]


def test_interaction_features_export_through_their_own_converter() -> None:
    fe = FeatureEngineering(interactions=True, ratios=True, max_generated=4)
    pipe, holdout = fitted("LogisticRegression", "sklearn", fe=fe)
    out = export_model(pipe, "sklearn", holdout, "classification")
    assert out.onnx["kept"] is True and out.onnx["max_abs_diff"] < 1e-4


def test_without_parity_or_conversion_the_version_keeps_native_files_and_says_why() -> None:
    pipe, holdout = fitted("sklearn.neighbors:NearestCentroid", "sklearn")  # skl2onnx has no converter
    out = export_model(pipe, "sklearn", holdout, "classification")
    assert ONNX_FILE not in out.files and SKOPS_FILE in out.files
    assert out.onnx["kept"] is False and out.onnx["reason"].startswith("ONNX conversion failed")
    lr, holdout = fitted("LogisticRegression", "sklearn")
    strict = export_model(lr, "sklearn", holdout, "classification", tolerance=0.0)
    assert strict.onnx["kept"] is False and ONNX_FILE not in strict.files
    assert strict.onnx["reason"].startswith("parity failed: max |ONNX - native|")
    assert strict.onnx["max_abs_diff"] > 0
    assert strict.extra() == {"onnx": strict.onnx}


def test_integer_columns_first_or_alone_still_export() -> None:
    rng = np.random.default_rng(0)
    raw = pd.DataFrame(
        {"n": rng.integers(0, 10, 150), "m": rng.integers(0, 5, 150), "x": rng.normal(size=150)}
    )
    y = (raw["n"] + raw["m"] + raw["x"] > 7).astype(int).to_numpy()
    for columns in (["n", "m", "x"], ["n", "m"]):  # an int column first; only int columns
        X = prepare_inputs(raw[columns], feature_spec(raw[columns]))
        spec = TrainingSpec(
            "GradientBoosting",
            "classification",
            "sklearn",
            feature_spec(X),
            FeatureEngineering(),
            False,
            {"n_estimators": 10},
        )
        out = export_model(fit_pipeline(spec, {}, X, y), "sklearn", X, "classification")
        assert out.onnx["kept"] is True, (columns, out.onnx)
