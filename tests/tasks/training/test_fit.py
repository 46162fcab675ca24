"""Stages 4 and 6-8: split, fit, folds, holdout metrics checked against sklearn.metrics."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from blocks.pipeline import FeatureEngineering
from tasks.retry import InjectedFailure, maybe_fail
from tasks.training.engineering import feature_spec
from tasks.training.fit import (
    TrainingSpec,
    compute_metrics,
    cv_fold,
    evaluate,
    fit_pipeline,
    raw_importance,
    split_rows,
    summarize_folds,
)


def test_binary_metrics_match_sklearn() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    proba = np.clip(y * 0.6 + rng.uniform(0, 0.5, 200), 0, 1)
    pred = (proba > 0.5).astype(int)
    m = compute_metrics("classification", y, pred, np.column_stack([1 - proba, proba]))
    assert m["accuracy"] == skm.accuracy_score(y, pred)
    assert m["precision"] == skm.precision_score(y, pred)
    assert m["recall"] == skm.recall_score(y, pred)
    assert m["f1"] == skm.f1_score(y, pred)
    assert m["auc_roc"] == skm.roc_auc_score(y, proba)


def test_multiclass_and_string_labels_match_sklearn() -> None:
    rng = np.random.default_rng(1)
    labels = np.array(["a", "b", "c"])
    y = labels[rng.integers(0, 3, 150)]
    proba = rng.dirichlet([1, 1, 1], 150)
    pred = labels[proba.argmax(axis=1)]
    m = compute_metrics("classification", y, pred, proba, classes=list(labels))
    assert m["f1"] == skm.f1_score(y, pred, average="weighted")
    assert m["auc_roc"] == skm.roc_auc_score(y, proba, multi_class="ovr", labels=list(labels))
    binary = compute_metrics(
        "classification",
        np.array(["no", "yes", "yes"]),
        np.array(["no", "yes", "no"]),
        classes=["no", "yes"],
        names=["recall"],
    )
    assert binary == {"recall": 0.5}


def test_regression_metrics_match_sklearn() -> None:
    y, pred = np.array([1.0, 2.0, 4.0]), np.array([1.5, 2.0, 3.0])
    m = compute_metrics("regression", y, pred)
    assert m == {
        "rmse": pytest.approx(np.sqrt(skm.mean_squared_error(y, pred))),
        "mae": skm.mean_absolute_error(y, pred),
        "r2": skm.r2_score(y, pred),
    }


def test_splits_are_stratified_or_time_ordered() -> None:
    X = pd.DataFrame({"x": range(100)})
    y = np.array([0] * 80 + [1] * 20)
    s = split_rows(X, y, "classification", 0.25, 0)
    assert len(s.X_test) == 25 and s.y_test.sum() == 5  # class shares kept
    times = pd.Series(pd.date_range("2026-01-01", periods=100, freq="D")[::-1])
    t = split_rows(X, y, "classification", 0.2, 0, order=times)
    assert t.X_test["x"].tolist() == list(range(19, -1, -1))  # the latest 20 days are the holdout
    assert t.X_train["x"].min() == 20


def test_fit_fold_and_summary() -> None:
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"a": rng.normal(size=120), "c": rng.choice(["x", "y"], 120)})
    y = ((X["a"] > 0) | (X["c"] == "x")).astype(int).to_numpy()
    spec = TrainingSpec(
        "RandomForest",
        "classification",
        "sklearn",
        feature_spec(X),
        FeatureEngineering(),
        False,
        {"n_estimators": 10},
    )
    fitted = fit_pipeline(spec, {"max_depth": 3}, X, y)
    assert fitted.named_steps["model"].max_depth == 3 and fitted.named_steps["model"].random_state == 0
    assert evaluate(fitted, X, y, "classification")["accuracy"] > 0.9
    fold = cv_fold.fn(spec, {}, X, y, np.arange(0, 90), np.arange(90, 120), ["accuracy"])
    assert set(fold) == {"accuracy"}
    s = summarize_folds([{"accuracy": 0.8, "f1": 0.5}, {"accuracy": 1.0, "f1": 0.7}])
    assert s == {"cv_accuracy_mean": 0.9, "cv_accuracy_std": 0.1, "cv_f1_mean": 0.6, "cv_f1_std": 0.1}


def test_importance_of_encoded_columns_is_summed_per_raw_column() -> None:
    spec = feature_spec(pd.DataFrame({"amount": [1.0], "country": ["NL"], "country_code": ["x"]}))
    out = raw_importance(
        {
            "numeric__amount": 0.2,
            "categorical__country_NL": 0.1,
            "categorical__country_DE": 0.3,
            "categorical__country_code_x": 0.05,
        },
        spec,
    )
    assert out == {"country": pytest.approx(0.4), "amount": 0.2, "country_code": 0.05}


def test_failure_hook(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    maybe_fail("train")  # not armed: nothing happens
    monkeypatch.setenv("MLOPS_TRAINING_FAIL_STAGE", "train")
    with pytest.raises(InjectedFailure, match="'train'"):
        maybe_fail("train")
    maybe_fail("export")  # another stage is unaffected
    marker = f"{tmp_path}/once"
    monkeypatch.setenv("MLOPS_TRAINING_FAIL_ONCE", marker)
    with pytest.raises(InjectedFailure):
        maybe_fail("train")
    maybe_fail("train")  # the marker exists now: the retry passes


def test_task_runner_address_order(monkeypatch: pytest.MonkeyPatch) -> None:
    from tasks.cluster import task_runner_for

    monkeypatch.delenv("MLOPS_DASK_ADDRESS", raising=False)
    local = task_runner_for(None, n_workers=3)
    assert local.address is None and local.cluster_kwargs["n_workers"] == 3
    assert local.cluster_kwargs["processes"] is False
    monkeypatch.setenv("MLOPS_DASK_ADDRESS", "tcp://127.0.0.1:8786")
    assert task_runner_for(None).address == "tcp://127.0.0.1:8786"
    assert task_runner_for("tcp://10.0.0.5:8786").address == "tcp://10.0.0.5:8786"
