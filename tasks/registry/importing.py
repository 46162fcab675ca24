"""Bring a model trained elsewhere into the registry, with its signature inferred and checked.

:func:`import_model` takes an ONNX file, a skops file, an XGBoost model (JSON or
UBJ), a PyTorch file (TorchScript, or a state dict with its module), a Keras
file (``.keras``) or a TensorFlow SavedModel folder (through tf2onnx when the
``tensorflow`` extra is installed), and registers a new version the model
server can serve (``mlops registry import`` is the same from a shell):

- the **signature** comes from what the format carries (ONNX inputs, a
  scikit-learn estimator's ``feature_names_in_``, XGBoost's feature names), a
  ``--signature`` file, or a sample's columns, in that order of precedence
  reversed: what is declared wins, and must agree with the file;
- ONNX **outputs** are classified (label, probabilities, single softmax,
  logits, regression) by :func:`storage.registry.onnx_outputs.classify_outputs`;
  an ambiguous model is refused with the way to declare it;
- a **sample** (CSV, Parquet, JSON rows) is run through the graph: its columns
  must match the inputs, probabilities must be probabilities, and the ONNX
  answer must match the framework's own (max |ONNX − framework| ≤ 1e-4).

Example:
    >>> import io, tempfile, torch
    >>> from pathlib import Path
    >>> from storage.registry.core import Registry
    >>> home = Path(tempfile.mkdtemp())
    >>> net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Softmax(dim=1))
    >>> axes = {"x": {0: "N"}, "scores": {0: "N"}}
    >>> torch.onnx.export(net, (torch.zeros(1, 2),), home / "m.onnx", input_names=["x"],
    ...                   output_names=["scores"], dynamic_axes=axes, dynamo=False)
    >>> reg = Registry.open(f"sqlite:///{home}/m.db", str(home / "a"))
    >>> result = import_model(reg, "toy", home / "m.onnx")
    >>> result.version.signature["task"], result.outputs
    ('classification', "classification: probabilities from 'scores', label = argmax")
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from storage.errors import ValidationError
from storage.registry.core import Registry
from storage.registry.model_format import INPUT_TYPES, ONNX_FILE, column_type, input_columns
from storage.registry.onnx_outputs import OutputPlan, classify_outputs
from storage.registry.records import ModelVersion, Record
from tasks.registry import converters as cv

#: Largest |ONNX − framework| on the sample for an import to go ahead.
PARITY_TOLERANCE = 1e-4
_ONNX_TYPES = {"float": "float", "double": "float", "float16": "float", "bool": "bool", "string": "string"}
_NUMPY = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(int64)": np.int64,
          "tensor(int32)": np.int32, "tensor(bool)": np.bool_, "tensor(string)": np.object_}  # fmt: skip


@dataclass(frozen=True)
class ImportResult(Record):
    """What an import registered, how it is served, and what was checked."""

    version: ModelVersion
    framework: str
    runtime: str
    outputs: str
    parity: float | None
    sample_rows: int


def read_sample(path: str | Path) -> pd.DataFrame:
    """Rows of inputs from a CSV, Parquet, JSON or JSON-lines file."""
    file = Path(path)
    suffix = file.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            frame = pd.read_parquet(file)
        elif suffix in (".json", ".jsonl", ".ndjson"):
            frame = pd.read_json(file, lines=suffix != ".json" or file.read_text().lstrip().startswith("{"))
        else:
            frame = pd.read_csv(file)
    except (OSError, ValueError) as exc:
        raise ValidationError(f"cannot read sample {file}: {exc}") from None
    if frame.empty:
        raise ValidationError(f"sample {file} holds no rows")
    return frame


def _onnx_type(type_name: str) -> str:
    inner = type_name.removeprefix("tensor(").removesuffix(")")
    return _ONNX_TYPES.get(inner, "int" if "int" in inner else "float")


def _graph_inputs(
    session: Any, declared: list[dict[str, Any]], sample: pd.DataFrame | None
) -> list[dict[str, Any]]:
    """The signature's inputs from the graph: one per input tensor, or the columns of one matrix."""
    nodes = session.get_inputs()
    if any(len(n.shape) > 2 for n in nodes):
        raise ValidationError("the model takes inputs of more than two dimensions: only tables can be served")
    matrix = len(nodes) == 1 and len(nodes[0].shape) == 2 and nodes[0].shape[1] != 1
    if not matrix:
        found = [{"name": n.name, "type": _onnx_type(n.type)} for n in nodes]
        if declared and [d["name"] for d in declared] != [f["name"] for f in found]:
            names = ", ".join(f["name"] for f in found)
            raise ValidationError(f"the signature's inputs do not match the graph's inputs ({names})")
        return declared or found
    width = nodes[0].shape[1] if isinstance(nodes[0].shape[1], int) else None
    kind = _onnx_type(nodes[0].type)
    if declared:
        columns = declared
    elif sample is not None:
        columns = [{"name": str(c), "type": kind} for c in sample.columns[: width or len(sample.columns)]]
    elif width:
        columns = [{"name": f"{nodes[0].name}_{i}", "type": kind} for i in range(width)]
    else:
        raise ValidationError("the graph takes one matrix of unknown width: give --signature or --sample")
    if width is not None and len(columns) != width:
        raise ValidationError(
            f"the graph's input {nodes[0].name!r} has {width} columns; {len(columns)} are named"
        )
    if columns and columns[0]["name"] == nodes[0].name:
        raise ValidationError(f"a column may not be named as the graph's matrix input {nodes[0].name!r}")
    return columns


