"""Multi-objective tuning: the Pareto front against a brute-force reference, the declared choice, the flow."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from blocks.pipeline import ConfigError, FeatureEngineering, ParamSpec, PipelineConfig
from tasks.training.engineering import feature_spec
from tasks.training.fit import TrainingSpec
from tasks.training.multi_objective import directions, dominates
from tasks.training.tuning import create_study, run_trial_chunk, summarize_study

OBJECTIVES = ["auc_roc", "latency_ms"]


def _data(n: int = 300) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n), "c": rng.normal(size=n)})
    y = (X["a"] + X["b"] * X["c"] + 0.5 * rng.normal(size=n) > 0).astype(int).to_numpy()
    return X, y


def _study(name: str, constraints: dict[str, float]) -> dict[str, Any]:
    X, y = _data()
    spec = TrainingSpec(
        "RandomForest", "classification", "sklearn", feature_spec(X), FeatureEngineering(), False, {}
    )
    space = {
        "n_estimators": ParamSpec(type="categorical", choices=[2, 10, 60, 200]),
        "max_depth": ParamSpec(type="categorical", choices=[2, 8]),
    }
    create_study(name, None, "auc_roc", "grid", OBJECTIVES)
    run_trial_chunk.fn(name, None, 0, 8, 1, "grid", space, spec, X, y, "auc_roc", 3, objectives=OBJECTIVES)
    return summarize_study(name, None, OBJECTIVES, constraints)


def _brute_force_front(rows: list[dict[str, Any]]) -> set[int]:
    dirs = directions(OBJECTIVES)
    done = [r for r in rows if r["state"] == "complete"]
    values = {r["trial"]: tuple(r[o] for o in OBJECTIVES) for r in done}
    return {t for t, v in values.items() if not any(dominates(w, v, dirs) for w in values.values())}


def test_the_pareto_front_is_every_non_dominated_trial_and_the_choice_follows_the_rule() -> None:
    summary = _study("mo-front", {})
    assert summary["completed"] == 8  # the grid: every configuration once
    front = {r["trial"] for r in summary["pareto_front"]}
    assert front == _brute_force_front(summary["rows"])
    # every trial off the front is beaten by one on it
    rows = {r["trial"]: r for r in summary["rows"]}
    for t in set(rows) - front:
        assert any(
            dominates(
                [rows[f][o] for o in OBJECTIVES], [rows[t][o] for o in OBJECTIVES], directions(OBJECTIVES)
            )
            for f in front
        )
    # more trees cost time: the slowest and the fastest configuration differ clearly
    latency = {r["n_estimators"]: r["latency_ms"] for r in summary["rows"] if r["max_depth"] == 8}
    assert latency[200] > latency[2]

    # The rule: best auc_roc among front trials within the latency budget (checked by hand here).
    budget = sorted(r["latency_ms"] for r in summary["pareto_front"])[len(front) // 2]
    bounded = summarize_study("mo-front", None, OBJECTIVES, {"latency_ms": budget})
    eligible = [r for r in summary["pareto_front"] if r["latency_ms"] <= budget]
    expected = max(eligible, key=lambda r: (r["auc_roc"], -r["trial"]))
    assert bounded["chosen_trial"] == expected["trial"] and bounded["constraints_met"] is True
    assert bounded["best_params"] == {
        "n_estimators": expected["n_estimators"],
        "max_depth": expected["max_depth"],
    }
    assert (
        bounded["selection_rule"]
        == f"best auc_roc among the Pareto-front trials with latency_ms <= {budget:g}"
    )
    unbounded = max(summary["pareto_front"], key=lambda r: (r["auc_roc"], -r["trial"]))
    assert summary["chosen_trial"] == unbounded["trial"]


def test_an_unreachable_budget_takes_the_closest_front_trial_and_says_so() -> None:
    summary = _study("mo-tight", {"latency_ms": 1e-9, "auc_roc": 0.5})
    assert summary["constraints_met"] is False
    fastest = min(summary["pareto_front"], key=lambda r: (r["latency_ms"], r["trial"]))
    assert summary["chosen_trial"] == fastest["trial"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"tuning_objectives": ["auc_roc"]}, "two or more different objectives"),
        ({"tuning_objectives": ["auc_roc", "roc_auc"]}, "two or more different objectives"),
        ({"tuning_objectives": ["auc_roc", "speed"]}, "speed"),
        ({"tuning_objectives": OBJECTIVES, "tuning_constraints": {"f1": 0.5}}, "not among tuning_objectives"),
        ({"tuning_constraints": {"latency_ms": 2}}, "tuning_constraints need tuning_objectives"),
        ({"tuning_objectives": OBJECTIVES, "tuning_metric": "f1"}, "not both"),
    ],
)
def test_config_errors(extra: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        PipelineConfig.parse({"name": "m", "data_source": "d.csv", "target_column": "y", **extra})


@pytest.mark.slow
def test_train_model_reports_the_pareto_front_and_trains_the_chosen_trial(
    prefect_harness: None, dask_cluster: Any, tmp_path: Path
) -> None:
    from prefect.client.orchestration import get_client

    from flows.training import train_model

    X, y = _data(240)
    path = tmp_path / "data.csv"
    X.assign(label=y).to_csv(path, index=False)
    config = {
        "name": "multi",
        "data_source": str(path),
        "target_column": "label",
        "dask_address": dask_cluster.scheduler_address,
        "cross_validation_folds": 3,
        "model_class": "RandomForest",
        "enable_tuning": True,
        "tuner": "random",
        "tuning_trials": 6,
        "tuning_objectives": ["roc_auc", "latency_ms"],  # the seed's spelling is an alias
        "tuning_constraints": {"latency_ms": 1_000.0},
        "param_space": {
            "n_estimators": {"type": "int", "low": 2, "high": 80},
            "max_depth": {"type": "int", "low": 2, "high": 6},
        },
    }
    result = train_model(config=config)
    tuning = result["tuning"]
    assert tuning["objectives"] == OBJECTIVES and tuning["completed"] == 6
    front = tuning["pareto_front"]
    assert front and tuning["chosen_trial"] in {r["trial"] for r in front}
    chosen = next(r for r in front if r["trial"] == tuning["chosen_trial"])
    assert chosen["auc_roc"] == max(r["auc_roc"] for r in front if r["latency_ms"] <= 1_000.0)
    assert {k: result["hyperparameters"][k] for k in ("n_estimators", "max_depth")} == {
        k: chosen[k] for k in ("n_estimators", "max_depth")
    }
    with get_client(sync_client=True) as client:
        found = client.request(
            "POST", "/artifacts/filter", json={"artifacts": {"key": {"any_": ["pareto-multi"]}}}
        )
    (artifact,) = found.json()
    assert f"trial {tuning['chosen_trial']} chosen" in artifact["description"]
    table = json.loads(artifact["data"]) if isinstance(artifact["data"], str) else artifact["data"]
    assert [row["trial"] for row in table if row["chosen"]] == [tuning["chosen_trial"]]
