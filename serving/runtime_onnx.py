"""The ONNX runtime: one graph per version, its outputs read by what they hold.

Inputs are fed one tensor per column (named as the column), or one ``[N, k]``
matrix in the signature's column order when the graph has a single input of
another name. Outputs go through :func:`storage.registry.onnx_outputs.classify_outputs`:
labels and probabilities, a single softmax (label = argmax), logits (softmax
applied), a binary classifier's positive-class column, or a regression value.
A graph whose outputs cannot be read without a declaration is refused with the
way to declare it; flattened probabilities are never served as predictions.

Example:
    >>> import io, torch
    >>> net = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Softmax(dim=1))
    >>> buf = io.BytesIO()
    >>> torch.onnx.export(net, (torch.zeros(1, 2),), buf, input_names=["x"], output_names=["dense"],
    ...                   dynamic_axes={"x": {0: "N"}, "dense": {0: "N"}}, dynamo=False)
    >>> from serving.protocol import Batch, InputSpec
    >>> cols = [{"name": "a", "type": "float"}, {"name": "b", "type": "float"}]
    >>> sig = {"inputs": cols, "classes": [7, 8, 9]}
    >>> rt = onnx_runtime(sig, buf.getvalue(), InputSpec.from_signature(sig))
    >>> pred = rt.predict(Batch({"a": np.zeros(2), "b": np.ones(2)}, 2))
    >>> pred.probabilities.shape, len(pred.labels), set(pred.labels) <= {7, 8, 9}
    ((2, 3), 2, True)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from serving.protocol import Batch, InputSpec
from serving.runtime_types import Prediction, Runtime, classes_of, labels_of
from storage.errors import ValidationError
from storage.registry.model_format import ONNX_FILE, ONNX_LABEL, ONNX_PROBABILITIES
from storage.registry.onnx_outputs import OutputPlan, classify_outputs

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


def onnx_runtime(signature: Mapping[str, Any], data: bytes, spec: InputSpec) -> Runtime:
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

    plan = onnx_plan(session, signature)
    task = plan.task
    if task == "regression":
        (name,) = plan.fetch

        def predict_regression(batch: Batch) -> Prediction:
            (values,) = run([name], feed(batch), batch.rows)
            return Prediction(values=value_column(values, batch.rows, name))

        return Runtime("onnx", task, (), spec, predict_regression)
    classes = classes_of(signature)
    if classes and plan.n_classes and len(classes) != plan.n_classes:
        raise ValidationError(
            f"{ONNX_FILE}: the signature names {len(classes)} classes and the model's probabilities "
            f"have {plan.n_classes} columns"
        )
    fetch = plan.fetch

    def predict_classes(batch: Batch) -> Prediction:
        got = dict(zip(fetch, run(fetch, feed(batch), batch.rows), strict=True))
        probs = _probabilities(plan, got, classes, batch.rows)
        if plan.label is None:
            assert probs is not None  # a classifier's plan has labels or scores
            return Prediction(labels=labels_of(classes, probs), probabilities=probs)
        labels = np.asarray(got[plan.label]).reshape(-1)
        if len(labels) != batch.rows:
            raise RuntimeError(f"output {plan.label!r} has {len(labels)} labels for {batch.rows} rows")
        return Prediction(labels=labels, probabilities=probs)

    outputs = (ONNX_LABEL,) if plan.fetch == [plan.label] else (ONNX_LABEL, ONNX_PROBABILITIES)
    return Runtime("onnx", task, classes, spec, predict_classes, outputs=outputs)


def onnx_plan(session: Any, signature: Mapping[str, Any]) -> OutputPlan:
    """What the session's outputs hold (:func:`storage.registry.onnx_outputs.classify_outputs`).

    Raises:
        AmbiguousOutputs: the graph's outputs need a declaration (the message says how); the
            version is then refused rather than served wrong.
    """
    outputs = [(o.name, o.type, list(o.shape)) for o in session.get_outputs()]
    try:
        return classify_outputs(outputs, signature)
    except ValidationError as exc:
        raise type(exc)(f"{ONNX_FILE}: {exc}") from None


def value_column(values: Any, rows: int, name: str) -> np.ndarray:
    """One float64 value per row; an error naming the output when the count is off."""
    out = np.asarray(values, dtype=np.float64).reshape(-1)
    if len(out) != rows:
        raise RuntimeError(f"output {name!r} holds {len(out)} values for {rows} rows")
    return out


def _probabilities(
    plan: OutputPlan, got: Mapping[str, Any], classes: Sequence[Any], rows: int
) -> np.ndarray | None:
    """``[rows, C]`` probabilities from probabilities, logits (softmax) or a positive-class column."""
    if plan.positive is not None:
        p = value_column(got[plan.positive], rows, plan.positive)
        return np.column_stack([1.0 - p, p])
    name = plan.probabilities or plan.logits
    if name is None:
        return None
    raw = got[name]
    if isinstance(raw, list):  # ZipMap left on: a list of {class: p}
        keys = list(classes) if classes else sorted(raw[0]) if raw else []
        raw = [[row[k] for k in keys] for row in raw]
    scores = np.asarray(raw, dtype=np.float64)
    if scores.ndim != 2 or scores.shape[0] != rows:
        raise RuntimeError(f"output {name!r} has shape {list(scores.shape)} for {rows} rows, not [N, C]")
    if plan.logits is not None:
        scores = np.exp(scores - scores.max(axis=1, keepdims=True))
        scores /= scores.sum(axis=1, keepdims=True)
    return scores