def _graph_classes(onnx_bytes: bytes) -> list[Any] | None:
    """Class labels an ai.onnx.ml classifier node carries (skl2onnx, onnxmltools), if any."""
    import onnx

    for node in onnx.load_from_string(onnx_bytes).graph.node:
        for attr in node.attribute:
            if attr.name == "classlabels_int64s" and attr.ints:
                return [int(v) for v in attr.ints]
            if attr.name == "classlabels_strings" and attr.strings:
                return [v.decode() for v in attr.strings]
    return None


def _feed(session: Any, frame: pd.DataFrame, columns: Sequence[str]) -> dict[str, np.ndarray]:
    nodes = session.get_inputs()
    if len(nodes) == 1 and nodes[0].name not in frame.columns:
        dtype = _NUMPY.get(nodes[0].type, np.float32)
        return {nodes[0].name: frame[list(columns)].to_numpy().astype(dtype)}
    feed = {}
    for node in nodes:
        dtype = _NUMPY.get(node.type, np.float32)
        col = frame[node.name]
        values = (
            col.fillna("").astype(str).to_numpy(dtype=object)
            if dtype is np.object_
            else col.to_numpy().astype(dtype)
        )
        feed[node.name] = values.reshape(-1, 1) if len(node.shape) == 2 else values
    return feed


def _check_sample(sample: pd.DataFrame, signature: Mapping[str, Any]) -> pd.DataFrame:
    names = input_columns(signature)
    missing = [n for n in names if n not in sample.columns]
    if missing:
        raise ValidationError(
            f"the sample has no column(s) {', '.join(missing)} (the model's inputs: {', '.join(names)})"
        )
    for field in signature["inputs"]:
        have, want = column_type(sample[field["name"]].dtype), field.get("type", "float")
        if want not in INPUT_TYPES:
            raise ValidationError(
                f"input {field['name']!r}: type {want!r} is not one of {', '.join(INPUT_TYPES)}"
            )
        if (want in ("float", "int") and have not in ("float", "int", "bool")) or (
            want == "string" and have != "string"
        ):
            raise ValidationError(
                f"sample column {field['name']!r} holds {have} values; the model takes {want}"
            )
    return sample[names]


