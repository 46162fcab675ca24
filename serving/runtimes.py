"""Model runtimes: turn decoded input columns into labels and probabilities, or values.

Which runtime serves a version depends on its files (:mod:`storage.registry.model_format`),
first match wins:

===========  ==============================================  ============================
runtime      files                                           loaded with
===========  ==============================================  ============================
onnx         ``model.onnx``                                  ONNX Runtime (CPU), one session
xgboost      ``preprocess.skops`` + ``model.ubj``            skops (trusted types) + XGBoost
pytorch      ``preprocess.skops`` + ``model.pt`` +           skops + ``torch.load(weights_only=True)``
             ``model_config.json``
sklearn      ``model.skops``                                 skops, trusted types only
pickle       ``model.pkl``                                   ``pickle`` — only when the operator
                                                             trusts pickles
===========  ==============================================  ============================

skops files load only when every type they hold is a scikit-learn, NumPy or
SciPy type (the rule of :mod:`tasks.scoring`), or one the operator lists in
``trusted_types``; anything else is refused with the types named.

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
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from serving.protocol import Batch, InputSpec, RequestError
from storage.errors import ValidationError
from storage.registry.model_format import (
    ONNX_FILE,
    ONNX_LABEL,
    ONNX_PROBABILITIES,
    ONNX_REGRESSION,
    PICKLE_FILE,
    PREPROCESS_FILE,
    SKOPS_FILE,
    TORCH_CONFIG_FILE,
    TORCH_STATE_FILE,
    TRUSTED_PREFIXES,
    XGBOOST_FILE,
    load_trusted_skops,
)

#: The order runtimes are tried in.
RUNTIMES = ("onnx", "xgboost", "pytorch", "sklearn", "pickle")
#: The native runtimes (all but ONNX), for explanations.
NATIVE_RUNTIMES = ("xgboost", "pytorch", "sklearn", "pickle")

ReadFile = Callable[[str], bytes]
#: Batches up to this many rows run ONNX Runtime on one thread.
SMALL_ROWS = 64

_ORT_TYPES = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(bool)": np.bool_,
    "tensor(string)": np.object_,
}


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

    def predict(self, batch: Batch) -> Prediction:
        """Predict a batch of decoded input columns."""
        return self.predict_fn(batch)

    @property
    def output_names(self) -> list[str]:
        """The output tensors this runtime answers with."""
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


def _labels(classes: Sequence[Any], probabilities: np.ndarray) -> np.ndarray:
    index = probabilities.argmax(axis=1)
    if not classes:
        return index.astype(np.int64)
    return np.asarray(classes)[index]


def _classes(signature: Mapping[str, Any], fallback: Any = None) -> tuple[Any, ...]:
    declared = signature.get("classes")
    if declared:
        return tuple(declared)
    if fallback is not None:
        return tuple(c.item() if hasattr(c, "item") else c for c in fallback)
    return ()


# ------------------------------------------------------------------ ONNX
def _onnx(signature: Mapping[str, Any], data: bytes, spec: InputSpec, task: str) -> Runtime:
    import onnxruntime as ort

    # Two sessions on the same model: small batches on the calling thread alone (waking a thread
    # pool costs more than a few rows take), large ones on the intra-op pool. Idle pool threads
    # do not spin, so they leave the CPU to the HTTP server between requests.
    small_options, options = ort.SessionOptions(), ort.SessionOptions()
    for opts in (small_options, options):
        opts.log_severity_level = 3
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    small_options.intra_op_num_threads = 1
    session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    small = ort.InferenceSession(data, small_options, providers=["CPUExecutionProvider"])

    def run(names: list[str], feeds: dict[str, np.ndarray], rows: int) -> list[Any]:
        return (small if rows <= SMALL_ROWS else session).run(names, feeds)

    inputs = session.get_inputs()
    feeds: list[tuple[str, Any, bool]] = []  # (name, dtype, 2-D)
    stacked: tuple[str, Any] | None = None
    if len(inputs) == 1 and inputs[0].name not in spec.types:
        shape = inputs[0].shape
        if len(shape) != 2 or (isinstance(shape[1], int) and shape[1] != len(spec.names)):
            raise ValidationError(f"{ONNX_FILE}: input {inputs[0].name!r} of shape {shape} does not fit")
        stacked = (inputs[0].name, _ORT_TYPES.get(inputs[0].type, np.float32))
    else:
        for node in inputs:
            if node.name not in spec.types:
                raise ValidationError(f"{ONNX_FILE}: input {node.name!r} is not in the version's signature")
            if node.type not in _ORT_TYPES:
                raise ValidationError(f"{ONNX_FILE}: input {node.name!r} has unsupported type {node.type}")
            feeds.append((node.name, _ORT_TYPES[node.type], len(node.shape) == 2))
    out_names = [o.name for o in session.get_outputs()]
    classes = _classes(signature)

    def feed(batch: Batch) -> dict[str, np.ndarray]:
        if stacked is not None:
            matrix = np.column_stack([batch.columns[n] for n in spec.names]).astype(stacked[1], copy=False)
            return {stacked[0]: matrix}
        out = {}
        for name, dtype, two_d in feeds:
            col = batch.columns[name]
            if dtype is np.object_:
                col = col.astype(object, copy=False)
                missing = np.fromiter((v is None for v in col), dtype=bool, count=len(col))
                if missing.any():  # ONNX string tensors hold no nulls: a missing string is ""
                    col = np.where(missing, "", col)
            elif col.dtype != dtype:
                with np.errstate(all="ignore"):
                    col = col.astype(dtype)
            out[name] = col.reshape(-1, 1) if two_d else col
        return out

    if task == "regression":
        name = ONNX_REGRESSION if ONNX_REGRESSION in out_names else out_names[0]

        def predict_regression(batch: Batch) -> Prediction:
            (values,) = run([name], feed(batch), batch.rows)
            return Prediction(values=np.asarray(values, dtype=np.float64).reshape(-1))

        return Runtime("onnx", task, (), spec, predict_regression)

    label_name = ONNX_LABEL if ONNX_LABEL in out_names else out_names[0]
    prob_name = ONNX_PROBABILITIES if ONNX_PROBABILITIES in out_names else out_names[-1]

    def predict_classes(batch: Batch) -> Prediction:
        labels, probs = run([label_name, prob_name], feed(batch), batch.rows)
        if isinstance(probs, list):  # ZipMap left on: a list of {class: p}
            keys = list(classes) if classes else sorted(probs[0])
            probs = np.array([[row[k] for k in keys] for row in probs])
        return Prediction(
            labels=np.asarray(labels).reshape(-1), probabilities=np.asarray(probs, dtype=np.float64)
        )

    return Runtime("onnx", task, classes, spec, predict_classes)


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
    classes = _classes(signature, getattr(estimator, "classes_", None))
    native = np.asarray(getattr(estimator, "classes_", classes))

    def predict_classes(batch: Batch) -> Prediction:
        x = inputs(batch)
        if hasattr(estimator, "predict_proba"):
            probs = np.asarray(estimator.predict_proba(x), dtype=np.float64)
            return Prediction(labels=native[probs.argmax(axis=1)], probabilities=probs)
        return Prediction(labels=np.asarray(estimator.predict(x)))

    return Runtime(platform, task, classes, spec, predict_classes, estimator=estimator)


def _xgboost(
    signature: Mapping[str, Any], read: ReadFile, spec: InputSpec, task: str, trusted: Collection[str]
) -> Runtime:
    import xgboost as xgb

    preprocess = load_skops(read(PREPROCESS_FILE), PREPROCESS_FILE, trusted)
    model: Any = xgb.XGBRegressor() if task == "regression" else xgb.XGBClassifier()
    model.load_model(bytearray(read(XGBOOST_FILE)))
    matrix = _matrix_fn(preprocess, spec)
    if task == "regression":

        def predict_values(batch: Batch) -> Prediction:
            return Prediction(values=np.asarray(model.predict(matrix(batch)), dtype=np.float64).reshape(-1))

        return Runtime("xgboost", task, (), spec, predict_values, estimator=model, preprocess=preprocess)
    classes = _classes(signature, getattr(model, "classes_", None))

    def predict_classes(batch: Batch) -> Prediction:
        probs = np.asarray(model.predict_proba(matrix(batch)), dtype=np.float64)
        return Prediction(labels=_labels(classes, probs), probabilities=probs)

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
    classes = _classes(signature)

    def predict_classes(batch: Batch) -> Prediction:
        probs = predict_output(module, matrix(batch))
        return Prediction(labels=_labels(classes, probs), probabilities=probs)

    return Runtime("pytorch", task, classes, spec, predict_classes, estimator=module, preprocess=preprocess)


# ------------------------------------------------------------------ choice
def runtime_kind(files: Collection[str], order: Sequence[str] = RUNTIMES) -> str | None:
    """The first runtime in ``order`` whose files a version has (None when none fits).

    >>> runtime_kind({"model.onnx", "model.skops"}), runtime_kind({"model.skops"})
    ('onnx', 'sklearn')
    """
    needs = {
        "onnx": (ONNX_FILE,),
        "xgboost": (PREPROCESS_FILE, XGBOOST_FILE),
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
        return _onnx(sig, read(ONNX_FILE), spec, task)
    if kind == "xgboost":
        return _xgboost(sig, read, spec, task, trusted_types)
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
    "RequestError",
    "Runtime",
    "load_runtime",
    "load_skops",
    "runtime_kind",
]
