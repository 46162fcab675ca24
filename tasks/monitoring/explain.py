"""Explanations of single predictions (SHAP, LIME) and global feature importance.

Which SHAP explainer a model gets (``kind="auto"``), and which output it explains:

- sklearn GradientBoosting*, HistGradientBoosting*, XGBoost classifiers:
  ``shap.TreeExplainer``, log-odds (the margin);
- sklearn RandomForest*, ExtraTrees*, DecisionTree* classifiers: ``shap.TreeExplainer``, probability;
- any of those tree models as a regressor: ``shap.TreeExplainer``, raw prediction;
- sklearn linear models (LogisticRegression, LinearRegression, Ridge, Lasso, SGD...):
  ``shap.LinearExplainer``, log-odds for classifiers, raw for regressors;
- anything else (SVC, KNN, MLP, a custom ``predict``): ``shap.KernelExplainer`` (or
  ``kind="permutation"``), the probability if the model has ``predict_proba``, else the
  decision function of a classifier, else the raw prediction.

The tree explainer runs ``tree_path_dependent`` (no background needed), so SHAP
values plus the expected value equal the model's output exactly; a model shap's
TreeExplainer rejects (a multiclass GradientBoostingClassifier) falls back to the
kernel explainer under ``kind="auto"``. The linear
explainer uses the background's mean: the contribution of feature *j* is
``coef_j * (x_j - mean_j)``. The fallback summarises the background to at most
``max_background`` rows; its values are exact for that background up to the
sampling of coalitions (``nsamples``), and still add up to the output.

A :class:`sklearn.pipeline.Pipeline` ending in a tree or linear model is explained
*in the transformed space*, factors named by ``get_feature_names_out()`` (with a
``StandardScaler`` those are the input names, and a factor's ``value`` is the input
value). If the steps cannot name their outputs, or the last step is neither, the
whole pipeline goes to the model-agnostic fallback in the input space.

For a classifier with more than two classes a single prediction is explained
for its predicted class (or ``class_index``); global importance averages
mean |SHAP| over the classes.

:meth:`Explainer.explainer_config` is what a model version stores in ``extra["explainer"]``
(the compliance rule ``explainer_configured`` reads that key); the caller writes
it, this module never touches the registry.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from storage.errors import ValidationError
from storage.registry.records import Record

Kind = Literal["auto", "tree", "linear", "kernel", "permutation"]

_TREE_PREFIXES = ("DecisionTree", "ExtraTree", "RandomForest", "GradientBoosting", "HistGradientBoosting")
_TREE_OUTPUT = {"log_odds": "log-odds", "probability": "probability"}  # else "raw_value": a margin
_SHAP_KIND = {kind: f"shap.{kind.title()}Explainer" for kind in ("tree", "linear", "kernel", "permutation")}


@dataclass(frozen=True)
class Explainer:
    """A fitted SHAP explainer and what it explains (see :func:`make_explainer`)."""

    kind: str
    output: str
    estimator: Any = field(repr=False)
    model: Any = field(repr=False)
    shap_explainer: Any = field(repr=False)
    feature_names: tuple[str, ...]
    input_names: tuple[str, ...]
    space: str
    background_rows: int
    output_fn: Callable[[pd.DataFrame], np.ndarray] = field(repr=False)
    nsamples: int | str = "auto"
    class_index: int | None = None
    transform: Callable[[pd.DataFrame], pd.DataFrame] | None = field(default=None, repr=False)

    def explainer_config(self) -> dict[str, Any]:
        """The JSON-ready settings a model version stores in ``extra["explainer"]``."""
        import shap

        return {
            "kind": _SHAP_KIND[self.kind],
            "library": f"shap {shap.__version__}",
            "output": self.output,
            "model": type(self.model).__name__,
            "space": self.space,
            "features": list(self.feature_names),
            "background_rows": self.background_rows,
            "nsamples": self.nsamples,
            "class_index": self.class_index,
        }

    def to_dict(self) -> dict[str, Any]:
        """Same as :meth:`explainer_config`."""
        return self.explainer_config()


@dataclass(frozen=True)
class Factor(Record):
    """One feature's part in a prediction; ``direction`` is ``increases``, ``decreases`` or ``none``."""

    feature: str
    value: Any
    contribution: float
    direction: str
    rule: str | None = None


