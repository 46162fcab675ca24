"""Stage 3 of training: raw columns → model matrix, as one scikit-learn ``ColumnTransformer``.

Numeric columns are imputed (and optionally extended with pairwise products and
ratios by :class:`InteractionFeatures`) and scaled; other columns are imputed
and one-hot encoded. The transformer is one object, so it goes into the model's
``Pipeline``, into ``model.skops``/``preprocess.skops`` and into the ONNX graph.

Example:
    >>> import pandas as pd
    >>> frame = pd.DataFrame({"a": [1.0, 2.0, None], "b": [3, 4, 5], "c": ["x", "y", "x"]})
    >>> spec = feature_spec(frame)
    >>> spec.numeric, spec.categorical
    (['a', 'b'], ['c'])
    >>> build_preprocessor(spec, FeatureEngineering()).fit_transform(frame).shape
    (3, 4)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from prefect import task
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from blocks.pipeline import FeatureEngineering, PipelineConfig
from storage.errors import ValidationError
from tasks.retry import maybe_fail, retry_unless_bad_input

RATIO_EPSILON = 1e-6
#: How a missing categorical value is fed to the model (ONNX string tensors cannot hold nulls).
MISSING_CATEGORY = ""


@dataclass(frozen=True)
class FeatureSpec:
    """Which raw columns are numeric (``integer``: those of an integer dtype) and which categorical."""

    numeric: list[str]
    categorical: list[str]
    integer: list[str] = field(default_factory=list)

    @property
    def columns(self) -> list[str]:
        """All input columns."""
        return [*self.numeric, *self.categorical]


def feature_spec(
    frame: pd.DataFrame, *, categorical: list[str] | None = None, drop: list[str] | None = None
) -> FeatureSpec:
    """Split the frame's columns into numeric and categorical (``categorical`` forces a column)."""
    forced = set(categorical or [])
    dropped = set(drop or [])
    for name in [*forced, *dropped]:
        if name not in frame.columns:
            raise ValidationError(f"feature_engineering names column {name!r}, which is not in the data")
    numeric: list[str] = []
    cats: list[str] = []
    for name in frame.columns:
        if name in dropped:
            continue
        s = frame[name]
        numeric_like = pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s)
        (numeric if numeric_like and name not in forced else cats).append(str(name))
    integer = [c for c in numeric if pd.api.types.is_integer_dtype(frame[c])]
    return FeatureSpec(numeric, cats, integer)


