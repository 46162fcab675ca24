"""The training pipeline's stages: load, validate, engineer, split, tune, train, export.

Each stage is a typed function with a retryable Prefect task beside it:
``data`` (load and fingerprint), ``data_checks`` (validate), ``engineering``
(a ``ColumnTransformer``), ``fit`` (split, train, cross-validate, holdout),
``tuning`` (Optuna trials fanned out to Dask), ``estimators`` (models by name)
and ``export`` (native files plus ONNX with a parity check).

Names are imported on first use, so importing the package stays cheap and no
import circle runs through it.

Example:
    >>> import tasks.training
    >>> 'load_dataset' in tasks.training.__all__
    True
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tasks.training.data import LoadedData, load_dataset
    from tasks.training.data_checks import ValidationReport, validate_frame
    from tasks.training.engineering import FeatureSpec, build_preprocessor, feature_spec
    from tasks.training.estimators import build_estimator
    from tasks.training.export import ExportResult, export_model
    from tasks.training.fit import TrainingSpec, compute_metrics, fit_pipeline
    from tasks.training.tuning import create_study, run_trial_chunk

_EXPORTS = {
    "load_dataset": "tasks.training.data",
    "LoadedData": "tasks.training.data",
    "validate_frame": "tasks.training.data_checks",
    "ValidationReport": "tasks.training.data_checks",
    "build_preprocessor": "tasks.training.engineering",
    "feature_spec": "tasks.training.engineering",
    "FeatureSpec": "tasks.training.engineering",
    "TrainingSpec": "tasks.training.fit",
    "fit_pipeline": "tasks.training.fit",
    "compute_metrics": "tasks.training.fit",
    "build_estimator": "tasks.training.estimators",
    "create_study": "tasks.training.tuning",
    "run_trial_chunk": "tasks.training.tuning",
    "export_model": "tasks.training.export",
    "ExportResult": "tasks.training.export",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
