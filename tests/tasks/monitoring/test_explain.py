"""Tests of tasks.monitoring.explain: SHAP additivity per explainer kind, LIME, input validation."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris
from sklearn.ensemble import (
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
)
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from storage.errors import ValidationError
from tasks.monitoring.explain import (
    Explainer,
    Explanation,
    explain_prediction,
    explain_prediction_task,
    explainer_for_version_task,
    global_importance,
    lime_explanation,
    make_explainer,
)


@pytest.fixture(scope="module")
def cancer() -> tuple[pd.DataFrame, pd.Series]:
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    rows = np.random.default_rng(0).choice(len(X), 160, replace=False)
    return X.iloc[rows, :6].reset_index(drop=True), y.iloc[rows].reset_index(drop=True)


@pytest.fixture(scope="module")
def diabetes() -> tuple[pd.DataFrame, pd.Series]:
    X, y = load_diabetes(return_X_y=True, as_frame=True)
    return X.iloc[:150, :6], y.iloc[:150]


def _all_shap(explainer: Explainer, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    from tasks.monitoring.explain import _shap_values

    return _shap_values(explainer, X)


def _check_sums(result: Explanation) -> None:
    total = result.base_value + result.total() + result.rest
    assert total == pytest.approx(result.model_output, rel=1e-6, abs=1e-6)  # XGBoost sums in float32


@pytest.mark.parametrize(
    ("make_model", "output"),
    [
        (lambda: GradientBoostingClassifier(n_estimators=15, max_depth=2, random_state=0), "log-odds"),
        (lambda: HistGradientBoostingClassifier(max_iter=15, random_state=0), "log-odds"),
        (lambda: RandomForestClassifier(n_estimators=8, max_depth=4, random_state=0), "probability"),
        (lambda: xgb.XGBClassifier(n_estimators=15, max_depth=3, n_jobs=1, random_state=0), "log-odds"),
    ],
)
def test_tree_shap_values_add_up_to_the_model_output(
    cancer: tuple[pd.DataFrame, pd.Series], make_model: Callable[[], Any], output: str
) -> None:
    X, y = cancer
    model = make_model().fit(X, y)
    explainer = make_explainer(model, X)
    assert explainer.kind == "tree" and explainer.output == output
    assert explainer.explainer_config()["kind"] == "shap.TreeExplainer"
    values, base = _all_shap(explainer, X.iloc[:20])
    if output == "probability":
        raw = model.predict_proba(X.iloc[:20])[:, 1]
        summed = values[:, :, 1].sum(axis=1) + base[1]
    elif isinstance(model, xgb.XGBClassifier):
        raw = model.predict(X.iloc[:20], output_margin=True)
        summed = values.sum(axis=1) + base[0]
    else:
        raw = model.decision_function(X.iloc[:20])
        summed = values.sum(axis=1) + base[0]
    np.testing.assert_allclose(summed, raw, atol=1e-6)
    result = explain_prediction(explainer, X.iloc[3].to_dict(), top=3)
    assert len(result.factors) == 3 and result.label == 1
    _check_sums(result)
    contributions = [abs(f.contribution) for f in result.factors]
    assert contributions == sorted(contributions, reverse=True)


@pytest.mark.parametrize(
    "make_model",
    [
        lambda: GradientBoostingRegressor(n_estimators=15, random_state=0),
        lambda: xgb.XGBRegressor(n_estimators=15, max_depth=3, n_jobs=1, random_state=0),
    ],
)
def test_tree_regressor_explains_the_raw_prediction(
    diabetes: tuple[pd.DataFrame, pd.Series], make_model: Callable[[], Any]
) -> None:
    X, y = diabetes
    model = make_model().fit(X, y)
    explainer = make_explainer(model, X)
    assert (explainer.kind, explainer.output) == ("tree", "raw")
    result = explain_prediction(explainer, X.iloc[[7]], top=10)
    assert result.model_output == pytest.approx(float(model.predict(X.iloc[[7]])[0]), rel=1e-6)
    assert result.rest == pytest.approx(0.0) and len(result.factors) == X.shape[1]
    _check_sums(result)


def test_linear_explainer_is_coefficient_times_distance_from_the_mean(
    cancer: tuple[pd.DataFrame, pd.Series],
) -> None:
    X, y = cancer
    model = LogisticRegression(max_iter=2000).fit(X, y)
    explainer = make_explainer(model, X)
    assert (explainer.kind, explainer.output) == ("linear", "log-odds")
    values, base = _all_shap(explainer, X.iloc[:10])
    expected = model.coef_[0] * (X.iloc[:10].to_numpy() - X.to_numpy().mean(axis=0))
    np.testing.assert_allclose(values, expected, atol=1e-8)
    np.testing.assert_allclose(values.sum(axis=1) + base[0], model.decision_function(X.iloc[:10]), atol=1e-6)
    result = explain_prediction(explainer, X.iloc[[0]], top=2)
    _check_sums(result)
    assert {f.direction for f in result.factors} <= {"increases", "decreases"}


def test_pipeline_ending_in_a_linear_model_is_explained_in_the_transformed_space(
    cancer: tuple[pd.DataFrame, pd.Series],
) -> None:
    X, y = cancer
    pipe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(X, y)
    explainer = make_explainer(pipe, X)
    assert (explainer.kind, explainer.space) == ("linear", "transformed")
    result = explain_prediction(explainer, X.iloc[0].to_dict(), top=6)
    assert result.model_output == pytest.approx(float(pipe.decision_function(X.iloc[[0]])[0]))
    _check_sums(result)
    first = result.factors[0]
    assert first.value == pytest.approx(float(X.iloc[0][first.feature]))


def test_multiclass_explains_the_predicted_class() -> None:
    X, y = load_iris(return_X_y=True, as_frame=True)
    model = LogisticRegression(max_iter=1000).fit(X, y)
    explainer = make_explainer(model, X)
    row = X.iloc[[120]]
    result = explain_prediction(explainer, row)
    assert result.label == int(model.predict(row)[0])
    _check_sums(result)
    importance = global_importance(explainer, X)
    assert list(importance) == sorted(importance, key=lambda k: -importance[k])


def test_pipeline_ending_in_a_tree_and_multiclass_trees() -> None:
    X, y = load_iris(return_X_y=True, as_frame=True)
    pipe = make_pipeline(StandardScaler(), GradientBoostingClassifier(n_estimators=5, random_state=0)).fit(
        X, y
    )
    explainer = make_explainer(pipe, X)
    # shap's TreeExplainer rejects a multiclass GradientBoostingClassifier: the kernel fallback takes it
    assert (explainer.kind, explainer.space, explainer.output) == ("kernel", "transformed", "probability")
    result = explain_prediction(explainer, X.iloc[[60]], top=4)
    assert result.label == int(pipe.predict(X.iloc[[60]])[0])
    _check_sums(result)
    with pytest.raises(ValidationError, match="TreeExplainer rejects GradientBoostingClassifier"):
        make_explainer(pipe, X, kind="tree")
    forest = make_pipeline(StandardScaler(), RandomForestClassifier(n_estimators=4, random_state=0)).fit(X, y)
    explainer = make_explainer(forest, X)
    assert (explainer.kind, explainer.space, explainer.output) == ("tree", "transformed", "probability")
    _check_sums(explain_prediction(explainer, X.iloc[[60]]))
    booster = xgb.XGBClassifier(n_estimators=5, max_depth=2, n_jobs=1).fit(X, y)
    named = make_explainer(booster, X, class_index=2)
    result = explain_prediction(named, X.iloc[[0]], top=4)
    assert result.label == 2
    assert result.model_output == pytest.approx(float(booster.predict(X.iloc[[0]], output_margin=True)[0, 2]))
    _check_sums(result)


def test_string_class_labels_are_json_ready(cancer: tuple[pd.DataFrame, pd.Series]) -> None:
    X, y = cancer
    labels = np.where(y == 1, "benign", "malignant")
    model = RandomForestClassifier(n_estimators=5, random_state=0).fit(X, labels)
    result = explain_prediction(make_explainer(model, X), X.iloc[[0]], top=0)
    assert result.factors == () and result.label == "malignant"
    assert result.base_value + result.rest == pytest.approx(result.model_output)
    assert json.loads(json.dumps(result.to_dict()))["label"] == "malignant"
    lime = lime_explanation(model, X, X.iloc[[0]], num_features=2, num_samples=100)
    assert lime.label == "malignant"


@pytest.mark.parametrize(
    ("model", "output"),
    [(SVC(), "decision-function"), (KNeighborsClassifier(n_neighbors=5), "probability")],
)
def test_fallback_for_svc_and_knn_uses_kernel_shap(
    cancer: tuple[pd.DataFrame, pd.Series], model: Any, output: str
) -> None:
    X, y = cancer
    pipe = make_pipeline(StandardScaler(), model).fit(X, y)
    explainer = make_explainer(pipe, X, max_background=10, nsamples=100)
    assert (explainer.kind, explainer.output, explainer.background_rows) == ("kernel", output, 10)
    assert explainer.explainer_config()["kind"] == "shap.KernelExplainer"
    result = explain_prediction(explainer, X.iloc[[1]], top=4)
    assert len(result.factors) == 4
    _check_sums(result)
    values, _ = _all_shap(explainer, X.iloc[:3])
    assert values.shape[:2] == (3, X.shape[1])


def test_fallback_for_knn_regressor_and_permutation_kind(diabetes: tuple[pd.DataFrame, pd.Series]) -> None:
    X, y = diabetes
    model = KNeighborsRegressor(n_neighbors=5).fit(X, y)
    kernel = make_explainer(model, X, max_background=8, nsamples=60)
    assert (kernel.kind, kernel.output) == ("kernel", "raw")
    importance = global_importance(kernel, X, max_rows=4)
    assert len(importance) == X.shape[1] and all(v >= 0 for v in importance.values())
    perm = make_explainer(model, X, kind="permutation", max_background=8)
    result = explain_prediction(perm, X.iloc[[2]], top=3)
    assert result.kind == "shap.PermutationExplainer" and len(result.factors) == 3
    _check_sums(result)


def test_global_importance_is_sorted_and_json_ready(cancer: tuple[pd.DataFrame, pd.Series]) -> None:
    X, y = cancer
    model = GradientBoostingClassifier(n_estimators=10, random_state=0).fit(X, y)
    explainer = make_explainer(model, X)
    importance = global_importance(explainer, X, max_rows=50)
    assert set(importance) == set(X.columns)
    assert list(importance.values()) == sorted(importance.values(), reverse=True)
    json.dumps(importance)
    stored = explainer_for_version_task.fn(model, X, max_rows=50)
    assert stored["explainer"]["kind"] == "shap.TreeExplainer"
    assert stored["global_importance"].keys() == importance.keys()
    json.dumps(stored)
    served = explain_prediction_task.fn(model, X, X.iloc[0].to_dict(), top=2)
    assert len(served["factors"]) == 2 and served["kind"] == "shap.TreeExplainer"


def test_explanation_to_dict_is_json_ready(cancer: tuple[pd.DataFrame, pd.Series]) -> None:
    X, y = cancer
    model = RandomForestClassifier(n_estimators=5, random_state=0).fit(X, y)
    d = explain_prediction(make_explainer(model, X), X.iloc[0].to_dict(), top=2).to_dict()
    assert set(d) >= {"kind", "output", "base_value", "model_output", "factors", "rest", "label"}
    assert set(d["factors"][0]) >= {"feature", "value", "contribution", "direction"}
    json.loads(json.dumps(d))


def test_lime_classification_is_deterministic_with_a_seed(cancer: tuple[pd.DataFrame, pd.Series]) -> None:
    X, y = cancer
    model = RandomForestClassifier(n_estimators=8, random_state=0).fit(X, y)
    first = lime_explanation(model, X, X.iloc[[5]], num_features=4, num_samples=300, seed=3)
    again = lime_explanation(model, X, X.iloc[[5]], num_features=4, num_samples=300, seed=3)
    assert first == again
    assert len(first.factors) == 4 and first.output == "probability" and first.label == 1
    assert first.model_output == pytest.approx(float(model.predict_proba(X.iloc[[5]])[0, 1]))
    assert all(f.rule for f in first.factors)


def test_lime_regression(diabetes: tuple[pd.DataFrame, pd.Series]) -> None:
    X, y = diabetes
    model = LinearRegression().fit(X, y)
    result = lime_explanation(model, X, X.iloc[0].to_dict(), num_features=3, num_samples=200)
    assert len(result.factors) == 3 and result.output == "raw" and result.label is None
    assert result.model_output == pytest.approx(float(model.predict(X.iloc[[0]])[0]))


def test_numpy_background_uses_the_model_feature_names(diabetes: tuple[pd.DataFrame, pd.Series]) -> None:
    X, y = diabetes
    model = LinearRegression().fit(X, y)
    explainer = make_explainer(model, X.to_numpy())
    assert explainer.feature_names == tuple(X.columns)


@pytest.mark.parametrize(
    ("features", "message"),
    [
        ({"mean radius": 1.0, "bogus": 2.0}, "bogus"),
        ("missing", "mean smoothness"),
        ("two rows", "exactly one row"),
        ("text", "mean texture"),
    ],
)
def test_bad_input_names_the_feature(
    cancer: tuple[pd.DataFrame, pd.Series], features: Any, message: str
) -> None:
    X, y = cancer
    model = LogisticRegression(max_iter=2000).fit(X, y)
    explainer = make_explainer(model, X)
    if features == "missing":
        features = X.iloc[0].drop("mean smoothness").to_dict()
    elif features == "two rows":
        features = X.iloc[:2]
    elif features == "text":
        features = {**X.iloc[0].to_dict(), "mean texture": "high"}
    else:
        features = {**X.iloc[0].to_dict(), **features}
    with pytest.raises(ValidationError, match=message):
        explain_prediction(explainer, features)
    with pytest.raises(ValidationError, match=message):
        lime_explanation(model, X, features, num_samples=50)


def test_bad_kind_and_empty_background(cancer: tuple[pd.DataFrame, pd.Series]) -> None:
    X, y = cancer
    model = SVC().fit(X, y)
    with pytest.raises(ValidationError, match="not a tree model"):
        make_explainer(model, X, kind="tree")
    with pytest.raises(ValidationError, match="unknown explainer kind"):
        make_explainer(model, X, kind="magic")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="no rows"):
        make_explainer(model, X.iloc[:0])
    with pytest.raises(ValidationError, match="predict_proba"):
        lime_explanation(model, X, X.iloc[[0]])
    with pytest.raises(ValidationError, match="mean area"):
        global_importance(make_explainer(model, X, max_background=5), X.drop(columns="mean area"))


def test_kernel_forced_on_xgboost_explains_the_probability(cancer: tuple[pd.DataFrame, pd.Series]) -> None:
    X, y = cancer
    model = xgb.XGBClassifier(n_estimators=5, max_depth=2, n_jobs=1).fit(X, y)
    explainer = make_explainer(model, X, kind="kernel", max_background=5, nsamples=40)
    assert (explainer.kind, explainer.output) == ("kernel", "probability")
    result = explain_prediction(explainer, X.iloc[[0]], top=3)
    assert result.model_output == pytest.approx(float(model.predict_proba(X.iloc[[0]])[0, 1]), rel=1e-6)
    _check_sums(result)