@dataclass(frozen=True)
class Explanation(Record):
    """A single prediction explained: ``base_value + total() + rest == model_output`` for SHAP."""

    kind: str
    output: str
    base_value: float
    model_output: float
    factors: tuple[Factor, ...]
    rest: float
    label: Any = None

    def total(self) -> float:
        """The sum of the top factors' contributions."""
        return float(sum(f.contribution for f in self.factors))


def _is_tree(model: Any) -> bool:
    module = type(model).__module__
    if module.startswith(("xgboost", "lightgbm", "catboost")):
        return True
    return module.startswith("sklearn.") and type(model).__name__.startswith(_TREE_PREFIXES)


def _is_linear(model: Any) -> bool:
    return type(model).__module__.startswith("sklearn.linear_model") and hasattr(model, "coef_")


def _is_classifier(model: Any) -> bool:
    return hasattr(model, "classes_")


def _names_of(estimator: Any, background: pd.DataFrame | np.ndarray) -> tuple[str, ...]:
    if isinstance(background, pd.DataFrame):
        return tuple(str(c) for c in background.columns)
    names = getattr(estimator, "feature_names_in_", None)
    if names is not None:
        return tuple(str(n) for n in names)
    return tuple(f"x{i}" for i in range(np.asarray(background).shape[1]))


def _frame(data: Mapping[str, Any] | pd.DataFrame | np.ndarray, names: tuple[str, ...]) -> pd.DataFrame:
    """Rows as a frame with exactly ``names``; a ValidationError names what does not fit."""
    if isinstance(data, Mapping):
        data = pd.DataFrame([dict(data)])
    elif isinstance(data, np.ndarray):
        if np.atleast_2d(data).ndim != 2 or np.atleast_2d(data).shape[1] != len(names):
            raise ValidationError(f"expected {len(names)} features {list(names)}, got shape {data.shape}")
        data = pd.DataFrame(np.atleast_2d(data), columns=list(names))
    if not isinstance(data, pd.DataFrame):
        raise ValidationError(f"features must be a mapping or a DataFrame, not {type(data).__name__}")
    columns = [str(c) for c in data.columns]
    unknown = [c for c in columns if c not in names]
    if unknown:
        raise ValidationError(f"unknown feature(s) {unknown}; the model takes {list(names)}")
    missing = [n for n in names if n not in columns]
    if missing:
        raise ValidationError(f"missing feature(s) {missing}")
    frame = data.set_axis(columns, axis=1)[list(names)]
    for name in names:
        try:
            frame[name].astype(float)
        except (TypeError, ValueError) as exc:
            raise ValidationError(f"feature {name!r} is not numeric: {frame[name].tolist()[:3]}") from exc
    return frame.astype(float)


def _plain(value: Any) -> Any:
    """A numpy scalar as a plain Python value (JSON-ready); anything else as it is."""
    return value.item() if isinstance(value, np.generic) else value


def _factor(feature: str, value: float, contribution: float, rule: str | None = None) -> Factor:
    direction = "increases" if contribution > 0 else "decreases" if contribution < 0 else "none"
    return Factor(feature, float(value), float(contribution), direction, rule)


def _on_arrays(fn: Callable[[pd.DataFrame], Any], names: tuple[str, ...]) -> Callable[..., np.ndarray]:
    """``fn`` of a frame, called with the arrays SHAP's and LIME's samplers pass."""
    return lambda a: np.asarray(fn(pd.DataFrame(np.asarray(a, dtype=float), columns=list(names))))


def _output_fn(model: Any, output: str) -> Callable[[pd.DataFrame], np.ndarray]:
    if output == "log-odds" and type(model).__module__.startswith("xgboost"):
        return lambda X: np.asarray(model.predict(X, output_margin=True))
    named = getattr(model, "feature_names_in_", None) is not None
    fn = getattr(model, {"probability": "predict_proba", "raw": "predict"}.get(output, "decision_function"))
    return lambda X: np.asarray(fn(X if named else X.to_numpy()))


