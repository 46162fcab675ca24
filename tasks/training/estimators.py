"""Estimators by name: ``model_class`` in a pipeline config → an unfitted scikit-learn estimator.

Built-in names pick the classifier or regressor for the task
(``RandomForest``, ``LogisticRegression``, ``GradientBoosting``,
``HistGradientBoosting``, ``XGBClassifier``/``XGBRegressor``, ``TabularMLP``,
``KerasMLP``: the Keras network of :mod:`tasks.training.keras_mlp`);
anything else is an import path ``package.module:Class`` of a scikit-learn
compatible estimator. The PyTorch network is wrapped as a scikit-learn
estimator (:class:`TorchMLPClassifier`, :class:`TorchMLPRegressor`) so Optuna's
``set_params``, cross-validation and the pipeline treat it like any other.

Example:
    >>> type(build_estimator("RandomForest", "classification", {"n_estimators": 5}, seed=0)).__name__
    'RandomForestClassifier'
    >>> framework_of("XGBRegressor", "sklearn")
    'xgboost'
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin

from storage.errors import ValidationError

BUILTIN = {
    "RandomForest": ("sklearn.ensemble:RandomForestClassifier", "sklearn.ensemble:RandomForestRegressor"),
    "LogisticRegression": ("sklearn.linear_model:LogisticRegression", None),
    "LinearRegression": (None, "sklearn.linear_model:LinearRegression"),
    "Ridge": (None, "sklearn.linear_model:Ridge"),
    "GradientBoosting": (
        "sklearn.ensemble:GradientBoostingClassifier",
        "sklearn.ensemble:GradientBoostingRegressor",
    ),
    "HistGradientBoosting": (
        "sklearn.ensemble:HistGradientBoostingClassifier",
        "sklearn.ensemble:HistGradientBoostingRegressor",
    ),
    "XGBClassifier": ("xgboost:XGBClassifier", None),
    "XGBRegressor": (None, "xgboost:XGBRegressor"),
    "XGBoost": ("xgboost:XGBClassifier", "xgboost:XGBRegressor"),
    "TabularMLP": (
        "tasks.training.estimators:TorchMLPClassifier",
        "tasks.training.estimators:TorchMLPRegressor",
    ),
    "KerasMLP": ("tasks.training.keras_mlp:KerasMLPClassifier", "tasks.training.keras_mlp:KerasMLPRegressor"),
}
SEED_PARAMS = ("random_state", "seed")


def _import(path: str) -> type:
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise ValidationError(f"model_class {path!r} is not an import path of the form package.module:Class")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValidationError(f"model_class {path!r}: cannot import {module_name!r} ({exc})") from exc
    found = getattr(module, attr, None)
    if not isinstance(found, type):
        raise ValidationError(f"model_class {path!r}: {module_name} has no class {attr!r}")
    return found


def estimator_class(model_class: str, task: str) -> type:
    """The estimator class for ``model_class`` and ``task``; an error naming the class otherwise.

    Example:
        >>> try:
        ...     estimator_class("RandomForrest", "classification")
        ... except ValidationError as exc:
        ...     print(str(exc)[:40])
        unknown model_class 'RandomForrest'; use
    """
    if model_class in BUILTIN:
        path = BUILTIN[model_class][0 if task == "classification" else 1]
        if path is None:
            raise ValidationError(f"model_class {model_class!r} does not support {task}")
        return _import(path)
    if ":" not in model_class:
        known = ", ".join(BUILTIN)
        raise ValidationError(
            f"unknown model_class {model_class!r}; use one of {known} or package.module:Class"
        )
    cls = _import(model_class)
    if not (hasattr(cls, "fit") and hasattr(cls, "get_params")):
        raise ValidationError(
            f"model_class {model_class!r} is not a scikit-learn estimator (fit, get_params)"
        )
    return cls


def framework_of(model_class: str, model_type: str) -> str:
    """The version's ``framework``: sklearn, xgboost, pytorch, keras or custom."""
    if model_class.startswith("XGB") or model_class.startswith("xgboost"):
        return "xgboost"
    if model_class == "KerasMLP" or model_type == "keras":
        return "keras"
    if model_class == "TabularMLP" or model_type == "pytorch":
        return "pytorch"
    if model_class in BUILTIN:
        return "sklearn"
    return "custom" if model_type == "custom" or not model_class.startswith("sklearn.") else "sklearn"


def build_estimator(
    model_class: str,
    task: str,
    params: Mapping[str, Any] | None = None,
    *,
    seed: int | None = None,
    device: str = "auto",
) -> Any:
    """An unfitted estimator with ``params`` (and ``seed`` where it takes one); errors name bad params."""
    cls = estimator_class(model_class, task)
    estimator = cls()
    valid = estimator.get_params(deep=False)
    settings = dict(params or {})
    unknown = [k for k in settings if k not in valid]
    if unknown:
        raise ValidationError(
            f"model_class {model_class!r} has no parameter(s) {', '.join(map(repr, unknown))}"
        )
    for key in SEED_PARAMS:
        if seed is not None and key in valid and key not in settings:
            settings[key] = seed
    if "device" in valid and "device" not in settings and isinstance(estimator, _TorchMLP):
        settings["device"] = device
    if model_class.startswith("XGB") or model_class == "XGBoost":
        settings.setdefault("n_jobs", 1)
    return estimator.set_params(**settings)


