"""Model runtimes: turn decoded input columns into labels and probabilities, or values.

Which runtime serves a version depends on its files (:mod:`storage.registry.model_format`),
first match wins:

===========  ==============================================  ============================
runtime      files                                           loaded with
===========  ==============================================  ============================
onnx         ``model.onnx``                                  ONNX Runtime (CPU), one session
xgboost      ``model.ubj`` (+ ``preprocess.skops``)          skops (trusted types) + XGBoost
pytorch      ``preprocess.skops`` + ``model.pt`` +           skops + ``torch.load(weights_only=True)``
             ``model_config.json``
keras        ``model.keras`` (+ ``preprocess.skops``)        Keras 3, safe mode
sklearn      ``model.skops``                                 skops, trusted types only
pickle       ``model.pkl``                                   ``pickle`` — only when the operator
                                                             trusts pickles
===========  ==============================================  ============================

skops files load only when every type they hold is a scikit-learn, NumPy or
SciPy type (the rule of :mod:`tasks.scoring`), or one the operator lists in
``trusted_types``; anything else is refused with the types named. What an ONNX
graph's outputs hold is decided by :mod:`storage.registry.onnx_outputs`: a
graph it cannot read is refused at load, never served wrong.

Example:
    >>> import skops.io as sio
    >>> from sklearn.linear_model import LogisticRegression
    >>> from serving.protocol import Batch
    >>> clf = LogisticRegression().fit([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1])
    >>> sig = {"inputs": [{"name": "x", "type": "float"}], "task": "classification", "classes": [0, 1]}
    >>> rt = load_runtime(sig, {"model.skops": sio.dumps(clf)}.__getitem__, ["model.skops"])
    >>> pred = rt.predict(Batch({"x": np.array([0.0, 3.0])}, 2))
    >>> rt.platform, pred.labels.tolist()
    ('sklearn', [0, 1])
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

import numpy as np

from serving.protocol import Batch, InputSpec, RequestError
from serving.runtime_onnx import onnx_runtime, value_column
from serving.runtime_types import (
    Prediction,
    ReadFile,
    Runtime,
    classes_of,
    labels_of,
    load_skops,
)
from storage.errors import ValidationError
from storage.registry.model_format import (
    KERAS_FILE,
    ONNX_FILE,
    PICKLE_FILE,
    PREPROCESS_FILE,
    SKOPS_FILE,
    TORCH_CONFIG_FILE,
    TORCH_STATE_FILE,
    TRUSTED_PREFIXES,
    XGBOOST_FILE,
)

#: The order runtimes are tried in.
RUNTIMES = ("onnx", "xgboost", "pytorch", "keras", "sklearn", "pickle")
#: The native runtimes (all but ONNX), for explanations.
NATIVE_RUNTIMES = ("xgboost", "pytorch", "keras", "sklearn", "pickle")


# ------------------------------------------------------------------ native
def _matrix_fn(preprocess: Any, spec: InputSpec) -> Callable[[Batch], np.ndarray]:
    def matrix(batch: Batch) -> np.ndarray:
        out = preprocess.transform(batch.frame()) if preprocess is not None else batch.frame().to_numpy()
        if hasattr(out, "toarray"):
            out = out.toarray()
        return np.asarray(out, dtype=np.float32)

    return matrix


def _estimator_runtime(
    platform: str, estimator: Any, signature: Mapping[str, Any], spec: InputSpec
) -> Runtime:
    task = str(signature.get("task", "classification"))
    by_name = hasattr(estimator, "feature_names_in_") or hasattr(estimator, "steps")

    def inputs(batch: Batch) -> Any:
        frame = batch.frame()
        return frame if by_name else frame.to_numpy()

    if task == "regression":

        def predict_values(batch: Batch) -> Prediction:
            return Prediction(
                values=np.asarray(estimator.predict(inputs(batch)), dtype=np.float64).reshape(-1)
            )

        return Runtime(platform, task, (), spec, predict_values, estimator=estimator)
    classes = classes_of(signature, getattr(estimator, "classes_", None))
    native = np.asarray(getattr(estimator, "classes_", classes))

    def predict_classes(batch: Batch) -> Prediction:
        x = inputs(batch)
        if hasattr(estimator, "predict_proba"):
            probs = np.asarray(estimator.predict_proba(x), dtype=np.float64)
            return Prediction(labels=native[probs.argmax(axis=1)], probabilities=probs)
        return Prediction(labels=np.asarray(estimator.predict(x)))

    return Runtime(platform, task, classes, spec, predict_classes, estimator=estimator)


def _preprocess(read: ReadFile, files: Collection[str], trusted: Collection[str]) -> Any:
    """The fitted preprocessing step; None for an imported model fed the input columns as they are."""
    return load_skops(read(PREPROCESS_FILE), PREPROCESS_FILE, trusted) if PREPROCESS_FILE in files else None


def _xgboost(
    signature: Mapping[str, Any], read: ReadFile, spec: InputSpec, task: str, trusted: Collection[str],
    files: Collection[str] = (PREPROCESS_FILE,),
) -> Runtime:  # fmt: skip
    import xgboost as xgb

    preprocess = _preprocess(read, files, trusted)
    model: Any = xgb.XGBRegressor() if task == "regression" else xgb.XGBClassifier()
    model.load_model(bytearray(read(XGBOOST_FILE)))
    matrix = _matrix_fn(preprocess, spec)
    if task == "regression":

        def predict_values(batch: Batch) -> Prediction:
            return Prediction(values=np.asarray(model.predict(matrix(batch)), dtype=np.float64).reshape(-1))

        return Runtime("xgboost", task, (), spec, predict_values, estimator=model, preprocess=preprocess)
    classes = classes_of(signature, getattr(model, "classes_", None))

    def predict_classes(batch: Batch) -> Prediction:
        probs = np.asarray(model.predict_proba(matrix(batch)), dtype=np.float64)
        return Prediction(labels=labels_of(classes, probs), probabilities=probs)

    return Runtime("xgboost", task, classes, spec, predict_classes, estimator=model, preprocess=preprocess)


def _pytorch(
    signature: Mapping[str, Any], read: ReadFile, spec: InputSpec, task: str, trusted: Collection[str]
) -> Runtime:
    from storage.registry.torch_mlp import load_tabular_mlp, predict_output

    preprocess = load_skops(read(PREPROCESS_FILE), PREPROCESS_FILE, trusted)
    try:
        config = json.loads(read(TORCH_CONFIG_FILE))
    except ValueError as exc:
        raise ValidationError(f"{TORCH_CONFIG_FILE} is not valid JSON: {exc}") from None
    module = load_tabular_mlp(config, read(TORCH_STATE_FILE))
    matrix = _matrix_fn(preprocess, spec)
    if task == "regression":

        def predict_values(batch: Batch) -> Prediction:
            return Prediction(values=predict_output(module, matrix(batch)).reshape(-1))

        return Runtime("pytorch", task, (), spec, predict_values, estimator=module, preprocess=preprocess)
    classes = classes_of(signature)

    def predict_classes(batch: Batch) -> Prediction:
        probs = predict_output(module, matrix(batch))
        return Prediction(labels=labels_of(classes, probs), probabilities=probs)

    return Runtime("pytorch", task, classes, spec, predict_classes, estimator=module, preprocess=preprocess)


def _keras(
    signature: Mapping[str, Any], read: ReadFile, spec: InputSpec, task: str, trusted: Collection[str],
    files: Collection[str],
) -> Runtime:  # fmt: skip
    """``model.keras`` (probabilities or values out), after ``preprocess.skops`` when there is one."""
    from storage.registry.keras_model import keras_predict, load_keras_bytes

    preprocess = _preprocess(read, files, trusted)
    model = load_keras_bytes(read(KERAS_FILE))
    matrix = _matrix_fn(preprocess, spec)
    classes = classes_of(signature)

    def predict(batch: Batch) -> Prediction:
        out = keras_predict(model, matrix(batch))
        if task == "regression":
            return Prediction(values=value_column(out, batch.rows, KERAS_FILE))
        probs = np.column_stack([1.0 - out[:, 0], out[:, 0]]) if out.shape[1] == 1 else out
        return Prediction(labels=labels_of(classes, probs), probabilities=probs)

    return Runtime("keras", task, classes, spec, predict, estimator=model, preprocess=preprocess)


# ------------------------------------------------------------------ choice
def runtime_kind(files: Collection[str], order: Sequence[str] = RUNTIMES) -> str | None:
    """The first runtime in ``order`` whose files a version has (None when none fits).

    >>> runtime_kind({"model.onnx", "model.skops"}), runtime_kind({"model.skops"})
    ('onnx', 'sklearn')
    """
    needs = {
        "onnx": (ONNX_FILE,),
        "xgboost": (XGBOOST_FILE,),  # preprocess.skops too for trained versions; imports may have none
        "keras": (KERAS_FILE,),
        "pytorch": (PREPROCESS_FILE, TORCH_STATE_FILE, TORCH_CONFIG_FILE),
        "sklearn": (SKOPS_FILE,),
        "pickle": (PICKLE_FILE,),
    }
    for kind in order:
        if all(name in files for name in needs[kind]):
            return kind
    return None


def load_runtime(
    signature: Mapping[str, Any] | None,
    read: ReadFile,
    files: Collection[str],
    *,
    trust_pickle: bool = False,
    trusted_types: Collection[str] = (),
    order: Sequence[str] = RUNTIMES,
) -> Runtime:
    """Load the runtime a version's files call for (see the module docs).

    Args:
        signature: The version's signature (inputs, task, classes).
        read: Returns the verified bytes of one of the version's files.
        files: The names of the version's files.
        trust_pickle: Allow ``model.pkl``.
        trusted_types: Extra types skops may load.
        order: Runtimes to try, in order.

    Raises:
        ValidationError: no servable file, an untrusted file, a pickle without trust.
    """
    sig = dict(signature or {})
    spec = InputSpec.from_signature(sig)
    task = str(sig.get("task", "classification"))
    if task not in ("classification", "regression"):
        raise ValidationError(f"signature task {task!r} is not classification or regression")
    kind = runtime_kind(files, order)
    if kind is None and PICKLE_FILE in files and not trust_pickle:
        raise ValidationError(f"{PICKLE_FILE} is a pickle: serve it only with an explicit trust flag")
    if kind == "pickle" and not trust_pickle:
        raise ValidationError(f"{PICKLE_FILE} is a pickle: serve it only with an explicit trust flag")
    if kind is None:
        raise ValidationError(f"no servable model file (have: {', '.join(sorted(files)) or 'none'})")
    if kind == "onnx":
        return onnx_runtime(sig, read(ONNX_FILE), spec)  # the graph's outputs say the task (or refuse)
    if kind == "xgboost":
        return _xgboost(sig, read, spec, task, trusted_types, files)
    if kind == "keras":
        return _keras(sig, read, spec, task, trusted_types, files)
    if kind == "pytorch":
        return _pytorch(sig, read, spec, task, trusted_types)
    if kind == "sklearn":
        estimator = load_skops(read(SKOPS_FILE), SKOPS_FILE, trusted_types)
        return _estimator_runtime("sklearn", estimator, sig, spec)
    estimator = pickle.loads(read(PICKLE_FILE))  # the operator trusts pickles
    return _estimator_runtime("pickle", estimator, sig, spec)


__all__ = [
    "NATIVE_RUNTIMES",
    "RUNTIMES",
    "TRUSTED_PREFIXES",
    "Prediction",
    "ReadFile",
    "RequestError",
    "Runtime",
    "load_runtime",
    "load_skops",
    "runtime_kind",
]
