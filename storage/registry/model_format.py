"""How a model version's files and signature are laid out.

The training pipeline writes versions in this layout and the model server reads
them, so both sides name files through these constants.

Files of a version (each one optional except where said):

==================  =====================================================================
file                content
==================  =====================================================================
``model.onnx``      the whole pipeline (preprocessing + model) as ONNX, kept only when its
                    predictions match the native model (see ``extra["export"]``). One
                    input per raw column, named as the column, shape ``[N, 1]``
                    (float/int64/string tensors; a missing string is fed as ``""``,
                    since ONNX string tensors hold no nulls); outputs ``label`` ``[N]`` and
                    ``probabilities`` ``[N, C]`` for classifiers, ``variable`` ``[N, 1]``
                    for regressors.
``model.skops``     scikit-learn: the fitted ``Pipeline`` (preprocessing + estimator),
                    fed a DataFrame of the input columns; loaded with trusted types only.
``preprocess.skops``  XGBoost and PyTorch versions: the fitted preprocessing
                    (``ColumnTransformer``) turning the input columns into a float matrix.
``model.ubj``       XGBoost: the scikit-learn wrapper saved with ``save_model`` (UBJSON).
``model.pt``        PyTorch: the state dict (loaded with ``weights_only=True``).
``model_config.json``  PyTorch: the architecture's keyword arguments.
``model.keras``     Keras: the model (probabilities or values out), loaded in safe mode; with
                    ``preprocess.skops`` for versions the pipeline trained.
``model.pkl``       a pickle; loaded only when the operator explicitly trusts pickles.
==================  =====================================================================

The signature (``ModelVersion.signature``) is a JSON object::

    {"inputs": [{"name": "amount", "type": "float"}, {"name": "country", "type": "string"}],
     "outputs": [{"name": "label", "type": "int"}, {"name": "probabilities", "type": "float"}],
     "task": "classification", "classes": [0, 1]}

Input types are ``float``, ``int``, ``bool`` or ``string``; ``task`` is
``classification`` or ``regression``; ``classes`` only for classification.
An output may carry a ``role`` (``label``, ``probabilities``, ``logits``,
``regression``, ``ignore``): it tells the ONNX runtime what an imported graph's
output holds where names, types and shapes do not (see
:mod:`storage.registry.onnx_outputs`).

Example:
    >>> import pandas as pd
    >>> sig = signature_for(pd.DataFrame({"amount": [1.5], "country": ["NL"]}), "classification", [0, 1])
    >>> input_columns(sig), sig["task"], [o["name"] for o in sig["outputs"]]
    (['amount', 'country'], 'classification', ['label', 'probabilities'])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import pandas as pd

from storage.errors import ValidationError

ONNX_FILE = "model.onnx"
SKOPS_FILE = "model.skops"
PREPROCESS_FILE = "preprocess.skops"
XGBOOST_FILE = "model.ubj"
TORCH_STATE_FILE = "model.pt"
TORCH_CONFIG_FILE = "model_config.json"
KERAS_FILE = "model.keras"
PICKLE_FILE = "model.pkl"

#: Type prefixes a skops file may hold without an explicit trust list: data and
#: scikit-learn objects, never arbitrary code as a pickle could run.
TRUSTED_PREFIXES: tuple[str, ...] = ("sklearn.", "numpy.", "scipy.", "builtins.")

#: ONNX output names (scikit-learn-onnx's own defaults, with ZipMap off).
ONNX_LABEL = "label"
ONNX_PROBABILITIES = "probabilities"
ONNX_REGRESSION = "variable"

Task = Literal["classification", "regression"]
INPUT_TYPES = ("float", "int", "bool", "string")


def column_type(dtype: Any) -> str:
    """The signature type of a pandas dtype.

    >>> column_type(pd.Series([1.0]).dtype), column_type(pd.Series(["a"]).dtype)
    ('float', 'string')
    """
    if pd.api.types.is_bool_dtype(dtype):
        return "bool"
    if pd.api.types.is_integer_dtype(dtype):
        return "int"
    if pd.api.types.is_numeric_dtype(dtype):
        return "float"
    return "string"


def signature_for(frame: pd.DataFrame, task: Task, classes: Sequence[Any] | None = None) -> dict[str, Any]:
    """The signature of a model fed ``frame``'s columns."""
    inputs = [{"name": str(name), "type": column_type(dtype)} for name, dtype in frame.dtypes.items()]
    if task == "classification":
        outputs = [{"name": ONNX_LABEL, "type": "int"}, {"name": ONNX_PROBABILITIES, "type": "float"}]
    else:
        outputs = [{"name": ONNX_REGRESSION, "type": "float"}]
    sig: dict[str, Any] = {"inputs": inputs, "outputs": outputs, "task": task}
    if task == "classification":
        sig["classes"] = [c.item() if hasattr(c, "item") else c for c in (classes or [])]
    return sig


def input_columns(signature: Mapping[str, Any] | None) -> list[str]:
    """The input column names of a signature, in order; an error when there are none."""
    names = [str(field["name"]) for field in (signature or {}).get("inputs", [])]
    if not names:
        raise ValidationError("the model version has no input signature")
    return names


def input_types(signature: Mapping[str, Any] | None) -> dict[str, str]:
    """Column name → signature type."""
    return {str(f["name"]): str(f.get("type", "float")) for f in (signature or {}).get("inputs", [])}


def load_trusted_skops(
    data: bytes, what: str, *, prefixes: tuple[str, ...] = TRUSTED_PREFIXES, types: Sequence[str] = ()
) -> Any:
    """Load skops bytes when every type in them is trusted; otherwise a ValidationError naming them.

    A type is trusted when it starts with one of ``prefixes`` or is listed in ``types``.

    Example:
        >>> import skops.io as sio
        >>> from sklearn.preprocessing import StandardScaler
        >>> type(load_trusted_skops(sio.dumps(StandardScaler()), "scaler")).__name__
        'StandardScaler'
    """
    import skops.io as sio

    found = sio.get_untrusted_types(data=data)
    allowed = set(types)
    untrusted = [t for t in found if not t.startswith(prefixes) and t not in allowed]
    if untrusted:
        raise ValidationError(f"{what} holds untrusted types: {', '.join(untrusted)}")
    return sio.loads(data, trusted=found)
