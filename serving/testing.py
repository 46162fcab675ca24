"""Small demo models registered in the layout of :mod:`storage.registry.model_format`.

For tests, docs and benchmarks.

Each function trains on a small synthetic card-fraud table (``amount`` float,
``age`` int, ``country`` string; label 0/1) and registers one version whose
files select one runtime: ``onnx`` (the whole pipeline as ONNX), ``sklearn``
(``model.skops``), ``xgboost`` (``preprocess.skops`` + ``model.ubj``),
``pytorch`` (``preprocess.skops`` + ``model.pt`` + ``model_config.json``),
``pickle`` (``model.pkl``) or ``regression`` (an ONNX regressor).

Example:
    >>> import tempfile
    >>> from storage.registry.core import Registry
    >>> home = tempfile.mkdtemp()
    >>> reg = Registry.open(f"sqlite:///{home}/m.db", f"{home}/a")
    >>> register_demo(reg, "fraud", "sklearn").number
    1
    >>> demo_frame(3).columns.tolist()
    ['amount', 'age', 'country']
"""

from __future__ import annotations

import functools
import io
import json
import pickle
from typing import Any

import numpy as np
import pandas as pd

from storage.registry.core import Registry
from storage.registry.model_format import (
    ONNX_FILE,
    PICKLE_FILE,
    PREPROCESS_FILE,
    SKOPS_FILE,
    TORCH_CONFIG_FILE,
    TORCH_STATE_FILE,
    XGBOOST_FILE,
    signature_for,
)
from storage.registry.records import ModelVersion

KINDS = ("onnx", "sklearn", "xgboost", "pytorch", "pickle", "regression")
COUNTRIES = ("NL", "DE", "FR", "US")
_FRAMEWORK = {
    "onnx": "onnx",
    "sklearn": "sklearn",
    "xgboost": "xgboost",
    "pytorch": "pytorch",
    "pickle": "custom",
    "regression": "onnx",
}


