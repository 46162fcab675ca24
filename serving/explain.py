"""Top factors of one served prediction, from SHAP on the version's native model.

A version served by ONNX Runtime is explained with its native files
(``model.skops``, or ``preprocess.skops`` + ``model.ubj``), loaded once. The
model is explained in its transformed feature space (names from the
preprocessing's ``get_feature_names_out``):

- tree models (scikit-learn trees and ensembles, XGBoost): ``shap.TreeExplainer``
  with the tree-path-dependent algorithm; the factors plus ``base_value`` add
  up to the model's raw output (log-odds for boosted classifiers);
- linear models: ``coef * x`` (contributions relative to an all-zero input,
  ``base_value`` the intercept).

Other models (a PyTorch network, an SVM) get a 400 naming the model type; the
offline explanations of :mod:`tasks.monitoring.explain` cover them.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from serving.models import LoadedModel, ModelCache
from serving.protocol import Batch, RequestError
from serving.runtimes import NATIVE_RUNTIMES, Runtime, load_runtime

TOP_FACTORS = 10
_TREES = ("DecisionTree", "ExtraTree", "RandomForest", "GradientBoosting", "HistGradientBoosting", "XGB")
_native: dict[tuple[str, int], Runtime] = {}
_lock = threading.Lock()


def _native_runtime(cache: ModelCache, loaded: LoadedModel) -> Runtime:
    if loaded.runtime.estimator is not None:
        return loaded.runtime
    key = (loaded.model, loaded.version)
    with _lock:
        if key in _native:
            return _native[key]
        mv = cache.registry.get_version(loaded.model, loaded.version)
        try:
            runtime = load_runtime(
                mv.signature,
                lambda name: cache.registry.load_artifact(loaded.model, loaded.version, name),
                {a.name for a in mv.artifacts},
                trust_pickle=cache.trust_pickle,
                trusted_types=cache.trusted_types,
                order=NATIVE_RUNTIMES,
            )
        except Exception as exc:
            raise RequestError(
                f"{loaded.model} version {loaded.version} cannot be explained here: no native model ({exc})"
            ) from None
        _native[key] = runtime
        return runtime


def _split(runtime: Runtime, batch: Batch) -> tuple[Any, np.ndarray, list[str]]:
    """The final estimator, the transformed row and its feature names."""
    frame = batch.frame()
    estimator, preprocess = runtime.estimator, runtime.preprocess
    if preprocess is None and hasattr(estimator, "steps") and len(estimator.steps) > 1:
        preprocess, estimator = estimator[:-1], estimator.steps[-1][1]
    elif hasattr(estimator, "steps"):
        estimator = estimator.steps[-1][1]
    if preprocess is None:
        return estimator, frame.to_numpy(dtype=float), list(frame.columns)
    matrix = preprocess.transform(frame)
    matrix = matrix.toarray() if hasattr(matrix, "toarray") else np.asarray(matrix)
    try:
        names = [str(n) for n in preprocess.get_feature_names_out()]
    except Exception:  # a step that cannot name its outputs
        names = [f"x{i}" for i in range(matrix.shape[1])]
    return estimator, np.asarray(matrix, dtype=float), names


def _contributions(estimator: Any, x: np.ndarray, class_index: int | None) -> tuple[np.ndarray, float, str]:
    kind = type(estimator).__name__
    if kind.startswith(_TREES):
        import shap

        explainer = shap.TreeExplainer(estimator)
        values = np.asarray(explainer.shap_values(x))
        base = np.atleast_1d(np.asarray(explainer.expected_value, dtype=float))
        if values.ndim == 3:  # (rows, features, classes)
            c = class_index if class_index is not None and class_index < values.shape[2] else -1
            return values[0, :, c], float(base[c] if base.size > 1 else base[0]), "shap.TreeExplainer"
        c = class_index if base.size > 1 and class_index is not None else 0
        return values[0], float(base[min(c, base.size - 1)]), "shap.TreeExplainer"
    if hasattr(estimator, "coef_"):
        coef = np.atleast_2d(np.asarray(estimator.coef_, dtype=float))
        intercept = np.atleast_1d(np.asarray(getattr(estimator, "intercept_", 0.0), dtype=float))
        row = 0 if coef.shape[0] == 1 or class_index is None else min(class_index, coef.shape[0] - 1)
        return coef[row] * x[0], float(intercept[min(row, intercept.size - 1)]), "linear coef*x"
    raise RequestError(f"explanations need a tree or linear model; this version's model is a {kind}")


def input_of(feature: str, inputs: list[str]) -> str:
    """The input column a transformed feature comes from (``numeric__age`` → ``age``).

    Example:
        >>> input_of("categorical__country_NL", ["amount", "country"]), input_of("x3", ["a"])
        ('country', 'x3')
    """
    bare = feature.split("__", 1)[1] if "__" in feature else feature
    if bare in inputs:
        return bare
    matches = [name for name in inputs if bare.startswith(f"{name}_")]  # one-hot: <column>_<category>
    return max(matches, key=len) if matches else bare


def explain_record(
    cache: ModelCache, loaded: LoadedModel, batch: Batch, top: int = TOP_FACTORS
) -> dict[str, Any]:
    """The top factors of one record's prediction (see the module docs)."""
    if batch.rows != 1:
        raise RequestError(f"explain takes exactly one record, got {batch.rows}")
    runtime = _native_runtime(cache, loaded)
    prediction = runtime.predict(batch)
    estimator, x, names = _split(runtime, batch)
    class_index = None
    if prediction.probabilities is not None:
        class_index = int(np.argmax(prediction.probabilities[0]))
    values, base, method = _contributions(estimator, x, class_index)
    order = np.argsort(-np.abs(values))[:top]
    inputs = list(batch.frame().columns)
    factors = [
        {
            "feature": names[i],
            "input": input_of(names[i], inputs),
            "value": float(x[0, i]),
            "contribution": float(values[i]),
        }
        for i in order
    ]
    label = prediction.values[0] if prediction.values is not None else prediction.labels[0]  # type: ignore[index]
    return {
        "model": loaded.model,
        "model_version": str(loaded.version),
        "prediction": label.item() if hasattr(label, "item") else label,
        "base_value": base,
        "method": method,
        "factors": factors,
    }
