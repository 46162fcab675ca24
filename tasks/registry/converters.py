"""Model files from other frameworks → what the registry stores and the server runs.

Each ``convert_*`` function reads one framework's file and returns a
:class:`Converted`: the version's files (``model.onnx`` where the model goes
through ONNX, or the native file a runtime loads), what the file says about
its inputs, and a function giving the framework's own answer on a matrix, so
the import can compare ONNX with it.

Nothing here runs code from the file: ONNX, skops (trusted types only),
XGBoost JSON/UBJ, TorchScript, a PyTorch state dict (``weights_only``) loaded
into a module the caller names, Keras files in safe mode. A TensorFlow
SavedModel is converted by ``tf2onnx`` in a child process
(:mod:`tasks.registry.tf_convert`), so TensorFlow never loads into the caller.

Example:
    >>> detect_framework(Path("model.onnx")), detect_framework(Path("booster.ubj"))
    ('onnx', 'xgboost')
"""

from __future__ import annotations

import importlib
import importlib.util
import io
import json
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from storage.errors import ValidationError
from storage.registry.model_format import KERAS_FILE, ONNX_FILE, SKOPS_FILE, XGBOOST_FILE, load_trusted_skops

#: Frameworks an import understands, and the registry's framework each is recorded as.
IMPORT_FRAMEWORKS = ("onnx", "sklearn", "xgboost", "pytorch", "keras", "tensorflow")
_SUFFIXES = {
    ".onnx": "onnx",
    ".skops": "sklearn",
    ".ubj": "xgboost",
    ".json": "xgboost",
    ".pt": "pytorch",
    ".pth": "pytorch",
    ".torchscript": "pytorch",
    ".keras": "keras",
    ".h5": "keras",
}
OPSET = 15


@dataclass
class Converted:
    """A converted model: its files, what it says about its inputs, and its own answer.

    Attributes:
        files: The version's files by name.
        width: Columns of its single matrix input, when it has one and says so.
        feature_names: Input column names the file carries (XGBoost, scikit-learn).
        task: ``classification``/``regression`` when the file says (XGBoost objective,
            a scikit-learn estimator), else None.
        classes: Class labels the file carries.
        reference: The framework's own output on a float32 matrix (for the parity check).
        notes: What the converter did, for the version's ``extra["import"]``.
    """

    files: dict[str, bytes]
    width: int | None = None
    feature_names: list[str] | None = None
    task: str | None = None
    classes: list[Any] | None = None
    reference: Callable[[np.ndarray], np.ndarray] | None = field(default=None, repr=False)
    notes: dict[str, Any] = field(default_factory=dict)


def detect_framework(path: Path) -> str:
    """The framework of a file by its form (a SavedModel is a folder holding ``saved_model.pb``)."""
    if path.is_dir():
        if (path / "saved_model.pb").exists():
            return "tensorflow"
        raise ValidationError(f"{path} is a folder without saved_model.pb: not a TensorFlow SavedModel")
    found = _SUFFIXES.get(path.suffix.lower())
    if found is None:
        raise ValidationError(
            f"cannot tell the framework of {path.name}: give --framework ({', '.join(IMPORT_FRAMEWORKS)})"
        )
    return found


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ValidationError(f"cannot read {path}: {exc}") from None


# ------------------------------------------------------------------ ONNX, scikit-learn, XGBoost
def convert_onnx(path: Path) -> Converted:
    """An ONNX file as it is."""
    return Converted({ONNX_FILE: _read(path)}, notes={"converter": "none (ONNX file)"})


def convert_skops(path: Path, trusted_types: Sequence[str] = ()) -> Converted:
    """A skops file (a fitted estimator or ``Pipeline``), loaded with trusted types only."""
    data = _read(path)
    model = load_trusted_skops(data, path.name, types=tuple(trusted_types))
    if not hasattr(model, "predict"):
        raise ValidationError(f"{path.name} holds a {type(model).__name__}, not a fitted estimator")
    names = [str(n) for n in getattr(model, "feature_names_in_", [])] or None
    width = getattr(model, "n_features_in_", None)
    classes = getattr(model, "classes_", None)
    task = "classification" if classes is not None else "regression"
    return Converted(
        {SKOPS_FILE: data},
        width=int(width) if width is not None else None,
        feature_names=names,
        task=task,
        classes=[c.item() if hasattr(c, "item") else c for c in classes] if classes is not None else None,
        notes={"converter": "none (served by scikit-learn through skops)", "estimator": type(model).__name__},
    )


def convert_xgboost(path: Path) -> Converted:
    """An XGBoost model (JSON or UBJ), stored as ``model.ubj`` and served by XGBoost."""
    import xgboost as xgb

    booster = xgb.Booster()
    try:
        booster.load_model(bytearray(_read(path)))
    except xgb.core.XGBoostError as exc:
        raise ValidationError(f"{path.name} is not an XGBoost model: {str(exc).splitlines()[0]}") from None
    config = json.loads(booster.save_config())
    objective = str(config["learner"]["objective"]["name"])
    task = "classification" if objective.startswith(("binary:", "multi:")) else "regression"
    n_classes = int(config["learner"]["learner_model_param"].get("num_class", "0") or 0)
    classes = list(range(max(n_classes, 2))) if task == "classification" else None
    raw = bytes(booster.save_raw(raw_format="ubj"))
    return Converted(
        {XGBOOST_FILE: raw},
        width=booster.num_features(),
        feature_names=list(booster.feature_names) if booster.feature_names else None,
        task=task,
        classes=classes,
        notes={"converter": "none (served by XGBoost)", "objective": objective},
    )


