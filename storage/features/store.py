"""The feature store: definitions, offline Parquet, online values, statistics, in one object.

:class:`FeatureStore` is what the tasks, the CLI, the training pipeline and the
serving layer use. Features are named ``group:feature`` (the newest active version),
``group:feature@N`` or ``group:*``.

Example:
    >>> import tempfile, pandas as pd
    >>> from blocks.settings import MlopsSettings
    >>> from storage.features.store import FeatureStore
    >>> store = FeatureStore.from_settings(MlopsSettings(home=tempfile.mkdtemp()))
    >>> _ = store.definitions.create_entity("driver", join_keys=["driver_id"])
    >>> _ = store.definitions.create_group("trips", entity="driver", event_time_column="ts",
    ...                                    ttl_seconds=86400)
    >>> _ = store.definitions.register_feature("trips", "fare", "float")
    >>> _ = store.ingest("trips", pd.DataFrame({"driver_id": [7], "ts": [pd.Timestamp("2026-01-01")],
    ...                                         "fare": [9.5]}))
    >>> hist = store.get_historical_features(
    ...     pd.DataFrame({"driver_id": [7], "event_timestamp": [pd.Timestamp("2026-01-01 12:00")]}),
    ...     ["trips:fare"])
    >>> hist.frame["fare"].tolist(), hist.null_share, hist.feature_refs
    ([9.5], {'fare': 0.0}, ['trips:fare@1'])
    >>> _ = store.materialize("trips", end=pd.Timestamp("2026-01-02", tz="UTC").to_pydatetime())
    >>> store.get_online_features([{"driver_id": 7}], ["trips:fare"]).rows
    [{'driver_id': 7, 'fare': 9.5}]
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from blocks.settings import MlopsSettings, get_settings
from storage.db import Database
from storage.errors import ValidationError
from storage.features.definitions import Feature, FeatureDefinitions, FeatureGroup
from storage.features.offline import IngestResult, OfflineStore
from storage.features.online import OnlineStore, entity_key, open_online_store
from storage.features.stats import describe, load_stats, save_stats
from storage.objectstore import read_frame

Spec = tuple[FeatureGroup, list[Feature]]


@dataclass(frozen=True)
class HistoricalFeatures:
    """A point-in-time frame, the null share per feature and the feature versions used."""

    frame: pd.DataFrame
    null_share: dict[str, float]
    feature_refs: list[str]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (not the frame)."""
        return {"rows": len(self.frame), "null_share": self.null_share, "feature_refs": self.feature_refs}


