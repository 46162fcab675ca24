"""The online data plane: the model server, its runtimes, model cache, prediction logging and traffic.

Names are imported on first use, so ``import serving`` stays cheap (the app pulls
in FastAPI, the runtimes ONNX Runtime, XGBoost and torch only when a version
needs them).

Example:
    >>> import serving
    >>> serving.ServeSettings(port=9000).port
    9000
    >>> sorted(serving.__all__)[:3]
    ['Batch', 'LoadedModel', 'LogBatch']
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ServeSettings": "serving.config",
    "create_app": "serving.app",
    "serve": "serving.server",
    "running_server": "serving.server",
    "ServerThread": "serving.server",
    "ModelCache": "serving.models",
    "LoadedModel": "serving.models",
    "ModelLoadError": "serving.models",
    "Runtime": "serving.runtimes",
    "Prediction": "serving.runtimes",
    "load_runtime": "serving.runtimes",
    "Batch": "serving.protocol",
    "RequestError": "serving.codec",
    "decode_infer_request": "serving.protocol",
    "decode_records": "serving.protocol",
    "PredictionLogWriter": "serving.predlog",
    "LogBatch": "serving.predlog",
    "ServingMetrics": "serving.metrics",
    "require_admin": "serving.auth",
    "require_api_key": "serving.auth",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'serving' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
