"""Prefect tasks over the feature store: ingest, materialize, statistics, training sets.

Each task opens the store from the ``MLOPS_*`` settings, does one thing and
returns plain dictionaries; the logic lives in :mod:`storage.features`.

Names are imported on first use, so importing the package stays cheap and no
import circle runs through it.

Example:
    >>> import tasks.features
    >>> 'ingest_feature_batch' in tasks.features.__all__
    True
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tasks.features.steps import (
        build_training_set,
        compute_feature_statistics,
        ingest_feature_batch,
        load_training_set,
        materialize_group,
    )

_EXPORTS = {
    "ingest_feature_batch": "tasks.features.steps",
    "materialize_group": "tasks.features.steps",
    "compute_feature_statistics": "tasks.features.steps",
    "build_training_set": "tasks.features.steps",
    "load_training_set": "tasks.features.steps",
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