class InteractionFeatures(BaseEstimator, TransformerMixin):
    """Append pairwise products and/or ratios of numeric columns.

    ``fit`` picks the ``max_generated`` pairs of the most variable columns;
    ``transform`` appends ``x_i * x_j`` and ``x_i / (|x_j| + 1e-6)``.

    Example:
        >>> X = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 8.0]])
        >>> t = InteractionFeatures(ratios=True).fit(X)
        >>> t.pairs_, t.transform(X).shape
        ([(0, 1)], (3, 4))
    """

    def __init__(self, interactions: bool = True, ratios: bool = False, max_generated: int = 10) -> None:
        self.interactions = interactions
        self.ratios = ratios
        self.max_generated = max_generated

    def fit(self, X: Any, y: Any = None) -> InteractionFeatures:
        """Choose the column pairs."""
        data = np.asarray(X, dtype=np.float64)
        self.n_features_in_ = data.shape[1]
        order = np.argsort(-np.nanvar(data, axis=0), kind="stable") if data.shape[0] else np.arange(0)
        pairs: list[tuple[int, int]] = []
        for i, a in enumerate(order):
            for b in order[i + 1 :]:
                pairs.append((int(min(a, b)), int(max(a, b))))
        per_pair = int(self.interactions) + int(self.ratios)
        self.pairs_ = pairs[: self.max_generated // per_pair] if per_pair else []
        return self

    def transform(self, X: Any) -> np.ndarray:
        """The input with the generated columns appended."""
        data = np.asarray(X, dtype=np.float64)
        if data.shape[1] != self.n_features_in_:
            raise ValidationError(f"expected {self.n_features_in_} columns, got {data.shape[1]}")
        extra = []
        for i, j in self.pairs_:
            if self.interactions:
                extra.append(data[:, i] * data[:, j])
            if self.ratios:
                extra.append(data[:, i] / (np.abs(data[:, j]) + RATIO_EPSILON))
        return np.column_stack([data, *extra]) if extra else data

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Input names followed by ``a*b`` and ``a/b``."""
        names = (
            list(input_features)
            if input_features is not None
            else [f"x{i}" for i in range(self.n_features_in_)]
        )
        out = list(names)
        for i, j in self.pairs_:
            if self.interactions:
                out.append(f"{names[i]}*{names[j]}")
            if self.ratios:
                out.append(f"{names[i]}/{names[j]}")
        return np.asarray(out, dtype=object)


def build_preprocessor(
    spec: FeatureSpec, options: FeatureEngineering, *, scale_default: bool = True
) -> ColumnTransformer:
    """The unfitted ``ColumnTransformer`` for ``spec`` (dense float output).

    ``scale_default`` applies when ``options.scale`` is unset (see :func:`needs_scaling`).
    """
    steps: list[tuple[str, Any]] = [("impute", SimpleImputer(strategy=options.numeric_imputer))]
    if options.interactions or options.ratios:
        steps.append(
            (
                "interact",
                InteractionFeatures(
                    interactions=options.interactions,
                    ratios=options.ratios,
                    max_generated=options.max_generated,
                ),
            )
        )
    if options.scale if options.scale is not None else scale_default:
        steps.append(("scale", StandardScaler()))
    transformers: list[tuple[str, Any, list[str]]] = []
    if spec.numeric:
        # float columns first: skl2onnx concatenates a branch's inputs with the first input's type
        ordered = sorted(spec.numeric, key=lambda c: c in spec.integer)
        transformers.append(("numeric", Pipeline(steps), ordered))
    if spec.categorical:
        cat_steps: list[tuple[str, Any]] = [
            (
                "impute",
                SimpleImputer(missing_values=MISSING_CATEGORY, strategy="constant", fill_value="missing"),
            ),
        ]
        if options.one_hot:
            cat_steps.append(
                (
                    "one_hot",
                    OneHotEncoder(
                        handle_unknown="ignore", sparse_output=False, max_categories=options.max_categories
                    ),
                )
            )
        else:
            raise ValidationError("categorical columns need one_hot encoding (feature_engineering.one_hot)")
        transformers.append(("categorical", Pipeline(cat_steps), spec.categorical))
    if not transformers:
        raise ValidationError("no feature columns to train on")
    return ColumnTransformer(transformers, remainder="drop", sparse_threshold=0.0)


TREE_MODELS = (
    "RandomForest",
    "GradientBoosting",
    "HistGradientBoosting",
    "XGBClassifier",
    "XGBRegressor",
    "XGBoost",
)


def needs_scaling(model_class: str) -> bool:
    """Whether numeric columns are scaled by default: not for tree ensembles.

    Example:
        >>> needs_scaling("RandomForest"), needs_scaling("LogisticRegression")
        (False, True)
    """
    return model_class not in TREE_MODELS


def prepare_inputs(frame: pd.DataFrame, spec: FeatureSpec) -> pd.DataFrame:
    """The model's input frame: the spec's columns, categoricals as strings (missing as ``""``).

    Example:
        >>> prepare_inputs(pd.DataFrame({"c": ["a", None]}), FeatureSpec([], ["c"]))["c"].tolist()
        ['a', '']
    """
    out = frame[spec.columns].copy()
    for name in spec.categorical:
        col = out[name]
        out[name] = [MISSING_CATEGORY if pd.isna(v) else str(v) for v in col.astype(object)]
    for name in spec.numeric:
        if pd.api.types.is_integer_dtype(out[name]):
            out[name] = out[name].astype("int64")
        else:
            out[name] = out[name].astype("float64")
    return out


@dataclass
class EngineeredData:
    """Model inputs, labels and how to build the preprocessing."""

    X: pd.DataFrame
    y: np.ndarray
    spec: FeatureSpec
    task: str
    classes: list[Any] | None
    order: pd.Series | None


def engineer(frame: pd.DataFrame, config: PipelineConfig, task_kind: str, framework: str) -> EngineeredData:
    """Drop unlabeled rows, pick the feature columns, and encode labels for XGBoost (0..C-1).

    Example:
        >>> cfg = PipelineConfig(name="m", data_source="d.csv", target_column="y")
        >>> frame = pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": ["b", "a", None]})
        >>> e = engineer(frame, cfg, "classification", "xgboost")
        >>> e.y.tolist(), e.classes
        ([1, 0], ['a', 'b'])
    """
    data = frame[frame[config.target_column].notna()].reset_index(drop=True)
    fe = config.feature_engineering
    drop = [config.target_column, *([config.time_column] if config.time_column else []), *fe.drop_columns]
    spec = feature_spec(data.drop(columns=drop), categorical=fe.categorical_columns)
    y = data[config.target_column].to_numpy()
    classes: list[Any] | None = None
    if task_kind == "classification":
        uniques, codes = np.unique(y, return_inverse=True)
        classes = [v.item() if hasattr(v, "item") else v for v in uniques]
        if framework == "xgboost":
            y = codes.astype(np.int64)
    else:
        y = y.astype(np.float64)
    order = data[config.time_column] if config.time_column else None
    if order is not None and not pd.api.types.is_numeric_dtype(order):
        order = pd.to_datetime(order, errors="coerce", utc=True)
        if order.isna().any():
            raise ValidationError(f"time column {config.time_column!r} has values that are not times")
    return EngineeredData(prepare_inputs(data, spec), y, spec, task_kind, classes, order)


@task(name="engineer-features", retries=2, retry_delay_seconds=1, retry_condition_fn=retry_unless_bad_input)
def engineer_features(
    frame: pd.DataFrame,
    config: PipelineConfig,
    task_kind: str,
    framework: str,
    cache_token: str | None = None,
) -> EngineeredData:
    """Stage 3: model inputs and the feature spec the ``ColumnTransformer`` is built from."""
    maybe_fail("engineer")
    return engineer(frame, config, task_kind, framework)
