"""Stage 9 of training: a fitted pipeline → the version's files (native + ONNX) with a parity check.

Native files follow :mod:`storage.registry.model_format`: scikit-learn → ``model.skops``
(the whole ``Pipeline``); XGBoost → ``preprocess.skops`` + ``model.ubj``;
PyTorch → ``preprocess.skops`` + ``model.pt`` + ``model_config.json``; Keras →
``preprocess.skops`` + ``model.keras``. The ONNX
graph (``model.onnx``) holds preprocessing and model together, one input per
raw column; it is kept only when its predictions on the holdout rows match the
native model's within :data:`PARITY_TOLERANCE`. Either way the outcome is
recorded as ``{"onnx": {"kept": ..., "max_abs_diff": ..., "reason": ...}}``.

Example:
    >>> import pandas as pd
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.pipeline import Pipeline
    >>> from tasks.training.engineering import FeatureEngineering, build_preprocessor, feature_spec
    >>> X = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0] * 5, "c": ["x", "y", "x", "y"] * 5})
    >>> y = [0, 0, 1, 1] * 5
    >>> pipe = Pipeline([("pre", build_preprocessor(feature_spec(X), FeatureEngineering())),
    ...                  ("model", LogisticRegression())]).fit(X, y)
    >>> out = export_model(pipe, "sklearn", X, "classification")
    >>> sorted(out.files), out.onnx["kept"], out.onnx["max_abs_diff"] < 1e-4
    (['model.onnx', 'model.skops'], True, True)
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import skops.io as sio
from prefect import task

from storage.objectstore import Place
from storage.registry.model_format import (
    KERAS_FILE,
    ONNX_FILE,
    ONNX_LABEL,
    ONNX_PROBABILITIES,
    ONNX_REGRESSION,
    PREPROCESS_FILE,
    SKOPS_FILE,
    TORCH_CONFIG_FILE,
    TORCH_STATE_FILE,
    XGBOOST_FILE,
    column_type,
)
from tasks.retry import maybe_fail

#: Largest |ONNX - native| prediction difference for the ONNX file to be kept.
PARITY_TOLERANCE = 1e-4
#: ONNX opset of exported graphs (onnxmltools converts XGBoost 3.x only up to opset 15).
TARGET_OPSET = 15
ML_OPSET = 3


@dataclass
class ExportResult:
    """The version's files and what happened to ONNX."""

    files: dict[str, bytes]
    onnx: dict[str, Any] = field(default_factory=dict)

    def extra(self) -> dict[str, Any]:
        """The version's ``extra["export"]`` value."""
        return {"onnx": self.onnx}


def native_files(pipeline: Any, framework: str) -> dict[str, bytes]:
    """The native files of a fitted ``Pipeline([("pre", ...), ("model", ...)])``."""
    if framework in ("sklearn", "custom"):
        return {SKOPS_FILE: sio.dumps(pipeline)}
    pre, model = pipeline.named_steps["pre"], pipeline.named_steps["model"]
    if framework == "xgboost":
        raw = bytearray(model.get_booster().save_raw(raw_format="ubj"))
        return {PREPROCESS_FILE: sio.dumps(pre), XGBOOST_FILE: bytes(raw)}
    if framework == "keras":
        from storage.registry.keras_model import keras_bytes

        return {PREPROCESS_FILE: sio.dumps(pre), KERAS_FILE: keras_bytes(model.serving_model())}
    if framework == "pytorch":
        from storage.registry.torch_mlp import state_bytes

        return {
            PREPROCESS_FILE: sio.dumps(pre),
            TORCH_STATE_FILE: state_bytes(model.module_),
            TORCH_CONFIG_FILE: json.dumps(model.architecture(), sort_keys=True).encode(),
        }
    raise ValueError(f"unknown framework {framework!r}")