def resolve_device(device: str) -> str:
    """``auto`` → ``cuda`` when a GPU is visible, else ``cpu``; ``cuda`` without one is an error."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ValidationError("device 'cuda' was asked for but no CUDA device is available")
    return device


class _TorchMLP(BaseEstimator):
    """Shared training loop of the PyTorch estimators (Adam, mini-batches, fixed seed)."""

    _task = "classification"

    def __init__(
        self,
        hidden_dims: Sequence[int] = (64, 32),
        dropout: float = 0.0,
        epochs: int = 30,
        batch_size: int = 64,
        lr: float = 1e-2,
        weight_decay: float = 0.0,
        device: str = "auto",
        random_state: int = 0,
    ) -> None:
        self.hidden_dims = hidden_dims
        self.dropout = dropout
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.device = device
        self.random_state = random_state

    def architecture(self) -> dict[str, Any]:
        """The keyword arguments of the fitted network (``model_config.json``)."""
        return {
            "n_features": int(self.n_features_in_),
            "n_outputs": int(self.n_outputs_),
            "hidden_dims": [int(h) for h in self.hidden_dims],
            "dropout": float(self.dropout),
            "task": self._task,
        }

    def _fit(self, X: Any, target: np.ndarray, n_outputs: int) -> None:
        import torch

        from storage.registry.torch_mlp import TabularMLP

        data = np.asarray(X, dtype=np.float32)
        self.n_features_in_ = data.shape[1]
        self.n_outputs_ = n_outputs
        self.device_ = resolve_device(self.device)
        generator = torch.Generator().manual_seed(int(self.random_state))
        torch.manual_seed(int(self.random_state))
        module = TabularMLP(**self.architecture()).to(self.device_)
        xs = torch.as_tensor(data, device=self.device_)
        is_cls = self._task == "classification"
        ys = torch.as_tensor(target, dtype=torch.long if is_cls else torch.float32, device=self.device_)
        loss_fn: Any = torch.nn.CrossEntropyLoss() if is_cls else torch.nn.MSELoss()
        opt = torch.optim.Adam(module.parameters(), lr=float(self.lr), weight_decay=float(self.weight_decay))
        module.train()
        for _ in range(int(self.epochs)):
            order = torch.randperm(len(xs), generator=generator).to(self.device_)
            for start in range(0, len(xs), int(self.batch_size)):
                idx = order[start : start + int(self.batch_size)]
                opt.zero_grad()
                out = module(xs[idx])
                loss = loss_fn(out, ys[idx]) if is_cls else loss_fn(out[:, 0], ys[idx])
                loss.backward()
                opt.step()
        module.eval()
        self.module_ = module.to("cpu")

    def _output(self, X: Any) -> np.ndarray:
        from storage.registry.torch_mlp import predict_output

        return predict_output(self.module_, np.asarray(X, dtype=np.float32))


class TorchMLPClassifier(ClassifierMixin, _TorchMLP):
    """The PyTorch tabular MLP as a scikit-learn classifier.

    Example:
        >>> X = np.array([[0.0], [0.1], [0.9], [1.0]] * 5)
        >>> clf = TorchMLPClassifier(hidden_dims=[8], epochs=30, device="cpu").fit(X, [0, 0, 1, 1] * 5)
        >>> clf.predict(np.array([[0.0], [1.0]])).tolist()
        [0, 1]
    """

    _task = "classification"

    def fit(self, X: Any, y: Any) -> TorchMLPClassifier:
        """Train; ``classes_`` are the sorted distinct labels."""
        self.classes_, codes = np.unique(np.asarray(y), return_inverse=True)
        self._fit(X, codes.astype(np.int64), len(self.classes_))
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities ``[N, C]``."""
        return self._output(X)

    def predict(self, X: Any) -> np.ndarray:
        """The most probable class."""
        return np.asarray(self.classes_[np.argmax(self._output(X), axis=1)])


class TorchMLPRegressor(RegressorMixin, _TorchMLP):
    """The PyTorch tabular MLP as a scikit-learn regressor.

    The target is standardized while training; the scale is then folded into the
    last layer, so the network alone (``model.pt``) predicts in the target's units.

    Example:
        >>> X = np.linspace(0, 1, 40).reshape(-1, 1)
        >>> reg = TorchMLPRegressor(hidden_dims=[16], epochs=60, device="cpu").fit(X, 3 * X[:, 0])
        >>> bool(abs(reg.predict(np.array([[0.5]]))[0] - 1.5) < 0.3)
        True
    """

    _task = "regression"

    def fit(self, X: Any, y: Any) -> TorchMLPRegressor:
        """Train on ``(y - mean) / std``, then fold mean and std into the output layer."""
        import torch

        target = np.asarray(y, dtype=np.float64)
        self.y_mean_ = float(target.mean())
        self.y_scale_ = float(target.std()) or 1.0
        self._fit(X, ((target - self.y_mean_) / self.y_scale_).astype(np.float32), 1)
        last: Any = self.module_.net[-1]
        with torch.no_grad():
            last.weight.mul_(self.y_scale_)
            last.bias.mul_(self.y_scale_).add_(self.y_mean_)
        return self

    def predict(self, X: Any) -> np.ndarray:
        """Predictions in the target's units."""
        return self._output(X)
