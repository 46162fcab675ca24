"""The feature store: definitions, offline Parquet, online values, statistics.

Entities, feature groups and features with their lifecycle (``definitions``,
``records``), batch validation on ingest, the offline store (Parquet read by an
in-memory DuckDB, point-in-time joins), the online store (SQLite or Redis) and
statistics with frozen histogram bins; :class:`FeatureStore` ties them together.

Names are imported on first use, so importing the package stays cheap and no
import circle runs through it.

Example:
    >>> import storage.features
    >>> 'FeatureStore' in storage.features.__all__
    True
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from storage.features.compaction import CompactionResult, compact
    from storage.features.offline import OfflineStore
    from storage.features.online import OnlineStore, RedisOnlineStore, SQLiteOnlineStore, open_online_store
    from storage.features.records import Entity, Feature, FeatureGroup
    from storage.features.stats import describe
    from storage.features.store import (
        FeatureStore,
        HistoricalFeatures,
        MaterializeResult,
        OnlineFeatures,
        fill_request_features,
    )
    from storage.features.validation import IngestResult

_EXPORTS = {
    "FeatureStore": "storage.features.store",
    "HistoricalFeatures": "storage.features.store",
    "OnlineFeatures": "storage.features.store",
    "MaterializeResult": "storage.features.store",
    "fill_request_features": "storage.features.store",
    "Entity": "storage.features.records",
    "FeatureGroup": "storage.features.records",
    "Feature": "storage.features.records",
    "OfflineStore": "storage.features.offline",
    "CompactionResult": "storage.features.compaction",
    "compact": "storage.features.compaction",
    "OnlineStore": "storage.features.online",
    "SQLiteOnlineStore": "storage.features.online",
    "RedisOnlineStore": "storage.features.online",
    "open_online_store": "storage.features.online",
    "IngestResult": "storage.features.validation",
    "describe": "storage.features.stats",
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