def _check_outputs(plan: OutputPlan, got: Mapping[str, Any], rows: int) -> None:
    for name in plan.fetch:
        value = got[name]
        count = len(value) if isinstance(value, list) else np.asarray(value).shape[0]
        if count != rows:
            raise ValidationError(f"output {name!r} answers {count} rows for {rows} sample rows")
    if plan.probabilities and not isinstance(got[plan.probabilities], list):
        probs = np.asarray(got[plan.probabilities], dtype=np.float64)
        if probs.min() < -1e-6 or probs.max() > 1 + 1e-6 or np.abs(probs.sum(axis=1) - 1).max() > 1e-3:
            raise ValidationError(
                f"output {plan.probabilities!r} does not hold probabilities on the sample (rows do not sum "
                f'to 1): declare it {{"name": "{plan.probabilities}", "role": "logits"}} in the signature'
            )


def _parity(reference: np.ndarray, got: Mapping[str, Any]) -> float:
    """max |ONNX − framework| over the output that matches the framework's output best."""
    ref = np.asarray(reference, dtype=np.float64).reshape(len(reference), -1)
    diffs = [
        float(np.max(np.abs(np.asarray(v, dtype=np.float64).reshape(len(ref), -1) - ref)))
        for v in got.values()
        if not isinstance(v, list) and np.asarray(v).size == ref.size and np.asarray(v).dtype.kind in "fiu"
    ]
    if not diffs:
        raise ValidationError(f"no ONNX output has the shape of the framework's own output {list(ref.shape)}")
    return min(diffs)


def _convert(
    framework: str, path: Path, width: int | None, sample: np.ndarray | None, **options: Any
) -> cv.Converted:
    if framework == "onnx":
        return cv.convert_onnx(path)
    if framework == "sklearn":
        return cv.convert_skops(path, options.get("trusted_types") or ())
    if framework == "xgboost":
        return cv.convert_xgboost(path)
    if framework == "pytorch":
        return cv.convert_pytorch(
            path, width, module=options.get("module"), module_args=options.get("module_args")
        )
    if framework == "keras":
        return cv.convert_keras(path)
    if framework == "tensorflow":
        return cv.convert_saved_model(path, sample)
    raise ValidationError(f"framework {framework!r} is not one of {', '.join(cv.IMPORT_FRAMEWORKS)}")


def import_model(
    registry: Registry,
    model: str,
    path: str | Path,
    *,
    framework: str | None = None,
    signature: Mapping[str, Any] | None = None,
    sample: str | Path | pd.DataFrame | None = None,
    task: str | None = None,
    classes: Sequence[Any] | None = None,
    module: str | None = None,
    module_args: Mapping[str, Any] | None = None,
    trusted_types: Sequence[str] = (),
    description: str = "",
    tags: Mapping[str, str] | None = None,
    actor: str | None = None,
) -> ImportResult:
    """Register ``path`` as a new version of ``model`` (created when new); see the module docs.

    Raises:
        ValidationError: an unreadable or unsafe file, a signature that does not fit, outputs that
            cannot be read without a declaration (:class:`~storage.registry.onnx_outputs.AmbiguousOutputs`),
            a sample that fails, an ONNX graph that disagrees with its framework.
    """
    file = Path(path)
    kind = framework or cv.detect_framework(file)
    sig: dict[str, Any] = dict(signature or {})
    if task is not None:
        sig["task"] = task
    if classes is not None:
        sig["classes"] = list(classes)
    rows = sample if isinstance(sample, pd.DataFrame) else read_sample(sample) if sample is not None else None
    declared = [dict(f) for f in sig.get("inputs") or []]
    width = len(declared) or (None if rows is None else len(rows.columns))
    matrix = None
    if rows is not None and kind == "tensorflow":
        names = [f["name"] for f in declared] or list(rows.columns)
        matrix = rows[names].to_numpy(dtype=np.float32)
    converted = _convert(
        kind, file, width, matrix, module=module, module_args=module_args, trusted_types=trusted_types
    )
    files = {k: v for k, v in converted.files.items() if v}
    if converted.task and "task" not in sig:
        sig["task"] = converted.task
    if converted.classes and "classes" not in sig:
        sig["classes"] = converted.classes
    parity: float | None = None
    if ONNX_FILE in files:
        plan, parity = _inspect_onnx(files[ONNX_FILE], sig, declared, rows, converted)
        runtime, described = "onnx", plan.describe()
    else:
        sig["inputs"] = declared or _native_inputs(converted, rows)
        sig.setdefault("task", "classification")
        if rows is not None:
            _check_sample(rows, sig)
        runtime, described = ("xgboost" if kind == "xgboost" else "sklearn"), f"{sig['task']} (native)"
    registry.ensure_model(model)
    version = registry.create_version(
        model,
        framework=kind,
        artifacts=files,
        signature=sig,
        description=description,
        tags={**dict(tags or {}), "imported_from": file.name},
        extra={"import": {**converted.notes, "source": file.name, "parity": parity,
                          "sample_rows": 0 if rows is None else len(rows)}},
        actor=actor,
    )  # fmt: skip
    return ImportResult(version, kind, runtime, described, parity, 0 if rows is None else len(rows))


