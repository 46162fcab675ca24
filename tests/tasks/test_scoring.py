"""Scoring a registered version: skops for scikit-learn, ONNX Runtime for any exported version."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from xgboost import XGBClassifier

from storage.errors import ValidationError
from storage.registry.core import Registry
from storage.registry.model_format import ONNX_FILE, PREPROCESS_FILE, SKOPS_FILE, signature_for
from tasks.scoring import score
from tasks.training.export import to_onnx


def _data(rows: int = 300) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"amount": rng.gamma(2, 30, rows), "kind": rng.choice(["a", "b", "c"], rows)})
    label = ((frame["amount"] > 60) ^ (frame["kind"] == "c")).astype(int).to_numpy()
    return frame, label


def _pipeline(model: object) -> Pipeline:
    pre = ColumnTransformer(
        [("num", StandardScaler(), ["amount"]), ("cat", OneHotEncoder(handle_unknown="ignore"), ["kind"])]
    )
    return Pipeline([("pre", pre), ("model", model)])


def test_an_xgboost_version_scores_through_its_onnx_file(registry: Registry) -> None:
    frame, label = _data()
    pipeline = _pipeline(XGBClassifier(n_estimators=20, max_depth=3)).fit(frame, label)
    registry.create_model("fraud")
    registry.create_version(
        "fraud",
        framework="xgboost",
        artifacts={ONNX_FILE: to_onnx(pipeline, frame, "xgboost"), PREPROCESS_FILE: b"unused here"},
        signature=signature_for(frame, "classification", [0, 1]),
    )
    scored = score(registry, "fraud", 1, frame.assign(extra=1))  # extra columns are ignored
    assert np.array_equal(scored, pipeline.predict(frame))


def test_a_scikit_learn_version_without_onnx_scores_through_skops(registry: Registry) -> None:
    from sklearn.linear_model import LogisticRegression

    frame, label = _data()
    pipeline = _pipeline(LogisticRegression()).fit(frame, label)
    registry.create_model("churn")
    registry.create_version(
        "churn",
        framework="sklearn",
        artifacts={SKOPS_FILE: sio.dumps(pipeline)},
        signature=signature_for(frame, "classification", [0, 1]),
    )
    assert np.array_equal(score(registry, "churn", 1, frame), pipeline.predict(frame))
    with pytest.raises(ValidationError, match="lacks input column"):
        score(registry, "churn", 1, frame.drop(columns=["kind"]))
