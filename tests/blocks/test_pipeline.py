"""PipelineConfig: YAML loading, unknown keys, malformed search spaces."""

from __future__ import annotations

from pathlib import Path

import pytest

from blocks.pipeline import ConfigError, PipelineConfig

BASE = {"name": "churn", "data_source": "d.csv", "target_column": "y"}


def test_yaml_in_the_seed_form_loads(tmp_path: Path) -> None:
    path = tmp_path / "train.yaml"
    path.write_text(
        """
name: churn
data_source: data/churn.parquet
target_column: churned
model_type: xgboost
model_class: XGBClassifier
enable_tuning: true
tuning_trials: 50
tuning_timeout: 600
tuner: tpe
param_space:
  max_depth: {type: int, low: 3, high: 15}
  learning_rate: {type: float, low: 0.001, high: 0.3, log: true}
  booster: {type: categorical, choices: [gbtree, dart]}
cross_validation_folds: 5
test_size: 0.2
metrics: [accuracy, f1, auc_roc]
seed: 7
feature_engineering: {interactions: true, max_generated: 4}
dask_address: tcp://127.0.0.1:8786
"""
    )
    cfg = PipelineConfig.from_yaml(path)
    assert cfg.param_space["learning_rate"].log is True
    assert cfg.param_space["booster"].choices == ["gbtree", "dart"]
    assert cfg.feature_engineering.interactions and cfg.dask_address == "tcp://127.0.0.1:8786"
    assert cfg.source_uri() == "data/churn.parquet"


def test_unknown_keys_are_named_with_the_file(tmp_path: Path) -> None:
    path = tmp_path / "typo.yaml"
    path.write_text("name: m\ndata_source: d.csv\ntarget_column: y\ntunning_trials: 5\n")
    with pytest.raises(ConfigError) as err:
        PipelineConfig.from_yaml(path)
    assert str(path) in str(err.value) and "tunning_trials: unknown key" in str(err.value)
    with pytest.raises(ConfigError, match=r"feature_engineering\.interaction: unknown key"):
        PipelineConfig.parse({**BASE, "feature_engineering": {"interaction": True}})


def test_missing_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        PipelineConfig.from_yaml(tmp_path / "none.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        PipelineConfig.from_yaml(bad)
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        PipelineConfig.from_yaml(bad)


@pytest.mark.parametrize(
    ("space", "message"),
    [
        (
            {"d": {"type": "int", "low": 5}},
            "param_space.d: Value error, an int parameter needs 'low' and 'high'",
        ),
        ({"d": {"type": "int", "low": 9, "high": 2}}, "'low' (9) is above 'high' (2)"),
        ({"lr": {"type": "float", "low": 0, "high": 1, "log": True}}, "a log range needs 'low' > 0"),
        ({"c": {"type": "categorical"}}, "needs a non-empty 'choices'"),
        ({"c": {"type": "choice", "choices": [1]}}, "param_space.c.type"),
        ({"d": {"type": "int", "low": 1, "high": 2, "stepp": 1}}, "param_space.d.stepp: unknown key"),
    ],
)
def test_malformed_param_space_names_the_parameter(space: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        PipelineConfig.parse({**BASE, "enable_tuning": True, "param_space": space})
    assert message in str(err.value)


def test_cross_field_rules() -> None:
    with pytest.raises(ConfigError, match="exactly one of 'data_source' and 'feature_store'"):
        PipelineConfig.parse({"name": "m", "target_column": "y"})
    with pytest.raises(ConfigError, match="enable_tuning needs a non-empty 'param_space'"):
        PipelineConfig.parse({**BASE, "enable_tuning": True})
    with pytest.raises(ConfigError, match="grid tuner needs 'step'"):
        PipelineConfig.parse(
            {
                **BASE,
                "enable_tuning": True,
                "tuner": "grid",
                "param_space": {"lr": {"type": "float", "low": 0.1, "high": 0.3}},
            }
        )
    with pytest.raises(ConfigError, match="unknown metric 'aucc'"):
        PipelineConfig.parse({**BASE, "metrics": ["aucc"]})
    with pytest.raises(ConfigError, match="cross_validation_folds"):
        PipelineConfig.parse({**BASE, "cross_validation_folds": 1})
    with pytest.raises(ConfigError, match="name"):
        PipelineConfig.parse({**BASE, "name": "bad name!"})


def test_paths_expand_home_and_environment_variables(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MLOPS_HOME", str(tmp_path))
    cfg = PipelineConfig.parse(
        {**BASE, "data_source": "${MLOPS_HOME}/fraud/transactions.csv", "output_dir": "~/models"}
    )
    assert cfg.data_source == f"{tmp_path}/fraud/transactions.csv"
    assert cfg.output_dir == str(Path("~/models").expanduser())
    fs = PipelineConfig.parse(
        {
            "name": "m",
            "target_column": "y",
            "feature_store": {"entity_source": "$MLOPS_HOME/l.parquet", "features": ["g:*"]},
        }
    )
    assert fs.feature_store is not None and fs.feature_store.entity_source == f"{tmp_path}/l.parquet"


def test_the_shipped_retraining_config_parses() -> None:
    shipped = Path(__file__).resolve().parents[2] / "pipelines" / "fraud.yaml"
    if not shipped.exists():
        pytest.skip("no pipelines/fraud.yaml in this checkout")
    cfg = PipelineConfig.from_yaml(shipped)
    assert cfg.name == "fraud" and "${" not in str(cfg.data_source)


def test_the_seeds_metric_spellings_are_aliases_of_the_canonical_names() -> None:
    cfg = PipelineConfig.parse(
        {
            **BASE,
            "metrics": ["f1_score", "roc_auc", "accuracy_score", "auc", "f1"],
            "tuning_metric": "f1_score",
        }
    )
    assert cfg.metrics == ["f1", "auc_roc", "accuracy"]
    assert cfg.tuning_metric == "f1"
    reg = PipelineConfig.parse({**BASE, "metrics": ["mean_absolute_error", "r2_score"]})
    assert reg.metrics == ["mae", "r2"]
    with pytest.raises(ConfigError, match="tuning_metric: unknown metric 'f2'"):
        PipelineConfig.parse({**BASE, "tuning_metric": "f2"})
