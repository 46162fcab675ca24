"""Stages 4 and 6-8 of training: split, fit the best configuration, cross-validate, test on holdout.

Every model is a scikit-learn ``Pipeline([("pre", ColumnTransformer), ("model", estimator)])``
built by :func:`make_pipeline` from a :class:`TrainingSpec`, so tuning, the final
fit, the folds and the export all see the same object. Metrics come from
``sklearn.metrics``: accuracy, precision, recall, f1, auc_roc (classification;
binary averages for two classes, weighted otherwise) and rmse, mae, r2.

Each stage calls :func:`tasks.retry.maybe_fail`, the failure-injection test hook.

Example:
    >>> import numpy as np
    >>> m = compute_metrics("regression", np.array([1.0, 2.0]), np.array([1.0, 3.0]))
    >>> m["mae"], round(m["rmse"], 4)
    (0.5, 0.7071)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from prefect import task
from sklearn import metrics as skm
from sklearn.model_selection import KFold, StratifiedKFold, train_test_split
from sklearn.pipeline import Pipeline

from blocks.pipeline import CLASSIFICATION_METRICS, MINIMIZED_METRICS, REGRESSION_METRICS, FeatureEngineering
from storage.errors import ValidationError
from tasks.retry import maybe_fail
from tasks.training.engineering import FeatureSpec, build_preprocessor
from tasks.training.estimators import build_estimator


@dataclass
class TrainingSpec:
    """What it takes to build the model pipeline (picklable, sent to Dask workers)."""

    model_class: str
    task: str
    framework: str
    features: FeatureSpec
    engineering: FeatureEngineering
    scale_default: bool
    fixed_params: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    device: str = "auto"
    classes: list[Any] | None = None


@dataclass
class SplitData:
    """Train and holdout rows (inputs prepared, labels encoded for XGBoost)."""

    X_train: pd.DataFrame
    X_test: pd.DataFrame
    y_train: np.ndarray
    y_test: np.ndarray


def make_pipeline(spec: TrainingSpec, params: Mapping[str, Any] | None = None) -> Pipeline:
    """The unfitted ``Pipeline`` of preprocessing and estimator with ``params`` over the fixed ones."""
    settings = {**spec.fixed_params, **(params or {})}
    estimator = build_estimator(spec.model_class, spec.task, settings, seed=spec.seed, device=spec.device)
    pre = build_preprocessor(spec.features, spec.engineering, scale_default=spec.scale_default)
    return Pipeline([("pre", pre), ("model", estimator)])


def metric_names(task: str, wanted: Sequence[str] | None = None) -> list[str]:
    """The metrics reported for ``task`` (those of ``wanted`` that apply)."""
    names = CLASSIFICATION_METRICS if task == "classification" else REGRESSION_METRICS
    return [m for m in names if wanted is None or m in wanted] or list(names)


def compute_metrics(
    task: str,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    proba: np.ndarray | None = None,
    names: Sequence[str] | None = None,
    classes: Sequence[Any] | None = None,
) -> dict[str, float]:
    """Holdout metrics from ``sklearn.metrics``."""
    out: dict[str, float] = {}
    if task == "classification":
        labels = list(classes) if classes is not None else sorted(np.unique(y_true).tolist())
        binary = len(labels) == 2
        avg = "binary" if binary else "weighted"
        pos = {"pos_label": labels[1]} if binary else {}
        for name in metric_names(task, names):
            if name == "accuracy":
                out[name] = float(skm.accuracy_score(y_true, y_pred))
            elif name == "precision":
                out[name] = float(skm.precision_score(y_true, y_pred, average=avg, zero_division=0, **pos))
            elif name == "recall":
                out[name] = float(skm.recall_score(y_true, y_pred, average=avg, zero_division=0, **pos))
            elif name == "f1":
                out[name] = float(skm.f1_score(y_true, y_pred, average=avg, zero_division=0, **pos))
            elif name == "auc_roc" and proba is not None and len(np.unique(y_true)) > 1:
                if binary:
                    out[name] = float(skm.roc_auc_score(y_true == labels[1], proba[:, 1]))
                elif len(np.unique(y_true)) == len(labels):
                    out[name] = float(skm.roc_auc_score(y_true, proba, multi_class="ovr", labels=labels))
        return out
    for name in metric_names(task, names):
        if name == "rmse":
            out[name] = float(np.sqrt(skm.mean_squared_error(y_true, y_pred)))
        elif name == "mae":
            out[name] = float(skm.mean_absolute_error(y_true, y_pred))
        elif name == "r2":
            out[name] = float(skm.r2_score(y_true, y_pred))
    return out


def evaluate(
    pipeline: Any, X: pd.DataFrame, y: np.ndarray, task: str, names: Sequence[str] | None = None
) -> dict[str, float]:
    """Metrics of a fitted pipeline on ``(X, y)``."""
    pred = pipeline.predict(X)
    proba = (
        pipeline.predict_proba(X) if task == "classification" and hasattr(pipeline, "predict_proba") else None
    )
    classes = list(pipeline.classes_) if task == "classification" else None
    return compute_metrics(task, y, pred, proba, names, classes)


def is_minimized(metric: str) -> bool:
    """Whether smaller is better (rmse, mae)."""
    return metric in MINIMIZED_METRICS


def cv_splitter(task: str, folds: int, seed: int) -> KFold | StratifiedKFold:
    """Stratified folds for classification, shuffled folds for regression."""
    if task == "classification":
        return StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return KFold(n_splits=folds, shuffle=True, random_state=seed)


def split_rows(
    X: pd.DataFrame,
    y: np.ndarray,
    task: str,
    test_size: float,
    seed: int,
    order: pd.Series | None = None,
) -> SplitData:
    """Holdout split: time-ordered when ``order`` (the time column) is given, else stratified/random.

    Example:
        >>> X = pd.DataFrame({"x": range(10)})
        >>> s = split_rows(X, np.arange(10) % 2, "classification", 0.2, 0, order=pd.Series(range(10)))
        >>> s.X_test["x"].tolist()
        [8, 9]
    """
    if order is not None:
        idx = np.argsort(order.to_numpy(), kind="stable")
        cut = len(idx) - max(1, round(len(idx) * test_size))
        tr, te = idx[:cut], idx[cut:]
        return SplitData(X.iloc[tr].reset_index(drop=True), X.iloc[te].reset_index(drop=True), y[tr], y[te])
    stratify = y if task == "classification" else None
    try:
        X_tr, X_te, y_tr, y_te = train_test_split(
            X, y, test_size=test_size, random_state=seed, stratify=stratify
        )
    except ValueError as exc:
        raise ValidationError(f"cannot split the data (test_size={test_size}): {exc}") from exc
    return SplitData(
        X_tr.reset_index(drop=True), X_te.reset_index(drop=True), np.asarray(y_tr), np.asarray(y_te)
    )


def fit_pipeline(spec: TrainingSpec, params: Mapping[str, Any], X: pd.DataFrame, y: np.ndarray) -> Pipeline:
    """Build and fit the pipeline."""
    return make_pipeline(spec, params).fit(X, y)


def fit_distributed_xgboost(
    spec: TrainingSpec, params: Mapping[str, Any], X: pd.DataFrame, y: np.ndarray, client: Any
) -> Pipeline:
    """Fit the XGBoost model with ``xgboost.dask`` on the cluster; returns an ordinary fitted pipeline.

    The preprocessing is fitted here; the transformed matrix is split into Dask
    partitions, trained on the workers, and the booster is loaded into a plain
    ``XGBClassifier``/``XGBRegressor`` so export and serving need no cluster.
    """
    import dask.array as da
    import xgboost as xgb
    from xgboost import dask as dxgb

    pipe = make_pipeline(spec, params)
    pre, local = pipe.named_steps["pre"], pipe.named_steps["model"]
    Xt = np.asarray(pre.fit_transform(X), dtype=np.float32)
    chunk = max(1, len(Xt) // max(1, len(client.scheduler_info()["workers"])))
    dX, dy = da.from_array(Xt, chunks=(chunk, Xt.shape[1])), da.from_array(np.asarray(y), chunks=chunk)
    settings = {k: v for k, v in local.get_params().items() if k not in ("n_jobs",)}
    cls = dxgb.DaskXGBClassifier if spec.task == "classification" else dxgb.DaskXGBRegressor
    remote = cls(**settings)
    remote.client = client
    remote.fit(dX, dy)
    raw = bytearray(remote.get_booster().save_raw(raw_format="ubj"))
    plain = (xgb.XGBClassifier if spec.task == "classification" else xgb.XGBRegressor)(**local.get_params())
    plain.load_model(raw)
    return Pipeline([("pre", pre), ("model", plain)])


@task(name="split-data", retries=2, retry_delay_seconds=1)
def split_data(
    X: pd.DataFrame,
    y: np.ndarray,
    task_kind: str,
    test_size: float,
    seed: int,
    order: pd.Series | None = None,
    cache_token: str | None = None,
) -> SplitData:
    """Stage 4: holdout split (cached with the pipeline's token)."""
    maybe_fail("split")
    return split_rows(X, y, task_kind, test_size, seed, order)


@task(name="train-best-model", retries=2, retry_delay_seconds=1)
def train_best(
    spec: TrainingSpec, params: dict[str, Any], split: SplitData, distributed: bool = False
) -> Pipeline:
    """Stage 6: fit the best configuration on the training rows (XGBoost on Dask when ``distributed``)."""
    maybe_fail("train")
    if distributed and spec.framework == "xgboost":
        from distributed import worker_client

        with worker_client() as client:
            return fit_distributed_xgboost(spec, params, split.X_train, split.y_train, client)
    return fit_pipeline(spec, params, split.X_train, split.y_train)


@task(name="cross-validation-fold", retries=2, retry_delay_seconds=1)
def cv_fold(
    spec: TrainingSpec,
    params: dict[str, Any],
    X: pd.DataFrame,
    y: np.ndarray,
    train_idx: np.ndarray,
    test_idx: np.ndarray,
    names: list[str] | None = None,
) -> dict[str, float]:
    """Stage 7: one fold (the folds run in parallel on the cluster)."""
    maybe_fail("cv")
    fitted = fit_pipeline(spec, params, X.iloc[train_idx], y[train_idx])
    return evaluate(fitted, X.iloc[test_idx], y[test_idx], spec.task, names)


def summarize_folds(folds: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """``cv_<metric>_mean`` and ``cv_<metric>_std`` over the folds.

    Example:
        >>> summarize_folds([{"accuracy": 0.8}, {"accuracy": 0.9}])["cv_accuracy_mean"]
        0.85
    """
    out: dict[str, float] = {}
    for name in sorted({k for f in folds for k in f}):
        values = np.array([f[name] for f in folds if name in f], dtype=float)
        out[f"cv_{name}_mean"] = round(float(values.mean()), 12)
        out[f"cv_{name}_std"] = round(float(values.std()), 12)
    return out


@task(name="holdout-test", retries=2, retry_delay_seconds=1)
def holdout_test(
    pipeline: Any, split: SplitData, task_kind: str, names: list[str] | None = None
) -> dict[str, float]:
    """Stage 8: metrics on the holdout rows."""
    maybe_fail("test")
    return evaluate(pipeline, split.X_test, split.y_test, task_kind, names)


def decode(values: np.ndarray, spec: TrainingSpec) -> np.ndarray:
    """Class codes back to labels for XGBoost versions (labels unchanged otherwise)."""
    if spec.framework == "xgboost" and spec.classes is not None:
        return np.asarray(spec.classes, dtype=object)[np.asarray(values, dtype=int)]
    return np.asarray(values)


def reference_frame(pipeline: Any, split: SplitData, spec: TrainingSpec, target: str) -> pd.DataFrame:
    """Training inputs, target and the model's predictions (``prediction``): the reference profile's data."""
    frame = split.X_train.copy()
    frame[target] = decode(split.y_train, spec)
    frame["prediction"] = decode(pipeline.predict(split.X_train), spec)
    return frame


def raw_importance(importance: dict[str, float], features: FeatureSpec) -> dict[str, float]:
    """Importance of the model matrix's columns summed back to raw columns (largest first).

    ``numeric__amount`` → ``amount``; ``categorical__country_NL`` → ``country``; generated
    interaction columns keep their names.

    Example:
        >>> raw_importance({"numeric__a": 0.1, "categorical__c_x": 0.2, "categorical__c_y": 0.3},
        ...                FeatureSpec(["a"], ["c"]))
        {'c': 0.5, 'a': 0.1}
    """
    out: dict[str, float] = {}
    for name, value in importance.items():
        branch, _, rest = name.partition("__")
        raw = rest or name
        if branch == "categorical":
            raw = next(
                (c for c in sorted(features.categorical, key=len, reverse=True) if rest.startswith(f"{c}_")),
                rest,
            )
        out[raw] = out.get(raw, 0.0) + float(value)
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


@task(name="describe-model-version", retries=2, retry_delay_seconds=1)
def describe_version(
    model: str,
    version: int,
    pipeline: Any,
    split: SplitData,
    spec: TrainingSpec,
    target: str,
    export_extra: dict[str, Any],
    feature_refs: list[str] | None = None,
) -> dict[str, Any]:
    """After registration: export outcome, reference profile, explainer and importance, feature usage."""
    from tasks.features.steps import record_feature_lineage
    from tasks.monitoring.explain import global_importance, make_explainer
    from tasks.monitoring.profiles import build_profile
    from tasks.monitoring.steps import store_reference_profile
    from tasks.registry.steps import open_registry

    registry = open_registry()
    registry.set_version_extra(model, version, "export", export_extra)
    frame = reference_frame(pipeline, split, spec, target)
    categorical = [
        *spec.features.categorical,
        *([target, "prediction"] if spec.task == "classification" else []),
    ]
    profile = build_profile(frame, categorical=categorical, target=target, prediction="prediction")
    report = store_reference_profile(registry, model, version, profile)
    out: dict[str, Any] = {"reference_profile": report.id, "explainer": None, "features": []}
    try:
        background = split.X_train.sample(min(len(split.X_train), 100), random_state=spec.seed)
        pre, est = pipeline.named_steps["pre"], pipeline.named_steps["model"]
        names = [str(n) for n in pre.get_feature_names_out()]
        matrix = pd.DataFrame(np.asarray(pre.transform(background), dtype=float), columns=names)
        explainer = make_explainer(est, matrix, nsamples=64, seed=spec.seed)
        rows = 200 if explainer.kind in ("tree", "linear") else 10
        importance = raw_importance(
            global_importance(explainer, matrix, max_rows=rows, seed=spec.seed), spec.features
        )
        config = {**explainer.explainer_config(), "space": "transformed", "inputs": spec.features.columns}
        registry.set_version_extra(model, version, "explainer", config)
        registry.set_version_extra(model, version, "global_importance", importance)
        out["explainer"] = explainer.explainer_config()["kind"]
    except Exception as exc:  # an estimator SHAP cannot explain: recorded, not fatal
        registry.set_version_extra(
            model, version, "explainer", {"error": f"{type(exc).__name__}: {exc}"[:300]}
        )
    if feature_refs:
        out["features"] = record_feature_lineage.fn(feature_refs, model, version)
    return out
