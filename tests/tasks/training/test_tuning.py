"""Stage 5: the Optuna study in RDB storage, samplers, pruning, timeout (trials on Dask: tests/flows)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import optuna
import pandas as pd
import pytest

from blocks.pipeline import FeatureEngineering, ParamSpec
from tasks.training.engineering import feature_spec
from tasks.training.fit import TrainingSpec
from tasks.training.tuning import (
    WORKER_ATTR,
    chunk_seed,
    count_finished,
    create_study,
    grid_space,
    make_sampler,
    open_storage,
    plan_chunks,
    run_trial_chunk,
    storage_url,
    summarize_study,
)


def data(n: int = 120) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n)})
    return X, (X["a"] + 0.3 * rng.normal(size=n) > 0).astype(int).to_numpy()


def spec_for(
    X: pd.DataFrame, model: str = "LogisticRegression", params: dict[str, Any] | None = None
) -> TrainingSpec:
    return TrainingSpec(
        model, "classification", "sklearn", feature_spec(X), FeatureEngineering(), True, params or {}
    )


def run(
    name: str,
    n: int,
    space: dict[str, ParamSpec],
    tuner: str = "tpe",
    storage: str | None = None,
    deadline: float | None = None,
    model: str = "LogisticRegression",
    chunk: int = 0,
) -> dict[str, Any]:
    X, y = data()
    return run_trial_chunk.fn(
        name,
        storage,
        chunk,
        n,
        chunk_seed(1, chunk),
        tuner,
        space,
        spec_for(X, model),
        X,
        y,
        "accuracy",
        3,
        deadline,
    )


C_SPACE = {"C": ParamSpec(type="float", low=0.01, high=10, log=True)}


def test_chunks_add_to_one_study_in_sqlite_under_mlops_home() -> None:
    assert storage_url().endswith("mlops-home/optuna.db")
    create_study("s", None, "accuracy")
    first = run("s", 3, C_SPACE, chunk=0)
    second = run("s", 2, C_SPACE, chunk=1)
    assert first["trials"] == [0, 1, 2] and len(second["trials"]) == 2
    summary = summarize_study("s", None)
    assert summary["trials"] == 5 == count_finished("s", None)
    assert summary["workers"] == [first["worker"]] and first["worker"].startswith("local:")
    assert 0.5 < summary["best_value"] <= 1.0 and set(summary["best_params"]) == {"C"}
    assert {row["worker"] for row in summary["rows"]} == {first["worker"]}


def test_postgresql_storage(postgres_url: str) -> None:
    url = postgres_url.replace("postgresql+psycopg", "postgresql+psycopg")
    create_study("pg", url, "accuracy")
    run("pg", 2, C_SPACE, storage=url)
    study = optuna.load_study(study_name="pg", storage=open_storage(url))
    assert len(study.trials) == 2 and all(WORKER_ATTR in t.user_attrs for t in study.trials)


def test_grid_sampler_covers_the_grid() -> None:
    space = {
        "max_depth": ParamSpec(type="int", low=1, high=3),
        "criterion": ParamSpec(type="categorical", choices=["gini", "entropy"]),
    }
    assert grid_space(space) == {"max_depth": [1, 2, 3], "criterion": ["gini", "entropy"]}
    create_study("g", None, "accuracy", "grid")
    run("g", 6, space, tuner="grid", model="RandomForest")
    study = optuna.load_study(study_name="g", storage=open_storage())
    seen = {(t.params["max_depth"], t.params["criterion"]) for t in study.trials}
    assert len(seen) == 6
    assert grid_space({"lr": ParamSpec(type="float", low=0.1, high=0.3, step=0.1)}) == {"lr": [0.1, 0.2, 0.3]}


def test_samplers_are_seeded_per_chunk() -> None:
    assert isinstance(make_sampler("random", 1, C_SPACE), optuna.samplers.RandomSampler)
    assert isinstance(make_sampler("tpe", 1, C_SPACE), optuna.samplers.TPESampler)
    create_study("r", None, "accuracy")
    a, b = run("r", 2, C_SPACE, tuner="random", chunk=0), run("r", 2, C_SPACE, tuner="random", chunk=1)
    study = optuna.load_study(study_name="r", storage=open_storage())
    values = [t.params["C"] for t in study.trials]
    assert len(set(values)) == 4  # different seeds, different draws
    assert len(a["trials"]) == len(b["trials"]) == 2


def test_median_pruner_stops_weak_trials() -> None:
    create_study("p", None, "accuracy")
    space = {"strategy": ParamSpec(type="categorical", choices=["most_frequent", "uniform"])}
    run("p", 16, space, tuner="random", model="sklearn.dummy:DummyClassifier")
    study = optuna.load_study(study_name="p", storage=open_storage())
    pruned = [t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert pruned and len(pruned) + len(complete) == 16
    # pruned trials stopped after fewer folds than the 3 of a complete trial
    assert all(len(t.intermediate_values) < 3 for t in pruned)
    assert summarize_study("p", None)["pruned"] == len(pruned)


def test_timeout_is_a_shared_deadline() -> None:
    create_study("t", None, "accuracy")
    started = time.time()
    out = run("t", 1000, C_SPACE, deadline=time.time() + 1.0)
    assert time.time() - started < 8 and 0 < len(out["trials"]) < 1000
    assert run("t", 5, C_SPACE, deadline=time.time() - 1)["trials"] == []  # past the deadline: no trials


def test_minimized_metric_direction() -> None:
    create_study("m", None, "rmse")
    assert (
        optuna.load_study(study_name="m", storage=open_storage()).direction
        == optuna.study.StudyDirection.MINIMIZE
    )


@pytest.mark.parametrize(("trials", "workers", "per"), [(64, 2, None), (5, 2, None), (7, 3, 2), (1, 4, None)])
def test_plan_chunks_covers_the_trial_count(trials: int, workers: int, per: int | None) -> None:
    chunks = plan_chunks(trials, workers, per)
    assert sum(chunks) == trials and all(c >= 1 for c in chunks)
    assert max(chunks) - min(chunks) <= 1 or per is not None