def _model_space(
    estimator: Any, kind: str, names: tuple[str, ...]
) -> tuple[Any, Callable[[pd.DataFrame], pd.DataFrame] | None, tuple[str, ...]]:
    """A Pipeline ending in a tree or linear model: its last step, the transform before it, its names."""
    last = estimator.steps[-1][1] if getattr(estimator, "steps", None) else None
    if last is None or kind in ("kernel", "permutation") or not (_is_tree(last) or _is_linear(last)):
        return estimator, None, names
    head = estimator[:-1]
    try:
        out_names = tuple(str(n) for n in head.get_feature_names_out())
    except (AttributeError, ValueError, TypeError):
        return estimator, None, names

    def to_model_space(X: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame(np.asarray(head.transform(X), dtype=float), columns=list(out_names))

    return last, to_model_space, out_names


def make_explainer(
    estimator: Any,
    background: pd.DataFrame | np.ndarray,
    *,
    kind: Kind = "auto",
    max_background: int = 50,
    nsamples: int | str = "auto",
    class_index: int | None = None,
    seed: int = 0,
) -> Explainer:
    """A SHAP explainer for a fitted estimator (tree, linear, or model-agnostic).

    Args:
        estimator: A fitted sklearn/XGBoost model or a Pipeline ending in one.
        background: Training-like rows (column names are the feature names).
        kind: ``auto`` picks by model type; ``tree``, ``linear``, ``kernel``, ``permutation`` force one.
        max_background: Rows of background kept for the kernel/permutation fallback (a random sample).
        nsamples: Coalitions per row for ``kernel`` (``"auto"``: 2·features + 2048); ``max_evals`` for
            ``permutation`` (``"auto"``: 2·features + 1, the fewest it takes).
        class_index: Class to explain where the model has one output per class; ``None``: class 1 of
            two, else the predicted class. A binary margin (log-odds) is always that of class 1.
        seed: Seed of the background sample.

    Returns:
        An :class:`Explainer`; ``explainer.explainer_config()`` is what a version stores.

    Raises:
        ValidationError: An empty background, or a ``kind`` the model does not support.

    Example:
        >>> from sklearn.datasets import load_diabetes
        >>> from sklearn.linear_model import Ridge
        >>> X, y = load_diabetes(return_X_y=True, as_frame=True)
        >>> e = make_explainer(Ridge().fit(X, y), X)
        >>> e.kind, e.output, e.explainer_config()["kind"]
        ('linear', 'raw', 'shap.LinearExplainer')
    """
    import shap

    input_names = _names_of(estimator, background)
    frame = _frame(background, input_names)
    if frame.empty:
        raise ValidationError("the background has no rows")
    model, transform, names = _model_space(estimator, kind, input_names)
    if kind != "auto" and kind not in _SHAP_KIND:
        raise ValidationError(f"unknown explainer kind {kind!r}; use auto or one of {list(_SHAP_KIND)}")
    auto = kind == "auto"
    kind = ("tree" if _is_tree(model) else "linear" if _is_linear(model) else "kernel") if auto else kind
    if kind in ("tree", "linear") and model is estimator and hasattr(estimator, "steps"):
        raise ValidationError(f"cannot use a {kind} explainer on this pipeline; use kind='kernel'")
    if (kind == "tree" and not _is_tree(model)) or (kind == "linear" and not _is_linear(model)):
        raise ValidationError(f"{type(model).__name__} is not a {kind} model")
    data, classifier = transform(frame) if transform else frame, _is_classifier(model)
    if kind == "tree":
        try:
            explainer = shap.TreeExplainer(model, feature_perturbation="tree_path_dependent")
            output = _TREE_OUTPUT.get(explainer.model.tree_output, "log-odds") if classifier else "raw"
        except Exception as exc:  # shap's InvalidModelError, e.g. a multiclass GradientBoostingClassifier
            if not auto:
                raise ValidationError(f"shap.TreeExplainer rejects {type(model).__name__}: {exc}") from exc
            kind = "kernel"
    if kind == "linear":
        explainer = shap.LinearExplainer(model, shap.maskers.Independent(data, max_samples=len(data)))
        output = "log-odds" if classifier else "raw"
    elif kind in ("kernel", "permutation"):
        output = (
            "probability" if hasattr(model, "predict_proba") else "decision-function" if classifier else "raw"
        )
        if len(data) > max_background:
            data = data.sample(max_background, random_state=seed)
        predict = _on_arrays(_output_fn(model, output), names)
        if kind == "kernel":
            explainer = shap.KernelExplainer(predict, data.to_numpy())
        else:
            masker = shap.maskers.Independent(data.to_numpy(), max_samples=len(data))
            explainer = shap.PermutationExplainer(predict, masker, seed=seed)
    return Explainer(
        kind=kind,
        output=output,
        estimator=estimator,
        model=model,
        shap_explainer=explainer,
        feature_names=names,
        input_names=input_names,
        space="input" if transform is None else "transformed",
        background_rows=0 if kind == "tree" else len(data),
        nsamples=nsamples,
        class_index=class_index,
        transform=transform,
        output_fn=_output_fn(model, output),
    )


def _shap_values(explainer: Explainer, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """SHAP values as (rows, features[, classes]) and base values as (classes,) or (1,)."""
    e = explainer.shap_explainer
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if explainer.kind == "kernel":
            values = e.shap_values(X.to_numpy(), nsamples=explainer.nsamples, silent=True)
            base = e.expected_value
        elif explainer.kind == "permutation":
            evals = 2 * X.shape[1] + 1 if explainer.nsamples == "auto" else int(explainer.nsamples)
            result = e(X.to_numpy(), max_evals=max(evals, 2 * X.shape[1] + 1), silent=True)
            values, base = result.values, np.asarray(result.base_values)[0]
        else:
            values, base = e.shap_values(X), e.expected_value
    if isinstance(values, list):
        values = np.stack(values, axis=-1)
    return np.asarray(values, dtype=float), np.atleast_1d(np.asarray(base, dtype=float))


def _class_of(explainer: Explainer, outputs: np.ndarray) -> int | None:
    if outputs.ndim == 1:
        return None
    if explainer.class_index is not None:
        return explainer.class_index
    return 1 if outputs.shape[1] == 2 else int(np.argmax(outputs[0]))


def explain_prediction(
    explainer: Explainer, features: Mapping[str, Any] | pd.DataFrame, *, top: int = 5
) -> Explanation:
    """The top factors behind one prediction, by |SHAP value|.

    Args:
        explainer: From :func:`make_explainer`.
        features: One row: a mapping of feature name to value, or a one-row DataFrame.
        top: How many factors to keep; the others' sum is ``rest``.

    Returns:
        An :class:`Explanation` whose ``base_value + total() + rest`` is ``model_output``.

    Raises:
        ValidationError: An unknown or missing feature, a non-numeric value, or not exactly one row.

    Example:
        >>> from sklearn.datasets import load_breast_cancer
        >>> from sklearn.ensemble import GradientBoostingClassifier
        >>> X, y = load_breast_cancer(return_X_y=True, as_frame=True)
        >>> X, y = X.iloc[:150, :5], y.iloc[:150]
        >>> model = GradientBoostingClassifier(n_estimators=10, random_state=0).fit(X, y)
        >>> explainer = make_explainer(model, X)
        >>> explainer.explainer_config()["kind"], explainer.output
        ('shap.TreeExplainer', 'log-odds')
        >>> r = explain_prediction(explainer, X.iloc[0].to_dict(), top=2)
        >>> len(r.factors), abs(r.base_value + r.total() + r.rest - r.model_output) < 1e-6
        (2, True)
    """
    frame = _frame(features, explainer.input_names)
    if len(frame) != 1:
        raise ValidationError(f"explain_prediction takes exactly one row, got {len(frame)}")
    X = explainer.transform(frame) if explainer.transform else frame
    values, base = _shap_values(explainer, X)
    outputs = explainer.output_fn(X)
    k = _class_of(explainer, outputs)
    row = values[0] if values.ndim == 2 else values[0, :, k if k is not None else -1]
    base_value = float(base[0] if values.ndim == 2 else base[k if k is not None else -1])
    model_output = float(outputs[0] if k is None else outputs[0, k])
    classes = getattr(explainer.model, "classes_", None)
    label = None
    if classes is not None and (k is not None or len(classes) == 2):
        label = _plain(classes[k if k is not None else 1])
    order = np.argsort(-np.abs(row), kind="stable")[: max(top, 0)]
    names = explainer.feature_names
    shown = [frame.iloc[0][names[j]] if names[j] in frame.columns else X.iloc[0, j] for j in order]
    factors = tuple(_factor(names[j], value, row[j]) for j, value in zip(order, shown, strict=True))
    rest = float(row.sum() - sum(f.contribution for f in factors))
    return Explanation(
        kind=_SHAP_KIND[explainer.kind],
        output=explainer.output,
        base_value=base_value,
        model_output=model_output,
        factors=factors,
        rest=rest,
        label=label,
    )


def global_importance(
    explainer: Explainer, data: pd.DataFrame | np.ndarray, *, max_rows: int = 2000, seed: int = 0
) -> dict[str, float]:
    """Mean |SHAP value| per feature over ``data`` (a sample of ``max_rows``), largest first.

    Example:
        >>> from sklearn.datasets import load_diabetes
        >>> from sklearn.ensemble import RandomForestRegressor
        >>> X, y = load_diabetes(return_X_y=True, as_frame=True)
        >>> X, y = X.iloc[:100, :4], y.iloc[:100]
        >>> e = make_explainer(RandomForestRegressor(n_estimators=5, random_state=0).fit(X, y), X)
        >>> imp = global_importance(e, X)
        >>> list(imp) == sorted(imp, key=imp.get, reverse=True), len(imp)
        (True, 4)
    """
    frame = _frame(data, explainer.input_names)
    if frame.empty:
        raise ValidationError("no rows to compute global importance on")
    if len(frame) > max_rows:
        frame = frame.sample(max_rows, random_state=seed)
    X = explainer.transform(frame) if explainer.transform else frame
    values, _ = _shap_values(explainer, X)
    mean_abs = np.abs(values).mean(axis=0).reshape(len(explainer.feature_names), -1).mean(axis=1)
    pairs = sorted(zip(explainer.feature_names, mean_abs.tolist(), strict=True), key=lambda p: -p[1])
    return {name: float(value) for name, value in pairs}


def lime_explanation(
    estimator: Any,
    training_data: pd.DataFrame | np.ndarray,
    features: Mapping[str, Any] | pd.DataFrame,
    *,
    num_features: int = 5,
    num_samples: int = 500,
    seed: int = 0,
    class_index: int | None = None,
) -> Explanation:
    """A LIME explanation of one prediction (classification or regression), deterministic for a seed.

    Classifiers explain the probability of ``class_index`` (class 1 of two, else the predicted class);
    ``base_value`` is the local linear model's intercept, ``model_output`` the model's own output.

    Example:
        >>> from sklearn.datasets import load_diabetes
        >>> from sklearn.linear_model import Ridge
        >>> X, y = load_diabetes(return_X_y=True, as_frame=True)
        >>> r = lime_explanation(Ridge().fit(X, y), X, X.iloc[[0]], num_features=3, num_samples=200)
        >>> r.kind, len(r.factors)
        ('lime.LimeTabularExplainer', 3)
    """
    from lime.lime_tabular import LimeTabularExplainer

    names = _names_of(estimator, training_data)
    train = _frame(training_data, names)
    frame = _frame(features, names)
    if len(frame) != 1:
        raise ValidationError(f"lime_explanation takes exactly one row, got {len(frame)}")
    classifier = _is_classifier(estimator)
    if classifier and not hasattr(estimator, "predict_proba"):
        raise ValidationError(f"LIME needs predict_proba; {type(estimator).__name__} has none")
    predict = _on_arrays(estimator.predict_proba if classifier else estimator.predict, names)
    mode = "classification" if classifier else "regression"
    lime = LimeTabularExplainer(train.to_numpy(), feature_names=list(names), mode=mode, random_state=seed)
    row = frame.to_numpy()[0]
    output = predict(row[None, :])[0]
    key = 1  # LIME files a regression under label 1
    if classifier:
        key = class_index if class_index is not None else 1 if len(output) == 2 else int(np.argmax(output))
    result = lime.explain_instance(
        row, predict, labels=(key,), num_features=num_features, num_samples=num_samples
    )
    pairs = zip(result.as_map()[key], result.as_list(label=key), strict=True)
    return Explanation(
        kind="lime.LimeTabularExplainer",
        output="probability" if classifier else "raw",
        base_value=float(result.intercept[key]),
        model_output=float(output[key] if classifier else output),
        factors=tuple(_factor(names[j], row[j], w, rule) for (j, w), (rule, _) in pairs),
        rest=0.0,
        label=_plain(estimator.classes_[key]) if classifier else None,
    )


@task(name="explain-prediction", cache_policy=NO_CACHE)
def explain_prediction_task(
    estimator: Any, background: pd.DataFrame, features: Mapping[str, Any] | pd.DataFrame, *, top: int = 5
) -> dict[str, Any]:
    """Prefect task: :func:`explain_prediction` as a JSON-ready dict (for an explain endpoint)."""
    return explain_prediction(make_explainer(estimator, background), features, top=top).to_dict()


@task(name="explainer-for-version", cache_policy=NO_CACHE)
def explainer_for_version_task(
    estimator: Any, background: pd.DataFrame, *, kind: Kind = "auto", max_rows: int = 2000
) -> dict[str, Any]:
    """Prefect task: ``{"explainer": config, "global_importance": ...}`` for a version's ``extra``."""
    explainer = make_explainer(estimator, background, kind=kind)
    return {
        "explainer": explainer.explainer_config(),
        "global_importance": global_importance(explainer, background, max_rows=max_rows),
    }