def onnx_inputs(frame: pd.DataFrame) -> list[tuple[str, Any]]:
    """skl2onnx input types: one ``[None, 1]`` tensor per raw column, named as the column."""
    from skl2onnx.common.data_types import FloatTensorType, Int64TensorType, StringTensorType

    types = {
        "float": FloatTensorType,
        "int": Int64TensorType,
        "bool": Int64TensorType,
        "string": StringTensorType,
    }
    return [(str(name), types[column_type(dtype)]([None, 1])) for name, dtype in frame.dtypes.items()]


def onnx_feed(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """The ONNX Runtime feed of a frame (the dtypes :func:`onnx_inputs` declares).

    Example:
        >>> feed = onnx_feed(pd.DataFrame({"a": [1.5], "n": [2], "c": ["x"]}))
        >>> [(k, v.dtype.kind, v.shape) for k, v in feed.items()]
        [('a', 'f', (1, 1)), ('n', 'i', (1, 1)), ('c', 'O', (1, 1))]
    """
    feed: dict[str, np.ndarray] = {}
    for name, dtype in frame.dtypes.items():
        kind = column_type(dtype)
        col = frame[name]
        if kind == "float":
            feed[str(name)] = col.to_numpy(dtype=np.float32).reshape(-1, 1)
        elif kind in ("int", "bool"):
            feed[str(name)] = col.to_numpy(dtype=np.int64).reshape(-1, 1)
        else:
            values = ["" if pd.isna(v) else str(v) for v in col.astype(object)]
            feed[str(name)] = np.asarray(values, dtype=object).reshape(-1, 1)
    return feed


def _register_xgboost() -> None:
    from onnxmltools.convert.xgboost.operator_converters.XGBoost import convert_xgboost
    from skl2onnx import update_registered_converter
    from skl2onnx.common.shape_calculator import (
        calculate_linear_classifier_output_shapes,
        calculate_linear_regressor_output_shapes,
    )
    from xgboost import XGBClassifier, XGBRegressor

    update_registered_converter(
        XGBClassifier,
        "XGBoostXGBClassifier",
        calculate_linear_classifier_output_shapes,
        convert_xgboost,
        options={"nocl": [True, False], "zipmap": [True, False, "columns"]},
    )
    update_registered_converter(
        XGBRegressor, "XGBoostXGBRegressor", calculate_linear_regressor_output_shapes, convert_xgboost
    )


def _register_interactions() -> None:
    from skl2onnx import update_registered_converter
    from skl2onnx.algebra.onnx_ops import OnnxAbs, OnnxAdd, OnnxConcat, OnnxDiv, OnnxGather, OnnxMul
    from skl2onnx.common.data_types import FloatTensorType

    from tasks.training.engineering import RATIO_EPSILON, InteractionFeatures

    def shape(operator: Any) -> None:
        op = operator.raw_operator
        n = op.n_features_in_ + len(op.pairs_) * (int(op.interactions) + int(op.ratios))
        operator.outputs[0].type = FloatTensorType([None, n])

    def convert(scope: Any, operator: Any, container: Any) -> None:
        op = operator.raw_operator
        opv = container.target_opset
        x = operator.inputs[0]
        parts: list[Any] = [x]
        for i, j in op.pairs_:
            a = OnnxGather(x, np.array([i], dtype=np.int64), axis=1, op_version=opv)
            b = OnnxGather(x, np.array([j], dtype=np.int64), axis=1, op_version=opv)
            if op.interactions:
                parts.append(OnnxMul(a, b, op_version=opv))
            if op.ratios:
                denom = OnnxAdd(
                    OnnxAbs(b, op_version=opv), np.array([RATIO_EPSILON], dtype=np.float32), op_version=opv
                )
                parts.append(OnnxDiv(a, denom, op_version=opv))
        out = OnnxConcat(*parts, axis=1, op_version=opv, output_names=operator.outputs[:1])
        out.add_to(scope, container)

    update_registered_converter(InteractionFeatures, "MlopsInteractionFeatures", shape, convert)


def to_onnx(pipeline: Any, frame: pd.DataFrame, framework: str) -> bytes:
    """The whole pipeline as one ONNX graph (labels + probabilities for classifiers, ZipMap off)."""
    from skl2onnx import convert_sklearn

    _register_interactions()
    if framework == "pytorch":
        return _torch_onnx(pipeline, frame)
    if framework == "keras":
        return _keras_onnx(pipeline, frame)
    if framework == "xgboost":
        _register_xgboost()
    model = pipeline.named_steps.get("model", pipeline) if hasattr(pipeline, "named_steps") else pipeline
    options = {id(model): {"zipmap": False}} if hasattr(model, "predict_proba") else None
    onx = convert_sklearn(
        pipeline,
        initial_types=onnx_inputs(frame),
        options=options,
        target_opset={"": TARGET_OPSET, "ai.onnx.ml": ML_OPSET},
    )
    return bytes(onx.SerializeToString())


def _torch_onnx(pipeline: Any, frame: pd.DataFrame) -> bytes:
    """Preprocessing (skl2onnx) merged with the network (torch.onnx) into one graph.

    The network is a ``torch.nn.Module``: the PyTorch MLP, or a Keras model on Keras'
    torch backend (which is one).
    """
    import torch

    est = pipeline.named_steps["model"]
    classification = est._task == "classification"
    if classification:
        classes = np.asarray(est.classes_)
        if not np.issubdtype(classes.dtype, np.integer):
            raise ValueError("the ONNX graph of a network classifier needs integer class labels")
        head: torch.nn.Module = _ClassifierHead(est.module_, torch.as_tensor(classes.astype(np.int64)))
        outputs = [ONNX_LABEL, ONNX_PROBABILITIES]
    else:
        head = est.module_
        outputs = [ONNX_REGRESSION]
    buffer = io.BytesIO()
    torch.onnx.export(
        head.eval(),
        (torch.zeros(1, est.n_features_in_),),
        buffer,  # type: ignore[arg-type]
        input_names=["features"],
        output_names=outputs,
        dynamic_axes={"features": {0: "N"}, **{o: {0: "N"} for o in outputs}},
        opset_version=TARGET_OPSET,
        dynamo=False,
    )
    return _with_preprocessing(pipeline, frame, buffer.getvalue())


def _keras_onnx(pipeline: Any, frame: pd.DataFrame) -> bytes:
    """A Keras pipeline as one graph: through torch.onnx on the torch backend, tf2onnx on TensorFlow.

    On TensorFlow the classifier's graph outputs ``probabilities`` alone (the
    runtime takes the label as their argmax over the signature's classes).
    """
    from storage.registry.keras_model import backend, keras_onnx

    if backend() == "torch":
        return _torch_onnx(pipeline, frame)
    est = pipeline.named_steps["model"]
    name = ONNX_PROBABILITIES if est._task == "classification" else ONNX_REGRESSION
    net = keras_onnx(est.serving_model(), est.n_features_in_, output_names=[name], opset=TARGET_OPSET)
    return _with_preprocessing(pipeline, frame, net)


def _with_preprocessing(pipeline: Any, frame: pd.DataFrame, network: bytes) -> bytes:
    """The preprocessing graph (skl2onnx) feeding a network graph whose input is ``features``."""
    import onnx
    from onnx import compose
    from skl2onnx import convert_sklearn

    pre_onx = convert_sklearn(
        pipeline.named_steps["pre"],
        initial_types=onnx_inputs(frame),
        target_opset={"": TARGET_OPSET, "ai.onnx.ml": ML_OPSET},
    )
    pre_onx = compose.add_prefix(pre_onx, "pre_", rename_inputs=False, rename_outputs=True)
    pre_out = pre_onx.graph.output[0].name
    net = onnx.load_from_string(network)
    net = compose.add_prefix(net, "net_", rename_inputs=False, rename_outputs=False)
    pre_onx.ir_version = net.ir_version = min(pre_onx.ir_version, net.ir_version)
    merged = compose.merge_models(pre_onx, net, io_map=[(pre_out, net.graph.input[0].name)])
    return bytes(merged.SerializeToString())


class _ClassifierHead:
    """Wraps the network so the exported graph outputs ``label`` and ``probabilities``."""

    def __new__(cls, module: Any, classes: Any) -> Any:
        import torch

        class Head(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.module = module
                self.register_buffer("classes", classes)

            def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
                probs = torch.softmax(self.module(x), dim=1)
                labels: torch.Tensor = self.classes  # type: ignore[assignment]
                return labels[torch.argmax(probs, dim=1)], probs

        return Head()


def onnx_predictions(onnx_bytes: bytes, frame: pd.DataFrame, task: str) -> np.ndarray:
    """Probabilities (classification) or predictions (regression) of an ONNX graph."""
    import onnxruntime as ort

    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    wanted = ONNX_PROBABILITIES if task == "classification" else ONNX_REGRESSION
    index = names.index(wanted) if wanted in names else (1 if task == "classification" else 0)
    out = session.run(None, onnx_feed(frame))[index]
    return np.asarray(out, dtype=np.float64).reshape(len(frame), -1)


def native_predictions(pipeline: Any, frame: pd.DataFrame, task: str) -> np.ndarray:
    """What the parity check compares: ``predict_proba`` or ``predict``."""
    out = pipeline.predict_proba(frame) if task == "classification" else pipeline.predict(frame)
    return np.asarray(out, dtype=np.float64).reshape(len(frame), -1)


def export_model(
    pipeline: Any, framework: str, holdout: pd.DataFrame, task: str, tolerance: float = PARITY_TOLERANCE
) -> ExportResult:
    """Native files, plus ``model.onnx`` when conversion works and parity holds on ``holdout``."""
    files = native_files(pipeline, framework)
    try:
        onnx_bytes = to_onnx(pipeline, holdout, framework)
    except Exception as exc:  # any converter failure: keep native only, say why
        reason = (
            f"ONNX conversion failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        )
        return ExportResult(files, {"kept": False, "max_abs_diff": None, "reason": reason[:500]})
    try:
        diff = float(
            np.max(
                np.abs(
                    onnx_predictions(onnx_bytes, holdout, task) - native_predictions(pipeline, holdout, task)
                )
            )
        )
    except Exception as exc:  # the graph converts but does not run
        reason = (
            f"ONNX graph does not run: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        )
        return ExportResult(files, {"kept": False, "max_abs_diff": None, "reason": reason[:500]})
    if not np.isfinite(diff) or diff > tolerance:
        reason = (
            f"parity failed: max |ONNX - native| = {diff:.3g} > {tolerance:g} on {len(holdout)} holdout rows"
        )
        return ExportResult(files, {"kept": False, "max_abs_diff": diff, "reason": reason})
    files[ONNX_FILE] = onnx_bytes
    return ExportResult(files, {"kept": True, "max_abs_diff": diff, "reason": None})


@task(name="export-model", retries=2, retry_delay_seconds=1)
def export_version_files(
    pipeline: Any, framework: str, holdout: pd.DataFrame, task_kind: str
) -> ExportResult:
    """Stage 9: native files and ONNX with a parity check on the holdout rows."""
    maybe_fail("export")
    return export_model(pipeline, framework, holdout, task_kind)


def write_version_files(
    output_dir: str, model: str, version: int, files: dict[str, bytes], summary: dict[str, Any]
) -> str:
    """Copy a version's files and its summary (``version.json``) to ``<output_dir>/<model>/v<version>/``.

    ``output_dir`` is a folder or any fsspec URL (``s3://bucket/exports``). Each
    file is written atomically, so a retry never leaves a torn file. Returns
    the version folder's URI (a plain path for a folder).

    Example:
        >>> import tempfile, os
        >>> out = write_version_files(tempfile.mkdtemp(), "m", 1, {"model.onnx": b"x"}, {"metrics": {}})
        >>> sorted(os.listdir(out))
        ['model.onnx', 'version.json']
    """
    folder = Place(output_dir).child(model, f"v{version}")
    payload = {**files, "version.json": json.dumps(summary, indent=2, sort_keys=True, default=str).encode()}
    for name, data in payload.items():
        folder.write_bytes(folder.path(name), data)
    return folder.uri(folder.path())