def _native_inputs(converted: cv.Converted, rows: pd.DataFrame | None) -> list[dict[str, Any]]:
    if converted.feature_names:
        types = {str(c): column_type(rows[c].dtype) for c in rows.columns} if rows is not None else {}
        return [{"name": n, "type": types.get(n, "float")} for n in converted.feature_names]
    if rows is not None:
        return [{"name": str(c), "type": column_type(t)} for c, t in rows.dtypes.items()]
    if converted.width:
        return [{"name": f"f{i}", "type": "float"} for i in range(converted.width)]
    raise ValidationError("the model file does not name its inputs: give --signature or --sample")


def _inspect_onnx(
    onnx_bytes: bytes,
    sig: dict[str, Any],
    declared: list[dict[str, Any]],
    rows: pd.DataFrame | None,
    converted: cv.Converted,
) -> tuple[OutputPlan, float | None]:
    """Infer inputs and outputs of the graph into ``sig``, and check them on the sample."""
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    except Exception as exc:  # not a valid graph
        raise ValidationError(f"the ONNX graph does not load: {type(exc).__name__}: {exc}") from None
    if converted.feature_names and not declared and converted.width:
        declared = [{"name": n, "type": "float"} for n in converted.feature_names]
    sig["inputs"] = _graph_inputs(session, declared, rows)
    plan = classify_outputs([(o.name, o.type, list(o.shape)) for o in session.get_outputs()], sig)
    roles = {o["name"]: o for o in plan.roles()}
    types = {o.name: _onnx_type(o.type) for o in session.get_outputs()}
    sig["outputs"] = [{**r, "type": types[n]} for n, r in roles.items()]
    sig["task"] = plan.task
    if plan.task == "classification" and not sig.get("classes"):
        found = _graph_classes(onnx_bytes) or (list(range(plan.n_classes)) if plan.n_classes else None)
        if found:
            sig["classes"] = found
    if plan.task == "regression":
        sig.pop("classes", None)
    if rows is None:
        return plan, None
    frame = _check_sample(rows, sig)
    names = [o.name for o in session.get_outputs()]
    try:
        got = dict(zip(names, session.run(names, _feed(session, frame, input_columns(sig))), strict=True))
    except Exception as exc:  # the graph rejects the sample: the signature does not fit
        raise ValidationError(f"the model fails on the sample: {type(exc).__name__}: {exc}") from None
    _check_outputs(plan, got, len(frame))
    if converted.reference is None:
        return plan, None
    matrix = frame.to_numpy(dtype=np.float32)
    diff = _parity(converted.reference(matrix), got)
    if not np.isfinite(diff) or diff > PARITY_TOLERANCE:
        raise ValidationError(
            f"the ONNX graph differs from the framework's own answer by {diff:.3g} (> {PARITY_TOLERANCE:g}) "
            f"on {len(frame)} sample rows: not imported"
        )
    return plan, diff