@dataclass(frozen=True)
class OnlineFeatures:
    """Online values per entity row, with a status per feature: present, stale or missing."""

    rows: list[dict[str, Any]]
    statuses: list[dict[str, str]]
    feature_refs: list[str] = field(default_factory=list)

    @property
    def stale(self) -> list[bool]:
        """Per row: True when any of its values is older than its group's TTL."""
        return [any(s == "stale" for s in st.values()) for st in self.statuses]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary."""
        return {"rows": self.rows, "statuses": self.statuses, "feature_refs": self.feature_refs}


@dataclass(frozen=True)
class MaterializeResult:
    """One materialization window and what it wrote."""

    group: str
    start: datetime | None
    end: datetime
    rows: int
    online_store: str

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary."""
        return {
            "group": self.group,
            "start": self.start.isoformat() if self.start else None,
            "end": self.end.isoformat(),
            "rows": self.rows,
            "online_store": self.online_store,
        }


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _us(value: datetime) -> int:
    return int(pd.Timestamp(value).value // 1000)


class FeatureStore:
    """Definitions in the metadata DB, values in Parquet and in an online store.

    Args:
        db: The metadata database.
        feature_root: Folder of the offline store.
        online_store_url: ``sqlite:///...`` or ``redis://...``.
        actor: Who makes changes (audit log).
        definition_cache_seconds: How long resolved feature references are
            reused by online reads; changes made through ``definitions``
            clear the cache, changes made elsewhere show after this long
            (or after :meth:`invalidate`).
    """

    def __init__(
        self,
        db: Database,
        feature_root: str,
        online_store_url: str,
        *,
        actor: str = "unknown",
        definition_cache_seconds: float = 5.0,
    ) -> None:
        self.db = db
        self.definitions = FeatureDefinitions(db, actor=actor)
        self.offline = OfflineStore(feature_root)
        self.online_store_url = online_store_url
        self._online: OnlineStore | None = None
        self._cache_seconds = definition_cache_seconds
        self._cache: dict[tuple[str, ...], tuple[float, int, list[Spec]]] = {}

    @classmethod
    def from_settings(cls, settings: MlopsSettings | None = None) -> FeatureStore:
        """The store ``MLOPS_*`` settings describe."""
        s = settings or get_settings()
        return cls(
            Database(s.resolved_database_url()),
            s.resolved_feature_root(),
            s.resolved_online_store_url(),
            actor=s.resolved_user(),
        )

    @property
    def online(self) -> OnlineStore:
        """The online store (opened on first use)."""
        if self._online is None:
            self._online = open_online_store(self.online_store_url)
        return self._online

    def close(self) -> None:
        """Close the online store and the database pools."""
        if self._online is not None:
            self._online.close()
        self.db.dispose()

    # ---------------------------------------------------------- resolving
    def resolve(self, features: Sequence[str], *, cached: bool = False) -> list[Spec]:
        """Group feature references by group, keeping the order given."""
        if isinstance(features, str) or not features:
            raise ValidationError("features must be a non-empty list of group:feature references")
        key = tuple(features)
        hit = self._cache.get(key) if cached else None
        generation = self.definitions.generation
        if hit is not None and hit[1] == generation and time.monotonic() - hit[0] < self._cache_seconds:
            return hit[2]
        specs: dict[str, Spec] = {}
        for feat in self.definitions.resolve(features):
            if feat.group not in specs:
                specs[feat.group] = (self.definitions.get_group(feat.group), [])
            specs[feat.group][1].append(feat)
        out = list(specs.values())
        self._cache[key] = (time.monotonic(), generation, out)
        return out

    def invalidate(self) -> None:
        """Forget resolved references (after definitions changed elsewhere)."""
        self._cache.clear()

    # ------------------------------------------------------------ offline
    def ingest(self, group: str, df: pd.DataFrame) -> IngestResult:
        """Validate a batch against ``group``'s newest feature versions and write it."""
        g = self.definitions.get_group(group)
        feats = self.definitions.list_features(group)
        return self.offline.ingest(g, feats, df)

    def get_historical_features(
        self,
        entity_df: pd.DataFrame,
        features: Sequence[str],
        *,
        timestamp_column: str = "event_timestamp",
        full_names: bool = False,
    ) -> HistoricalFeatures:
        """Point-in-time correct features for each entity row (see :mod:`storage.features.offline`)."""
        specs = self.resolve(features)
        frame = self.offline.historical(
            entity_df, specs, timestamp_column=timestamp_column, full_names=full_names
        )
        names = [f"{g.name}__{f.name}" if full_names else f.name for g, fs in specs for f in fs]
        share = {n: float(frame[n].isna().mean()) if len(frame) else 0.0 for n in names}
        return HistoricalFeatures(frame, share, [f.ref for _, fs in specs for f in fs])

    def get_features_in_range(
        self,
        features: Sequence[str],
        start: datetime | None = None,
        end: datetime | None = None,
        *,
        latest: bool = False,
    ) -> HistoricalFeatures:
        """Rows of one group with event time in ``[start, end)`` (only the newest per entity: ``latest``)."""
        specs = self.resolve(features)
        if len(specs) != 1:
            raise ValidationError(
                f"range retrieval reads one group at a time, got {[g.name for g, _ in specs]}"
            )
        group, feats = specs[0]
        frame = self.offline.read_range(group, feats, _utc(start), _utc(end), latest=latest)
        share = {f.name: float(frame[f.name].isna().mean()) if len(frame) else 0.0 for f in feats}
        return HistoricalFeatures(frame, share, [f.ref for f in feats])

    # ------------------------------------------------------------- online
    def materialize(
        self, group: str, start: datetime | None = None, end: datetime | None = None
    ) -> MaterializeResult:
        """Write the newest value per entity that became usable in ``[start, end)`` to the online store.

        ``start`` defaults to the end of the previous window (incremental),
        ``end`` to now. Rerunning a window changes nothing.
        """
        g = self.definitions.get_group(group)
        feats = [
            f for f in self.definitions.list_features(group, all_versions=True) if f.status != "archived"
        ]
        stop = _utc(end) or datetime.now(UTC)
        begin = _utc(start)
        if begin is None:
            mark = self.online.watermark(group)
            begin = None if mark is None else datetime.fromtimestamp(mark / 1e6, UTC)
        if begin is not None and begin >= stop:
            return MaterializeResult(group, begin, stop, 0, self.online.url)
        rows = self.offline.materialization_rows(g, feats, begin, stop)
        written = self.online.write(group, rows)
        self.online.set_watermark(group, _us(stop))
        return MaterializeResult(group, begin, stop, written, self.online.url)

    def get_online_features(
        self,
        entity_rows: Sequence[Mapping[str, Any]] | None = None,
        features: Sequence[str] | None = None,
        *,
        full_names: bool = False,
        now: datetime | None = None,
    ) -> OnlineFeatures:
        """The newest materialized values per entity row, flagged ``stale`` past the TTL.

        Takes ``(entity_rows, features)`` by position, or Feast's keyword order
        ``features=..., entity_rows=...``; arguments of the wrong kind (features
        first by position, one string, rows that are not mappings) are a
        ValidationError that says what each argument must be.
        """
        check_online_arguments(entity_rows, features)
        assert entity_rows is not None and features is not None
        specs = self.resolve(features, cached=True)
        now_us = _us(_utc(now) or datetime.now(UTC))
        rows = [dict(r) for r in entity_rows]
        statuses: list[dict[str, str]] = [{} for _ in rows]
        for group, feats in specs:
            keys = []
            for i, r in enumerate(rows):
                missing = [k for k in group.join_keys if r.get(k) is None]
                if missing:
                    raise ValidationError(
                        f"entity row {i} is missing join key(s) {missing} of group {group.name!r}"
                    )
                keys.append(entity_key([r[k] for k in group.join_keys]))
            ttl_us = group.ttl_seconds * 1_000_000 if group.ttl_seconds else None
            for i, got in enumerate(self.online.read(group.name, keys)):
                for f in feats:
                    name = f"{group.name}__{f.name}" if full_names else f.name
                    if got is None:
                        rows[i][name], statuses[i][name] = None, "missing"
                        continue
                    ts, values = got
                    rows[i][name] = values.get(f.column)
                    stale = ttl_us is not None and now_us - ts > ttl_us
                    statuses[i][name] = (
                        "stale" if stale else "present" if rows[i][name] is not None else "missing"
                    )
        return OnlineFeatures(rows, statuses, [f.ref for _, fs in specs for f in fs])

    # --------------------------------------------------------- statistics
    def compute_statistics(
        self,
        group: str,
        start: datetime | None = None,
        end: datetime | None = None,
        *,
        reference: bool = False,
        save: bool = True,
        flow_run_id: str | None = None,
        bins: int = 10,
    ) -> dict[str, dict[str, Any]]:
        """Statistics per feature of ``group`` over ``[start, end)``.

        With ``reference=True`` they become the reference whose histogram
        edges later windows reuse; otherwise the newest reference (if any)
        fixes the bins.
        """
        specs = self.resolve([f"{group}:*"])
        _, feats = specs[0] if specs else (None, [])
        frame = self.offline.read_range(self.definitions.get_group(group), feats, _utc(start), _utc(end))
        out: dict[str, dict[str, Any]] = {}
        for f in feats:
            ref = None if reference else load_stats(self.db, group, f.name, kind="reference")
            out[f.name] = describe(frame[f.name], f.dtype, reference=ref["stats"] if ref else None, bins=bins)
        if save:
            save_stats(
                self.db,
                group,
                out,
                kind="reference" if reference else "window",
                window_start=_utc(start),
                window_end=_utc(end),
                flow_run_id=flow_run_id,
            )
        return out


def check_online_arguments(entity_rows: Any, features: Any) -> None:
    """Refuse online-read arguments of the wrong kind, naming what each must be.

    Example:
        >>> check_online_arguments([{"driver_id": 7}], ["trips:fare"])
        >>> check_online_arguments(["trips:fare"], [{"driver_id": 7}])  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        storage.errors.ValidationError: entity_rows must be ... got a list of feature references: ...
    """
    hint = (
        "the arguments are (entity_rows, features) by position; "
        "pass features=..., entity_rows=... by keyword in Feast's order"
    )
    if entity_rows is None or features is None:
        missing = "entity_rows" if entity_rows is None else "features"
        raise ValidationError(f"get_online_features needs {missing}: {hint}")
    if isinstance(entity_rows, str | bytes | Mapping) or not isinstance(entity_rows, Sequence):
        what = "one mapping" if isinstance(entity_rows, Mapping) else type(entity_rows).__name__
        raise ValidationError(f"entity_rows must be a list of {{join key: value}} mappings, got {what}")
    bad_row = next((r for r in entity_rows if not isinstance(r, Mapping)), None)
    if bad_row is not None:
        got = "a list of feature references" if isinstance(bad_row, str) else f"a {type(bad_row).__name__}"
        raise ValidationError(
            f"entity_rows must be a list of {{join key: value}} mappings, got {got}: {hint}"
        )
    if isinstance(features, str | bytes) or not isinstance(features, Sequence):
        raise ValidationError(
            f"features must be a non-empty list of 'group:feature' references, got {type(features).__name__}"
        )
    bad = next((f for f in features if not isinstance(f, str)), None)
    if bad is not None:
        got = "entity rows" if isinstance(bad, Mapping) else f"a {type(bad).__name__}"
        raise ValidationError(
            f"features must be a non-empty list of 'group:feature' references, got {got}: {hint}"
        )


def fill_request_features(
    store: FeatureStore, rows: Sequence[Mapping[str, Any]], features: Sequence[str]
) -> OnlineFeatures:
    """The serving hook: fill each request row's missing features from the online store.

    Values the request already carries win; the rest come from the online
    store by the rows' entity keys. Statuses say which values were stale or
    missing, so the caller can reject or impute.
    """
    online = store.get_online_features(rows, features)
    merged = []
    statuses = []
    for given, got, status in zip(rows, online.rows, online.statuses, strict=True):
        row = {**got, **{k: v for k, v in given.items() if v is not None}}
        merged.append(row)
        statuses.append({k: ("request" if given.get(k) is not None else s) for k, s in status.items()})
    return OnlineFeatures(merged, statuses, online.feature_refs)


def training_frame(
    store: FeatureStore,
    entity_df: pd.DataFrame,
    features: Sequence[str],
    *,
    timestamp_column: str = "event_timestamp",
) -> tuple[pd.DataFrame, list[str]]:
    """The training hook: a point-in-time training frame and the feature versions it used.

    Pass the returned references to :meth:`FeatureDefinitions.record_usage`
    once the model version exists, so lineage runs source → group → model.
    """
    result = store.get_historical_features(entity_df, features, timestamp_column=timestamp_column)
    return result.frame, result.feature_refs


def read_table(path: str | Path) -> pd.DataFrame:
    """A Parquet, CSV or JSON-lines file as a frame (by extension), from a folder or an object store.

    ``~`` and environment variables in a local path are expanded, so a
    schedule's parameters can say ``${MLOPS_HOME}/fraud/holdout.csv``; an
    ``s3://`` (any fsspec) URL is read through the object store.

    Example:
        >>> import tempfile, pandas as pd
        >>> p = f"{tempfile.mkdtemp()}/e.csv"
        >>> pd.DataFrame({"driver_id": [1]}).to_csv(p, index=False)
        >>> read_table(p)["driver_id"].tolist()
        [1]
    """
    return read_frame(path)
