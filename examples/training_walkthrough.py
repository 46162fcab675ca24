"""Training walk-through: a churn dataset → tuned, cross-validated, exported and registered model.

Writes a small synthetic customer table and a pipeline config under
``MLOPS_HOME``, then runs the ``train-model`` flow: validation report, feature
engineering, an Optuna study whose trials run on a local Dask cluster, the
best configuration trained and cross-validated, holdout metrics, ONNX export
checked against the native model, and the registered version with its
reference profile and explainer. Run it with ``python -m examples.training_walkthrough``
(Prefect starts a temporary server when none is configured).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from blocks.settings import get_settings
from flows.training import train_model

MODEL = "churn"


def churn_data(rows: int = 600, seed: int = 11) -> pd.DataFrame:
    """Customers with tenure, spend, support calls, plan and region; ``churned`` depends on them."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "tenure_months": rng.integers(1, 72, rows),
            "monthly_spend": rng.gamma(4.0, 15.0, rows).round(2),
            "support_calls": rng.poisson(1.5, rows),
            "plan": rng.choice(["basic", "plus", "pro"], rows, p=[0.5, 0.3, 0.2]),
            "region": rng.choice(["north", "south", "east", "west"], rows),
        }
    )
    frame.loc[rng.random(rows) < 0.03, "monthly_spend"] = np.nan
    score = (
        -0.05 * frame["tenure_months"]
        + 0.6 * frame["support_calls"]
        + 0.01 * frame["monthly_spend"].fillna(60)
        + np.where(frame["plan"] == "basic", 0.8, 0.0)
        + rng.normal(0, 0.7, rows)
    )
    frame["churned"] = (score > np.quantile(score, 0.7)).astype(int)
    return frame


def write_inputs(folder: Path) -> Path:
    """The dataset and the pipeline config (YAML); returns the config's path."""
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / "churn.csv"
    churn_data().to_csv(data, index=False)
    config = {
        "name": MODEL,
        "data_source": str(data),
        "target_column": "churned",
        "model_type": "sklearn",
        "model_class": "GradientBoosting",
        "model_params": {"n_estimators": 40},
        "enable_tuning": True,
        "tuning_trials": 8,
        "tuner": "tpe",
        "param_space": {
            "max_depth": {"type": "int", "low": 2, "high": 4},
            "learning_rate": {"type": "float", "low": 0.03, "high": 0.3, "log": True},
        },
        "cross_validation_folds": 3,
        "test_size": 0.25,
        "seed": 7,
        "n_workers": 2,
    }
    path = folder / "churn.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def main() -> dict[str, Any]:
    """Train and register the churn model; print what was registered."""
    config = write_inputs(get_settings().resolved_home() / "walkthrough")
    result = train_model(config_path=str(config))
    m = result["metrics"]
    tuning = result["tuning"]
    print(f"{result['model']} v{result['version']} registered ({result['framework']})")
    print(
        f"tuning: {tuning['completed']} of {tuning['trials']} trials complete, best {tuning['best_params']}"
    )
    print(f"holdout: accuracy {m['accuracy']:.3f}, f1 {m['f1']:.3f}, auc_roc {m['auc_roc']:.3f}")
    print(f"cross-validation: accuracy {m['cv_accuracy_mean']:.3f} ± {m['cv_accuracy_std']:.3f}")
    onnx = result["export"]["onnx"]
    print(f"ONNX kept: {onnx['kept']} (max |ONNX - native| {onnx['max_abs_diff']})")
    return result


if __name__ == "__main__":
    main()