# ------------------------------------------------------------------ PyTorch
def _module_class(path: str) -> type:
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise ValidationError(f"--module {path!r} is not an import path of the form package.module:Class")
    try:
        found = getattr(importlib.import_module(module_name), attr, None)
    except ImportError as exc:
        raise ValidationError(f"--module {path!r}: cannot import {module_name!r} ({exc})") from None
    if not isinstance(found, type):
        raise ValidationError(f"--module {path!r}: {module_name} has no class {attr!r}")
    return found


def convert_pytorch(
    path: Path, width: int | None, *, module: str | None = None, module_args: Mapping[str, Any] | None = None
) -> Converted:
    """TorchScript, or a state dict loaded into ``module`` (``package.module:Class``), to ONNX.

    The graph's input is ``features`` ``[N, width]``; its outputs are named ``output``
    (``output_0``, ``output_1``, ... when the module returns several).
    """
    import torch

    from storage.registry.keras_model import torch_module_onnx

    data = _read(path)
    if module is None:
        try:
            net = torch.jit.load(io.BytesIO(data), map_location="cpu")
        except Exception as exc:  # not TorchScript: say what else works
            raise ValidationError(
                f"{path.name} is not a TorchScript file ({type(exc).__name__}); for a state dict give "
                "--module package.module:Class (and --module-args JSON)"
            ) from None
        kind = "TorchScript"
    else:
        cls = _module_class(module)
        net = cls(**dict(module_args or {}))
        try:
            state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
            net.load_state_dict(state)
        except Exception as exc:  # wrong file or wrong module
            raise ValidationError(f"{path.name} does not load into {module}: {exc}") from None
        kind = f"state dict into {module}"
    width = width or _first_linear_width(net)
    if width is None:
        raise ValidationError(
            f"{path.name} does not say how many input columns it takes: give --signature or --sample"
        )
    net.eval()

    def reference(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            out = net(torch.as_tensor(np.asarray(x, dtype=np.float32)))
        first = out[0] if isinstance(out, list | tuple) else out
        return np.asarray(first.detach().cpu().numpy(), dtype=np.float64)

    onnx_bytes = torch_module_onnx(net, width, opset=OPSET)
    return Converted({ONNX_FILE: onnx_bytes}, width=width, reference=reference,
                     notes={"converter": f"torch.onnx ({kind})"})  # fmt: skip


def _first_linear_width(net: Any) -> int | None:
    for sub in net.modules():
        width = getattr(sub, "in_features", None)
        if isinstance(width, int):
            return width
    return None


# ------------------------------------------------------------------ Keras, TensorFlow
def convert_keras(path: Path) -> Converted:
    """A ``.keras`` (or ``.h5``) file, kept as ``model.keras`` and exported to ONNX."""
    from storage.registry.keras_model import backend, input_width, keras_onnx, keras_predict, load_keras_file

    model = load_keras_file(path)
    width = input_width(model)
    onnx_bytes = keras_onnx(model, width, opset=OPSET)
    converter = "torch.onnx" if backend() == "torch" else "tf2onnx"
    return Converted(
        {ONNX_FILE: onnx_bytes, KERAS_FILE: _read(path) if path.suffix == ".keras" else b""},
        width=width,
        reference=lambda x: keras_predict(model, x),
        notes={"converter": f"{converter} (Keras {backend()} backend)"},
    )


def tensorflow_missing() -> str | None:
    """Why a SavedModel cannot be converted here (None when tensorflow and tf2onnx are installed)."""
    missing = [m for m in ("tensorflow", "tf2onnx") if importlib.util.find_spec(m) is None]
    if missing:
        return (
            f"converting a TensorFlow SavedModel needs {' and '.join(missing)}: "
            "pip install 'dwcp-mlops[tensorflow]'"
        )
    return None


def convert_saved_model(path: Path, sample: np.ndarray | None = None, timeout: float = 600) -> Converted:
    """A SavedModel converted by tf2onnx in a child process (with TensorFlow's own answer on ``sample``)."""
    why = tensorflow_missing()
    if why:
        raise ValidationError(why)
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "model.onnx"
        command = [
            sys.executable,
            "-m",
            "tasks.registry.tf_convert",
            str(path),
            str(out),
            "--opset",
            str(OPSET),
        ]
        if sample is not None:
            np.save(Path(folder) / "sample.npy", sample.astype(np.float32))
            command += [
                "--sample",
                str(Path(folder) / "sample.npy"),
                "--reference",
                str(Path(folder) / "ref.npy"),
            ]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            raise ValidationError(f"tf2onnx could not convert {path.name}: {' | '.join(tail)}")
        onnx_bytes = out.read_bytes()
        expected = np.load(Path(folder) / "ref.npy") if sample is not None else None
    return Converted(
        {ONNX_FILE: onnx_bytes},
        reference=(lambda x: np.asarray(expected, dtype=np.float64)) if expected is not None else None,
        notes={"converter": "tf2onnx (SavedModel, in a child process)"},
    )
