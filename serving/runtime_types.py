"""What every model runtime shares: the :class:`Prediction` a batch gets and the loaded :class:`Runtime`.

The runtimes themselves are in :mod:`serving.runtimes` (native files) and
:mod:`serving.runtime_onnx` (ONNX Runtime); :mod:`serving.runtimes` chooses.

Example:
    >>> import numpy as np
    >>> sorted(Prediction(labels=np.array([1]), probabilities=np.array([[0.2, 0.8]])).outputs())
    ['label', 'probabilities']
    >>> labels_of((0, 1), np.array([[0.2, 0.8], [0.9, 0.1]])).tolist()
    [1, 0]
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from serving.protocol import Batch, InputSpec
from storage.registry.model_format import ONNX_LABEL, ONNX_PROBABILITIES, ONNX_REGRESSION, load_trusted_skops

ReadFile = Callable[[str], bytes]


@dataclass
class Prediction:
    """What a runtime returns for a batch: labels and probabilities, or values."""

    labels: np.ndarray | None = None
    probabilities: np.ndarray | None = None
    values: np.ndarray | None = None

    def outputs(self) -> dict[str, np.ndarray]:
        """The OIP outputs by name (``label``, ``probabilities`` or ``variable``)."""
        if self.values is not None:
            return {ONNX_REGRESSION: self.values}
        found: dict[str, np.ndarray] = {}
        if self.labels is not None:
            found[ONNX_LABEL] = self.labels
        if self.probabilities is not None:
            found[ONNX_PROBABILITIES] = self.probabilities
        return found


@dataclass
class Runtime:
    """A loaded model ready to predict.

    Attributes:
        platform: ``onnx``, ``xgboost``, ``pytorch``, ``sklearn`` or ``pickle``.
        task: ``classification`` or ``regression``.
        classes: The class labels (classification), in probability column order.
        spec: The input columns the model takes.
        estimator: The native model object (None for ONNX), for explanations.
        preprocess: The fitted preprocessing step (xgboost, pytorch), if any.
    """

    platform: str
    task: str
    classes: tuple[Any, ...]
    spec: InputSpec
    predict_fn: Callable[[Batch], Prediction] = field(repr=False)
    estimator: Any = field(default=None, repr=False)
    preprocess: Any = field(default=None, repr=False)
    outputs: tuple[str, ...] = ()

    def predict(self, batch: Batch) -> Prediction:
        """Predict a batch of decoded input columns."""
        return self.predict_fn(batch)

    @property
    def output_names(self) -> list[str]:
        """The output tensors this runtime answers with."""
        if self.outputs:
            return list(self.outputs)
        return [ONNX_REGRESSION] if self.task == "regression" else [ONNX_LABEL, ONNX_PROBABILITIES]


def load_skops(data: bytes, what: str, trusted_types: Collection[str] = ()) -> Any:
    """Load skops bytes when every type in them is trusted; otherwise a ValidationError naming them.

    Example:
        >>> import skops.io as sio
        >>> from sklearn.preprocessing import StandardScaler
        >>> type(load_skops(sio.dumps(StandardScaler()), "scaler")).__name__
        'StandardScaler'
    """
    return load_trusted_skops(data, what, types=tuple(trusted_types))


def labels_of(classes: Sequence[Any], probabilities: np.ndarray) -> np.ndarray:
    """The class of each row's largest probability (its column index when no classes are known)."""
    index = probabilities.argmax(axis=1)
    if not classes:
        return index.astype(np.int64)
    return np.asarray(classes)[index]


def classes_of(signature: Mapping[str, Any], fallback: Any = None) -> tuple[Any, ...]:
    """The signature's classes, else ``fallback``'s (a model's ``classes_``), else none."""
    declared = signature.get("classes")
    if declared:
        return tuple(declared)
    if fallback is not None:
        return tuple(c.item() if hasattr(c, "item") else c for c in fallback)
    return ()
