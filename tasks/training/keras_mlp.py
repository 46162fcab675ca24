"""The Keras tabular network (``model_type: keras``) as scikit-learn estimators.

:class:`KerasMLPClassifier` and :class:`KerasMLPRegressor` build the same
network as the PyTorch ``TabularMLP`` (dense layers with ReLU and dropout,
logits or values out) with Keras 3, on the torch backend unless
``KERAS_BACKEND`` names another (see :mod:`storage.registry.keras_model`).
They follow scikit-learn's estimator contract (parameters in ``__init__``,
``fit`` returns ``self``, learned state ends in ``_``), so Optuna's
``set_params``, cross-validation, the ``Pipeline`` and the ONNX export treat
them like any other model. ``module_`` is the fitted Keras model (logits for
classifiers; a regressor's target scale is folded into its last layer).

Example:
    >>> X = np.array([[0.0], [0.1], [0.9], [1.0]] * 5)
    >>> clf = KerasMLPClassifier(hidden_dims=[8], epochs=40, batch_size=8).fit(X, [0, 0, 1, 1] * 5)
    >>> clf.predict(np.array([[0.0], [1.0]])).tolist()
    [0, 1]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin

from storage.registry.keras_model import keras_module, keras_predict


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64.

    >>> softmax(np.array([[0.0, 0.0]])).tolist()
    [[0.5, 0.5]]
    """
    z = np.asarray(logits, dtype=np.float64)
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return np.asarray(z / z.sum(axis=1, keepdims=True))


class _KerasMLP(BaseEstimator):
    """Shared network and training loop (Adam, mini-batches, fixed seed)."""

    _task = "classification"

    def __init__(
        self,
        hidden_dims: Sequence[int] = (64, 32),
        dropout: float = 0.0,
        epochs: int = 30,
        batch_size: int = 64,
        lr: float = 1e-2,
        weight_decay: float = 0.0,
        random_state: int = 0,
    ) -> None:
        self.hidden_dims = hidden_dims
        self.dropout = dropout
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.random_state = random_state

    def _network(self, n_features: int, n_outputs: int) -> Any:
        keras = keras_module()
        inputs = keras.Input(shape=(n_features,), name="features")
        x = inputs
        for hidden in self.hidden_dims:
            x = keras.layers.Dense(int(hidden), activation="relu")(x)
            if self.dropout > 0:
                x = keras.layers.Dropout(float(self.dropout))(x)
        return keras.Model(inputs, keras.layers.Dense(int(n_outputs), name="output")(x))

    def _fit(self, X: Any, target: np.ndarray, n_outputs: int) -> None:
        keras = keras_module()
        data = np.asarray(X, dtype=np.float32)
        self.n_features_in_ = data.shape[1]
        self.n_outputs_ = n_outputs
        keras.utils.set_random_seed(int(self.random_state))
        model = self._network(self.n_features_in_, n_outputs)
        classification = self._task == "classification"
        loss: Any = (
            keras.losses.SparseCategoricalCrossentropy(from_logits=True)
            if classification
            else keras.losses.MeanSquaredError()
        )
        decay = float(self.weight_decay) or None
        optimizer = keras.optimizers.Adam(learning_rate=float(self.lr), weight_decay=decay)
        model.compile(optimizer=optimizer, loss=loss)
        model.fit(
            data, target, epochs=int(self.epochs), batch_size=int(self.batch_size), shuffle=True, verbose=0
        )
        self.module_ = model

    def _output(self, X: Any) -> np.ndarray:
        return keras_predict(self.module_, np.asarray(X, dtype=np.float32))

    def serving_model(self) -> Any:
        """The model the version's ``model.keras`` holds: probabilities (softmax) or values out."""
        if self._task != "classification":
            return self.module_
        keras = keras_module()
        probs = keras.layers.Softmax(name="probabilities")(self.module_.outputs[0])
        return keras.Model(self.module_.inputs, probs)


class KerasMLPClassifier(ClassifierMixin, _KerasMLP):
    """The Keras tabular network as a scikit-learn classifier (``classes_`` sorted)."""

    _task = "classification"

    def fit(self, X: Any, y: Any) -> KerasMLPClassifier:
        """Train on the class codes of ``y``."""
        self.classes_, codes = np.unique(np.asarray(y), return_inverse=True)
        self._fit(X, codes.astype(np.int64), len(self.classes_))
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities ``[N, C]``."""
        return softmax(self._output(X))

    def predict(self, X: Any) -> np.ndarray:
        """The most probable class."""
        return np.asarray(self.classes_[np.argmax(self._output(X), axis=1)])


class KerasMLPRegressor(RegressorMixin, _KerasMLP):
    """The Keras tabular network as a scikit-learn regressor.

    The target is standardized while training; mean and scale are then folded
    into the last layer, so the network alone predicts in the target's units.
    """

    _task = "regression"

    def fit(self, X: Any, y: Any) -> KerasMLPRegressor:
        """Train on ``(y - mean) / std``, then fold mean and std into the output layer."""
        target = np.asarray(y, dtype=np.float64)
        self.y_mean_ = float(target.mean())
        self.y_scale_ = float(target.std()) or 1.0
        self._fit(X, ((target - self.y_mean_) / self.y_scale_).astype(np.float32), 1)
        last = self.module_.get_layer("output")
        kernel, bias = last.get_weights()
        last.set_weights([kernel * self.y_scale_, bias * self.y_scale_ + self.y_mean_])
        return self

    def predict(self, X: Any) -> np.ndarray:
        """Predictions in the target's units."""
        return self._output(X)[:, 0]
