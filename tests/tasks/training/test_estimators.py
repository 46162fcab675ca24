"""model_class → estimator, and the PyTorch MLP as a scikit-learn estimator."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone

from storage.errors import ValidationError
from tasks.training.estimators import (
    TorchMLPClassifier,
    TorchMLPRegressor,
    build_estimator,
    estimator_class,
    framework_of,
    resolve_device,
)


@pytest.mark.parametrize(
    ("name", "task", "expected"),
    [
        ("RandomForest", "regression", "RandomForestRegressor"),
        ("LogisticRegression", "classification", "LogisticRegression"),
        ("GradientBoosting", "classification", "GradientBoostingClassifier"),
        ("HistGradientBoosting", "regression", "HistGradientBoostingRegressor"),
        ("XGBClassifier", "classification", "XGBClassifier"),
        ("XGBRegressor", "regression", "XGBRegressor"),
        ("TabularMLP", "classification", "TorchMLPClassifier"),
        ("sklearn.neighbors:KNeighborsClassifier", "classification", "KNeighborsClassifier"),
    ],
)
def test_names_resolve(name: str, task: str, expected: str) -> None:
    assert estimator_class(name, task).__name__ == expected


def test_bad_names_and_params_are_named() -> None:
    with pytest.raises(ValidationError, match="unknown model_class 'Forest'"):
        estimator_class("Forest", "classification")
    with pytest.raises(ValidationError, match="does not support regression"):
        estimator_class("LogisticRegression", "regression")
    with pytest.raises(ValidationError, match="cannot import 'no_such_pkg.mod'"):
        estimator_class("no_such_pkg.mod:Model", "classification")
    with pytest.raises(ValidationError, match="is not a scikit-learn estimator"):
        estimator_class("pathlib:Path", "classification")
    with pytest.raises(ValidationError, match="has no parameter\\(s\\) 'max_dept'"):
        build_estimator("RandomForest", "classification", {"max_dept": 3})


def test_seed_and_framework() -> None:
    assert build_estimator("RandomForest", "classification", seed=7).random_state == 7
    assert build_estimator("RandomForest", "classification", {"random_state": 1}, seed=7).random_state == 1
    assert build_estimator("XGBClassifier", "classification").n_jobs == 1
    assert [framework_of(m, "sklearn") for m in ("RandomForest", "XGBClassifier", "TabularMLP")] == [
        "sklearn",
        "xgboost",
        "pytorch",
    ]
    assert framework_of("mypkg.models:Model", "custom") == "custom"


def test_device_resolution() -> None:
    import torch

    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValidationError, match="no CUDA device"):
            resolve_device("cuda")


def test_torch_classifier_follows_the_sklearn_contract_and_learns() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 4))
    y = np.where(X[:, 0] + X[:, 1] > 0, "yes", "no")
    clf = TorchMLPClassifier(hidden_dims=[16], epochs=20, device="cpu", random_state=0)
    assert clone(clf).get_params() == clf.get_params()
    fitted = clf.fit(X[:150], y[:150])
    assert fitted.score(X[150:], y[150:]) > 0.85
    assert list(fitted.classes_) == ["no", "yes"] and fitted.predict_proba(X).shape == (200, 2)
    again = TorchMLPClassifier(hidden_dims=[16], epochs=20, device="cpu", random_state=0).fit(
        X[:150], y[:150]
    )
    assert np.array_equal(again.predict_proba(X), fitted.predict_proba(X))  # seeded


def test_torch_regressor_network_predicts_in_target_units() -> None:
    from storage.registry.torch_mlp import predict_output

    rng = np.random.default_rng(1)
    X = rng.normal(size=(200, 2))
    y = 100 + 20 * X[:, 0] - 5 * X[:, 1]
    reg = TorchMLPRegressor(hidden_dims=[16], epochs=40, device="cpu").fit(X, y)
    assert reg.score(X, y) > 0.9
    # the bare network (what model.pt holds) gives the same numbers as the estimator
    assert np.allclose(predict_output(reg.module_, X), reg.predict(X))
    assert reg.architecture()["n_outputs"] == 1 and reg.architecture()["task"] == "regression"
