"""The training pipeline's configuration: one YAML file or dict per model.

``PipelineConfig`` drives the ``train-model`` flow (``flows/training.py``): where
the data comes from, what to predict, which estimator, how to tune it and where
the work runs. Unknown keys are errors that name the key, so a typo never
silently falls back to a default.

Example:
    >>> cfg = PipelineConfig(name="churn", data_source="churn.csv", target_column="churned",
    ...                      model_class="GradientBoosting", enable_tuning=True,
    ...                      param_space={"max_depth": {"type": "int", "low": 2, "high": 6}})
    >>> cfg.param_space["max_depth"].high, cfg.model_type, cfg.tuner
    (6, 'sklearn', 'tpe')
    >>> try:
    ...     PipelineConfig(name="x", data_source="x.csv", target_column="y", tunning=True)
    ... except Exception as exc:
    ...     print("tunning" in str(exc))
    True
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

# Re-exported: the metric names are part of the config's vocabulary (aliases in blocks.metrics).
from blocks.metrics import CLASSIFICATION_METRICS as CLASSIFICATION_METRICS
from blocks.metrics import MINIMIZED_METRICS as MINIMIZED_METRICS
from blocks.metrics import REGRESSION_METRICS as REGRESSION_METRICS
from blocks.metrics import known_metric

#: The objective that measures the fitted pipeline's single-row predict time (ms, minimized).
LATENCY_OBJECTIVE = "latency_ms"


class ConfigError(ValueError):
    """A pipeline config that cannot be used; the message names the file and each bad key."""


def expand_path(value: str | None) -> str | None:
    """``~`` and ``$VAR`` / ``${VAR}`` expanded (unset variables stay as written).

    Example:
        >>> os.environ["MLOPS_EXAMPLE_DIR"] = "/data"
        >>> expand_path("${MLOPS_EXAMPLE_DIR}/churn.csv")
        '/data/churn.csv'
    """
    return None if value is None else os.path.expandvars(os.path.expanduser(value))


class ParamSpec(BaseModel):
    """One hyperparameter's search range, in the seed's form.

    ``{"type": "int", "low": 3, "high": 15}``, ``{"type": "float", "low": 0.001,
    "high": 0.3, "log": true}``, ``{"type": "categorical", "choices": ["gini", "entropy"]}``;
    ``step`` makes an int/float range discrete (and lets the grid tuner enumerate it).

    Example:
        >>> ParamSpec(type="float", low=0.01, high=0.3, log=True).log
        True
    """

    model_config = ConfigDict(extra="forbid")

    type: Literal["int", "float", "categorical"]
    low: int | float | None = None
    high: int | float | None = None
    log: bool = False
    step: int | float | None = None
    choices: list[Any] | None = None

    @model_validator(mode="after")
    def _check_range(self) -> ParamSpec:
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("a categorical parameter needs a non-empty 'choices' list")
            return self
        if self.low is None or self.high is None:
            raise ValueError(f"an {self.type} parameter needs 'low' and 'high'")
        if self.low > self.high:
            raise ValueError(f"'low' ({self.low}) is above 'high' ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError(f"a log range needs 'low' > 0, got {self.low}")
        if self.step is not None and self.step <= 0:
            raise ValueError(f"'step' must be positive, got {self.step}")
        return self


class FeatureEngineering(BaseModel):
    """How raw columns become the model's input matrix (a scikit-learn ``ColumnTransformer``).

    ``scale`` unset scales numeric columns for linear models and networks only: tree
    models split on raw values, which keeps their ONNX graph exact (float32
    arithmetic of a scaler moves values across split thresholds).

    Example:
        >>> FeatureEngineering(interactions=True).numeric_imputer
        'median'
    """

    model_config = ConfigDict(extra="forbid")

    numeric_imputer: Literal["mean", "median", "most_frequent"] = "median"
    scale: bool | None = None
    one_hot: bool = True
    max_categories: int | None = Field(default=None, ge=2)
    interactions: bool = False
    ratios: bool = False
    max_generated: int = Field(default=10, ge=1)
    drop_columns: list[str] = Field(default_factory=list)
    categorical_columns: list[str] = Field(default_factory=list)


class FeatureStoreSource(BaseModel):
    """A point-in-time training set from the feature store.

    ``entity_source`` is a file of join keys, event timestamps and labels; each
    row gets the feature values known at its timestamp.

    Example:
        >>> FeatureStoreSource(entity_source="labels.parquet", features=["trips:*"]).timestamp_column
        'event_timestamp'
    """

    model_config = ConfigDict(extra="forbid")

    entity_source: str
    features: list[str] = Field(min_length=1)
    timestamp_column: str = "event_timestamp"
    drop_keys: bool = True

    @field_validator("entity_source")
    @classmethod
    def _expand(cls, value: str) -> str:
        return expand_path(value) or value


class ValidationThresholds(BaseModel):
    """When data problems stop the flow (fatal) or only warn.

    Example:
        >>> ValidationThresholds().max_missing_share
        0.5
    """

    model_config = ConfigDict(extra="forbid")

    min_rows: int = Field(default=20, ge=1)
    max_missing_share: float = Field(default=0.5, ge=0, le=1)
    max_duplicate_share: float = Field(default=0.5, ge=0, le=1)
    min_class_share: float = Field(default=0.01, ge=0, le=1)


class PipelineConfig(BaseModel):
    """Everything one training run needs.

    Attributes:
        name: Model name in the registry.
        data_source: A CSV, Parquet or JSON file (or set ``feature_store``); ``~`` and
            ``${VAR}`` are expanded in paths.
        feature_store: A feature-store training set instead of a file.
        target_column: The label column.
        task: ``classification`` or ``regression``; inferred from the target when absent.
        model_type: ``sklearn``, ``xgboost``, ``pytorch``, ``keras`` or ``custom``.
        model_class: ``RandomForest``, ``LogisticRegression``, ``GradientBoosting``,
            ``HistGradientBoosting``, ``XGBClassifier``/``XGBRegressor``, ``TabularMLP``,
            ``KerasMLP``, or an import path ``package.module:Class``. Unset, ``pytorch``
            means ``TabularMLP`` and ``keras`` means ``KerasMLP``.
        model_params: Fixed estimator parameters (tuned ones override them).
        enable_tuning / tuning_trials / tuning_timeout / tuner / param_space:
            the Optuna study (TPE, grid or random sampler) and its search space.
        tuning_metric: The metric the study optimizes (default: accuracy or rmse).
        tuning_objectives: Two or more objectives for a multi-objective study instead
            (metrics, and ``latency_ms``: the fitted pipeline's single-row predict time,
            minimized), e.g. ``[auc_roc, latency_ms]``; the Pareto front is reported.
        tuning_constraints: Bounds on objectives (an upper bound for minimized ones such
            as ``latency_ms``, a lower bound for the others); the chosen trial is the
            best on the first objective among the Pareto front trials within them.
        tuning_storage: Optuna RDB URL; SQLite under ``MLOPS_HOME`` when unset.
        pruning: Stop weak trials early (median pruner over the folds' running mean).
        trials_per_task: Trials per Prefect task on the cluster; about four tasks per worker when unset.
        cross_validation_folds: Folds of the cross-validation stage (0 or 1: none).
        test_size: Holdout share.
        metrics: Holdout metrics to report (all of the task's by default).
        seed: Seed of the split, the samplers and the estimators.
        time_column: Split by time (train on the earliest rows) instead of at random.
        output_dir: Also write the version's files here (``<output_dir>/<name>/v<N>/``).
        dask_address: Scheduler address; ``MLOPS_DASK_ADDRESS`` or a local cluster when unset.
        n_workers: Workers of the local cluster.
        distributed: Train XGBoost with ``xgboost.dask`` on the cluster.
        device: PyTorch device: ``auto`` (CUDA when available), ``cpu`` or ``cuda``.
        cache: Reuse the results of stages 1-5 for an unchanged config and data.
        description / tags: The version's description and tags.
        model_tags: Tags set on the model when the version registers (``domain`` and
            ``use_case`` declare the EU AI Act risk level).

    Example:
        >>> PipelineConfig(name="m", data_source="d.csv", target_column="y").cross_validation_folds
        5
    """

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    data_source: str | None = None
    feature_store: FeatureStoreSource | None = None
    target_column: str = Field(min_length=1)
    task: Literal["classification", "regression"] | None = None
    model_type: Literal["sklearn", "xgboost", "pytorch", "keras", "custom"] = "sklearn"
    model_class: str = "RandomForest"
    model_params: dict[str, Any] = Field(default_factory=dict)
    enable_tuning: bool = False
    tuning_trials: int = Field(default=20, ge=1)
    tuning_timeout: float | None = Field(default=None, gt=0)
    tuner: Literal["tpe", "grid", "random"] = "tpe"
    param_space: dict[str, ParamSpec] = Field(default_factory=dict)
    tuning_metric: str | None = None
    tuning_objectives: list[str] | None = None
    tuning_constraints: dict[str, float] = Field(default_factory=dict)
    tuning_storage: str | None = None
    pruning: bool = True
    trials_per_task: int | None = Field(default=None, ge=1)
    cross_validation_folds: int = Field(default=5, ge=0)
    test_size: float = Field(default=0.2, gt=0, lt=1)
    metrics: list[str] | None = None
    seed: int = 42
    time_column: str | None = None
    feature_engineering: FeatureEngineering = Field(default_factory=FeatureEngineering)
    validation: ValidationThresholds = Field(default_factory=ValidationThresholds)
    output_dir: str | None = None
    dask_address: str | None = None
    n_workers: int = Field(default=2, ge=1)
    distributed: bool = False
    device: Literal["auto", "cpu", "cuda"] = "auto"
    cache: bool = True
    description: str = ""
    tags: dict[str, str] = Field(default_factory=dict)
    model_tags: dict[str, str] = Field(default_factory=dict)

    @field_validator("data_source", "output_dir")
    @classmethod
    def _expand_paths(cls, value: str | None) -> str | None:
        return expand_path(value)

    @field_validator("metrics")
    @classmethod
    def _known_metrics(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        canonical = [known_metric(name) for name in value]  # f1_score, roc_auc, ... are aliases
        return list(dict.fromkeys(canonical))

    @field_validator("tuning_metric")
    @classmethod
    def _known_tuning_metric(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return known_metric(value)
        except ValueError as exc:
            raise ValueError(f"tuning_metric: {exc}") from None

    @field_validator("tuning_objectives")
    @classmethod
    def _known_objectives(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        names = [name if name == LATENCY_OBJECTIVE else known_metric(name) for name in value]
        if len(names) < 2 or len(set(names)) != len(names):
            raise ValueError("tuning_objectives needs two or more different objectives")
        return names

    @model_validator(mode="after")
    def _objectives_fit(self) -> PipelineConfig:
        if self.tuning_constraints and not self.tuning_objectives:
            raise ValueError("tuning_constraints need tuning_objectives")
        unknown = sorted(set(self.tuning_constraints) - set(self.tuning_objectives or []))
        if unknown:
            raise ValueError(f"tuning_constraints name {unknown}, which are not among tuning_objectives")
        if self.tuning_objectives and self.tuning_metric:
            raise ValueError("set tuning_metric or tuning_objectives, not both")
        return self

    @model_validator(mode="after")
    def _network_class(self) -> PipelineConfig:
        if "model_class" not in self.model_fields_set:  # the model type's own network by default
            default = {"keras": "KerasMLP", "pytorch": "TabularMLP"}.get(self.model_type)
            if default:
                self.model_class = default
        return self

    @model_validator(mode="after")
    def _one_source(self) -> PipelineConfig:
        if (self.data_source is None) == (self.feature_store is None):
            raise ValueError("set exactly one of 'data_source' and 'feature_store'")
        if self.enable_tuning and not self.param_space:
            raise ValueError("enable_tuning needs a non-empty 'param_space'")
        if self.enable_tuning and self.tuner == "grid":
            for key, spec in self.param_space.items():
                if spec.type == "float" and spec.step is None:
                    raise ValueError(
                        f"param_space.{key}: the grid tuner needs 'step' or 'choices' for floats"
                    )
        if self.cross_validation_folds == 1:
            raise ValueError("cross_validation_folds must be 0 (off) or at least 2")
        return self

    def source_uri(self) -> str:
        """The data source as recorded in lineage (file path or ``feature-store:`` refs)."""
        if self.feature_store is not None:
            return f"feature-store:{','.join(self.feature_store.features)}@{self.feature_store.entity_source}"
        return str(self.data_source)

    @classmethod
    def from_yaml(cls, path: str | Path) -> PipelineConfig:
        """Load a config file; errors name the file and the offending key.

        Example:
            >>> import tempfile, os
            >>> p = os.path.join(tempfile.mkdtemp(), "c.yaml")
            >>> _ = open(p, "w").write("name: m\\ndata_source: d.csv\\ntarget_column: y\\n")
            >>> PipelineConfig.from_yaml(p).name
            'm'
        """
        file = Path(path)
        if not file.is_file():
            raise ConfigError(f"pipeline config {file} does not exist")
        try:
            data = yaml.safe_load(file.read_text())
        except yaml.YAMLError as exc:
            raise ConfigError(f"pipeline config {file} is not valid YAML: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"pipeline config {file} must hold a mapping of keys")
        return cls.parse(data, source=str(file))

    @classmethod
    def parse(cls, data: dict[str, Any], source: str = "pipeline config") -> PipelineConfig:
        """Validate a dict; errors are :class:`ConfigError` naming each key.

        Example:
            >>> try:
            ...     PipelineConfig.parse({"name": "m", "data_source": "d.csv", "target_column": "y",
            ...                           "param_space": {"depth": {"type": "int", "low": 5}}})
            ... except Exception as exc:
            ...     print(str(exc).splitlines()[1])
              param_space.depth: Value error, an int parameter needs 'low' and 'high'
        """
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            lines = []
            for err in exc.errors():
                where = ".".join(str(p) for p in err["loc"]) or "(top level)"
                message = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
                lines.append(f"  {where}: {message}")
            raise ConfigError(f"{source} is invalid:\n" + "\n".join(lines)) from exc
