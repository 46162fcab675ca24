"""Score a dataset with a registered scikit-learn version, loaded safely.

Model files are read through the registry (checksums verified) and loaded with
skops, which refuses every type outside a trusted list: only scikit-learn,
NumPy and SciPy types are trusted here, never arbitrary code as pickle would
allow.

Example:
    >>> import tempfile, skops.io as sio
    >>> from sklearn.linear_model import LogisticRegression
    >>> from storage.registry.core import Registry
    >>> home = tempfile.mkdtemp()
    >>> reg = Registry.open(f"sqlite:///{home}/m.db", f"{home}/a")
    >>> clf = LogisticRegression().fit([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1])
    >>> _ = reg.create_model("toy")
    >>> _ = reg.create_version("toy", framework="sklearn", artifacts={"model.skops": sio.dumps(clf)},
    ...                        signature={"inputs": [{"name": "x", "type": "float"}]})
    >>> load_sklearn_model(reg, "toy", 1).predict([[2.5]]).tolist()
    [1]
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from storage.errors import ValidationError
from storage.registry.core import Registry
from storage.registry.model_format import (
    ONNX_FILE,
    input_types,
    load_trusted_skops,
)
from storage.registry.model_format import TRUSTED_PREFIXES as BASE_TRUSTED_PREFIXES
from storage.registry.onnx_outputs import classify_outputs
from storage.registry.reads import VersionRef
from storage.registry.records import ModelVersion

TRUSTED_PREFIXES: tuple[str, ...] = BASE_TRUSTED_PREFIXES
#: The training pipeline's own transformer (``InteractionFeatures``), inside versions' model.skops files.
TRUSTED_PREFIXES += ("tasks.training.engineering.",)


def load_sklearn_model(registry: Registry, model: str, version: VersionRef, name: str | None = None) -> Any:
    """The version's skops model file, verified and loaded with only trusted types."""
    return _load_skops(registry, registry.get_version(model, version), name)


def feature_columns(registry: Registry, model: str, version: VersionRef, frame: pd.DataFrame) -> list[str]:
    """The version's input columns from its signature, all present in ``frame``."""
    return _columns(registry.get_version(model, version), frame)


def _load_skops(registry: Registry, found: ModelVersion, name: str | None) -> Any:
    candidates = [a.name for a in found.artifacts if a.name.endswith(".skops")]
    artifact = name or (candidates[0] if candidates else None)
    if artifact is None:
        raise ValidationError(f"{found.model} version {found.number} has no .skops model file to score with")
    data = registry.load_artifact(found.model, found.number, artifact)
    what = f"{found.model} version {found.number}: {artifact}"
    return load_trusted_skops(data, what, prefixes=TRUSTED_PREFIXES)


def _columns(found: ModelVersion, frame: pd.DataFrame) -> list[str]:
    names = [field["name"] for field in (found.signature or {}).get("inputs", [])]
    if not names:
        raise ValidationError(f"{found.model} version {found.number} has no input signature to score with")
    missing = [n for n in names if n not in frame.columns]
    if missing:
        raise ValidationError(
            f"the dataset lacks input column(s) {', '.join(missing)} of {found.model} v{found.number}"
        )
    return names


def score(registry: Registry, model: str, version: VersionRef, frame: pd.DataFrame) -> Any:
    """Class predictions of a version for ``frame`` (columns from the version's signature).

    A version with an ONNX file (see :mod:`storage.registry.model_format`; kept only when
    it matched the native model) is scored by ONNX Runtime, so XGBoost and
    PyTorch versions score too; otherwise its skops file is loaded.
    """
    found = registry.get_version(model, version)
    inputs = frame[_columns(found, frame)]
    if any(a.name == ONNX_FILE for a in found.artifacts):
        return _onnx_labels(registry.load_artifact(model, found.number, ONNX_FILE), inputs, found.signature)
    estimator = _load_skops(registry, found, None)
    # An estimator fitted on an array expects an array; one fitted on a frame, the same column names.
    return estimator.predict(inputs if hasattr(estimator, "feature_names_in_") else inputs.to_numpy())


def _onnx_labels(onnx_bytes: bytes, inputs: pd.DataFrame, signature: Any) -> Any:
    import numpy as np
    import onnxruntime as ort

    from tasks.training.export import onnx_feed

    types = input_types(signature)
    cast = inputs.copy()
    for name in cast.columns:  # the graph's input types are the signature's, whatever the file held
        if types.get(name) == "float":
            cast[name] = pd.to_numeric(cast[name], errors="coerce").astype("float64")
        elif types.get(name) in ("int", "bool"):
            cast[name] = pd.to_numeric(cast[name], errors="coerce").astype("int64")
        else:
            cast[name] = cast[name].astype(object)
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    # What the outputs hold, as the model server reads them: a label, probabilities, logits, a value.
    plan = classify_outputs([(o.name, o.type, list(o.shape)) for o in session.get_outputs()], signature)
    wanted = plan.label or plan.regression or plan.probabilities or plan.logits or plan.positive
    out = session.run([wanted], onnx_feed(cast))[0]
    if wanted in (plan.label, plan.regression):
        return np.asarray(out).reshape(len(inputs))
    scores = np.asarray(out, dtype=np.float64).reshape(len(inputs), -1)
    index = (scores[:, 0] >= 0.5).astype(int) if scores.shape[1] == 1 else scores.argmax(axis=1)
    classes = list((signature or {}).get("classes") or [])
    return np.asarray(classes)[index] if classes else index
