"""Keras 3 models: the backend, ``.keras`` bytes, predictions and ONNX export.

Keras 3 runs on PyTorch, TensorFlow or JAX; the platform uses the **torch**
backend unless ``KERAS_BACKEND`` says otherwise (PyTorch is installed with the
platform; TensorFlow is the optional ``tensorflow`` extra). The backend is
fixed when ``keras`` is first imported, so every module imports it through
:func:`keras_module`, which sets the default first.

ONNX export: on the torch backend a Keras model *is* a ``torch.nn.Module`` and
``torch.onnx`` (TorchScript exporter) writes it; on the TensorFlow backend
``tf2onnx`` does. Files are loaded with Keras' ``safe_mode`` (no arbitrary
code from lambda layers).

Example:
    >>> import numpy as np
    >>> keras = keras_module()
    >>> inputs = keras.Input(shape=(3,))
    >>> model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(inputs))
    >>> again = load_keras_bytes(keras_bytes(model))
    >>> x = np.ones((4, 3), dtype=np.float32)
    >>> bool(np.allclose(keras_predict(model, x), keras_predict(again, x)))
    True
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from storage.errors import ValidationError

#: The backend used when ``KERAS_BACKEND`` is unset.
DEFAULT_BACKEND = "torch"


def keras_module() -> Any:
    """``keras``, imported with the torch backend unless ``KERAS_BACKEND`` names another."""
    os.environ.setdefault("KERAS_BACKEND", DEFAULT_BACKEND)
    try:
        import keras
    except ImportError as exc:  # keras is a main dependency; this names what broke
        raise ValidationError(f"keras cannot be imported: {exc}") from None
    _without_tensorflow(keras)
    return keras


def _without_tensorflow(keras: Any) -> None:
    """Off the TensorFlow backend, keep Keras from importing TensorFlow just because it is installed.

    Keras probes ``tensorflow`` (seconds and about a gigabyte to import) when it
    saves a model or seeds its generators, even on the torch backend; with the
    ``tensorflow`` extra installed every training worker and server would pay
    that. The probe is answered "not available" unless the backend is
    TensorFlow or the process imported it already.
    """
    import sys

    if keras.backend.backend() == "tensorflow" or "tensorflow" in sys.modules:
        return
    from keras.src.utils import module_utils

    for lazy in (module_utils.tensorflow, module_utils.gfile):
        if lazy.module is None and lazy._available is None:
            lazy._available = False


def backend() -> str:
    """The backend Keras runs on (``torch``, ``tensorflow``, ``jax``)."""
    return str(keras_module().backend.backend())


def keras_bytes(model: Any) -> bytes:
    """The model as a ``.keras`` file's bytes."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.keras"
        model.save(path)
        return path.read_bytes()


def load_keras_file(path: str | Path) -> Any:
    """Load a ``.keras`` (or legacy ``.h5``) file in safe mode."""
    keras = keras_module()
    try:
        return keras.saving.load_model(str(path), compile=False, safe_mode=True)
    except Exception as exc:  # a broken or unsafe file: say which
        raise ValidationError(f"{Path(path).name} is not a loadable Keras model: {exc}") from None


def load_keras_bytes(data: bytes) -> Any:
    """Load ``.keras`` bytes in safe mode."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.keras"
        path.write_bytes(data)
        return load_keras_file(path)


def keras_predict(model: Any, x: np.ndarray) -> np.ndarray:
    """The model's output on ``x`` as float64 (one call, no progress bar)."""
    keras = keras_module()
    out = model(np.asarray(x, dtype=np.float32), training=False)
    if isinstance(out, list | tuple):
        out = out[0]
    return np.asarray(keras.ops.convert_to_numpy(out), dtype=np.float64)


def input_width(model: Any) -> int:
    """Columns of the model's single 2-D input; an error for other models."""
    shapes = [tuple(t.shape) for t in model.inputs]
    if len(shapes) != 1 or len(shapes[0]) != 2 or not isinstance(shapes[0][1], int):
        raise ValidationError(f"the Keras model's inputs {shapes} are not one [N, k] table")
    return int(shapes[0][1])


def keras_onnx(model: Any, width: int, *, input_name: str = "features", output_names: list[str] | None = None,
               opset: int = 15) -> bytes:  # fmt: skip
    """The model as ONNX: ``torch.onnx`` on the torch backend, ``tf2onnx`` on TensorFlow.

    One input ``input_name`` ``[N, width]`` float32; outputs named ``output_names``
    (default ``["output"]``, or ``output_0``, ``output_1``, ... for several).
    """
    which = backend()
    if which == "torch":
        return torch_module_onnx(model, width, input_name=input_name, output_names=output_names, opset=opset)
    if which == "tensorflow":
        import tensorflow as tf
        import tf2onnx

        spec = (tf.TensorSpec((None, width), tf.float32, name=input_name),)
        proto, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=opset)
        if output_names:
            rename_outputs(proto, output_names)
        return bytes(proto.SerializeToString())
    raise ValidationError(f"ONNX export of Keras models on the {which} backend is not supported")


def torch_module_onnx(module: Any, width: int, *, input_name: str = "features",
                      output_names: list[str] | None = None, opset: int = 15) -> bytes:  # fmt: skip
    """A ``torch.nn.Module`` taking ``[N, width]`` float32 as ONNX (TorchScript exporter, dynamic N)."""
    import torch

    example = torch.zeros(2, width)
    with torch.no_grad():
        out = module.eval()(example)
    count = len(out) if isinstance(out, list | tuple) else 1
    names = output_names or (["output"] if count == 1 else [f"output_{i}" for i in range(count)])
    if len(names) != count:
        raise ValidationError(f"the module returns {count} output(s); {len(names)} name(s) were given")
    buffer = io.BytesIO()
    torch.onnx.export(
        module,
        (example,),
        buffer,  # type: ignore[arg-type]
        input_names=[input_name],
        output_names=names,
        dynamic_axes={input_name: {0: "N"}, **{n: {0: "N"} for n in names}},
        opset_version=opset,
        dynamo=False,
    )
    return buffer.getvalue()


def rename_outputs(proto: Any, names: list[str]) -> None:
    """Rename a graph's outputs in place (and every node that reads or writes them)."""
    if len(names) != len(proto.graph.output):
        have = len(proto.graph.output)
        raise ValidationError(f"the graph has {have} output(s); {len(names)} name(s) given")
    mapping = {o.name: new for o, new in zip(proto.graph.output, names, strict=True)}
    for node in proto.graph.node:
        node.output[:] = [mapping.get(n, n) for n in node.output]
        node.input[:] = [mapping.get(n, n) for n in node.input]
    for output in proto.graph.output:
        output.name = mapping[output.name]