def demo_frame(rows: int = 400, seed: int = 0) -> pd.DataFrame:
    """Input columns of the demo table."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "amount": rng.gamma(2.0, 50.0, rows).round(2),
            "age": rng.integers(18, 80, rows).astype(np.int64),
            "country": rng.choice(COUNTRIES, rows).astype(object),
        }
    )


def demo_target(frame: pd.DataFrame, seed: int = 0) -> np.ndarray:
    """Labels of the demo table: large amounts from young card holders abroad are fraud."""
    rng = np.random.default_rng(seed + 1)
    score = frame["amount"] / 100 - (frame["age"] - 18) / 40 + (frame["country"] == "US") * 1.0
    return (score + rng.normal(0, 0.5, len(frame)) > 0.6).astype(np.int64).to_numpy()


def preprocessor() -> Any:
    """Scale the numbers, one-hot encode the country."""
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    return ColumnTransformer(
        [
            ("num", StandardScaler(), ["amount", "age"]),
            ("cat", OneHotEncoder(handle_unknown="ignore", sparse_output=False), ["country"]),
        ]
    )


def demo_pipeline(
    frame: pd.DataFrame, y: np.ndarray, *, n_estimators: int = 20, regression: bool = False
) -> Any:
    """A fitted preprocessing + gradient boosting pipeline."""
    from sklearn.ensemble import GradientBoostingClassifier, GradientBoostingRegressor
    from sklearn.pipeline import Pipeline

    model: Any = (
        GradientBoostingRegressor(n_estimators=n_estimators, random_state=0)
        if regression
        else GradientBoostingClassifier(n_estimators=n_estimators, random_state=0)
    )
    return Pipeline([("pre", preprocessor()), ("model", model)]).fit(frame, y)


def pipeline_onnx(pipeline: Any, frame: pd.DataFrame) -> bytes:
    """The whole pipeline as ONNX, one ``[N, 1]`` input per column, ZipMap off."""
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType, Int64TensorType, StringTensorType

    types = []
    for name, dtype in frame.dtypes.items():
        if pd.api.types.is_integer_dtype(dtype):
            types.append((str(name), Int64TensorType([None, 1])))
        elif pd.api.types.is_numeric_dtype(dtype):
            types.append((str(name), FloatTensorType([None, 1])))
        else:
            types.append((str(name), StringTensorType([None, 1])))
    options = {id(pipeline.steps[-1][1]): {"zipmap": False}} if hasattr(pipeline[-1], "classes_") else None
    onx = to_onnx(pipeline, initial_types=types, options=options, target_opset=17)
    return bytes(onx.SerializeToString())


def demo_files(kind: str, *, rows: int = 400, n_estimators: int = 20, seed: int = 0) -> dict[str, bytes]:
    """The files of a demo version of ``kind`` (see the module docs); trained once per process."""
    return dict(_demo_files(kind, rows, n_estimators, seed))


@functools.lru_cache(maxsize=32)
def _demo_files(kind: str, rows: int, n_estimators: int, seed: int) -> dict[str, bytes]:
    import skops.io as sio

    frame = demo_frame(rows, seed)
    y = demo_target(frame, seed)
    if kind == "regression":
        values = frame["amount"].to_numpy() * 0.1 + frame["age"].to_numpy()
        return {
            ONNX_FILE: pipeline_onnx(
                demo_pipeline(frame, values, n_estimators=n_estimators, regression=True), frame
            )
        }
    if kind == "onnx":
        return {ONNX_FILE: pipeline_onnx(demo_pipeline(frame, y, n_estimators=n_estimators), frame)}
    if kind == "sklearn":
        return {SKOPS_FILE: sio.dumps(demo_pipeline(frame, y, n_estimators=n_estimators))}
    if kind == "pickle":
        return {PICKLE_FILE: pickle.dumps(demo_pipeline(frame, y, n_estimators=n_estimators))}
    pre = preprocessor().fit(frame)
    matrix = np.asarray(pre.transform(frame), dtype=np.float32)
    if kind == "xgboost":
        import xgboost as xgb

        booster = xgb.XGBClassifier(n_estimators=n_estimators, max_depth=3, tree_method="hist").fit(matrix, y)
        path = io.BytesIO()
        raw = booster.get_booster().save_raw("ubj")
        path.write(bytes(raw))
        return {PREPROCESS_FILE: sio.dumps(pre), XGBOOST_FILE: path.getvalue()}
    if kind == "pytorch":
        import torch

        from storage.registry.torch_mlp import TabularMLP, state_bytes

        torch.manual_seed(seed)
        config = {"n_features": matrix.shape[1], "n_outputs": 2, "hidden_dims": [16], "dropout": 0.0,
                  "task": "classification"}  # fmt: skip
        net = TabularMLP(**config)
        optimizer = torch.optim.Adam(net.parameters(), lr=0.05)
        x, target = torch.as_tensor(matrix), torch.as_tensor(y)
        for _ in range(60):
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(net(x), target)
            loss.backward()
            optimizer.step()
        return {
            PREPROCESS_FILE: sio.dumps(pre),
            TORCH_STATE_FILE: state_bytes(net),
            TORCH_CONFIG_FILE: json.dumps(config).encode(),
        }
    raise ValueError(f"demo kind {kind!r} is not one of {', '.join(KINDS)}")


def register_demo(
    registry: Registry,
    name: str,
    kind: str = "onnx",
    *,
    rows: int = 400,
    n_estimators: int = 20,
    seed: int = 0,
) -> ModelVersion:
    """Register a demo version of ``kind`` under model ``name`` (created when missing)."""
    frame = demo_frame(8, seed)
    task = "regression" if kind == "regression" else "classification"
    registry.ensure_model(name, description="demo card-fraud model")
    return registry.create_version(
        name,
        framework=_FRAMEWORK[kind],
        artifacts=demo_files(kind, rows=rows, n_estimators=n_estimators, seed=seed),
        signature=signature_for(frame, task, [0, 1] if task == "classification" else None),  # type: ignore[arg-type]
        description=f"demo {kind} model",
    )
