"""Right to erasure: delete one entity's rows everywhere the platform stores them, then prove it.

An entity is named by its join-key values, e.g. ``{"card_id": 1}``. A feature
group is affected when every one of its join keys is among the given keys, so
``{"card_id": 1, "customer_id": 7}`` reaches groups keyed by ``card_id``, by
``customer_id`` or by both. Three places are erased:

* the offline store: every Parquet file of an affected group that holds the
  entity's rows is rewritten without them (temporary file, then rename; a file
  left empty is deleted). Files keep their names, so the batch commit markers
  stay valid; uncommitted files of a crashed batch are cleaned too;
* the online store (SQLite or Redis): the entity's record in each affected group;
* the prediction log: rows whose canonical ``entity_key`` (``k=v[,k=v]``) matches.

Then every place is counted again (:func:`verify_erased`); the result goes to
the ``erasures`` table and the audit log (action ``entity.erase``) in one
transaction. The audit log cannot be edited, so its entry names the entity by
the SHA-256 of the canonical key, never by the key itself.

Example:
    >>> import tempfile, pandas as pd
    >>> from blocks.settings import MlopsSettings
    >>> from storage.features.store import FeatureStore
    >>> from storage.monitoring.prediction_log import PredictionLog
    >>> settings = MlopsSettings(home=tempfile.mkdtemp())
    >>> store = FeatureStore.from_settings(settings)
    >>> _ = store.definitions.create_entity("card", join_keys=["card_id"])
    >>> _ = store.definitions.create_group("card_stats", entity="card", event_time_column="ts")
    >>> _ = store.definitions.register_feature("card_stats", "spend", "float")
    >>> _ = store.ingest("card_stats", pd.DataFrame({"card_id": [1, 2], "spend": [5.0, 6.0],
    ...                  "ts": pd.to_datetime(["2026-01-01", "2026-01-01"])}))
    >>> result = erase_entity({"card_id": 1}, requested_by="dpo", store=store,
    ...                       log=PredictionLog.from_settings(settings))
    >>> result.removed["offline:card_stats"], result.verified
    (1, True)
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import sqlalchemy as sa

from storage import schema as t
from storage.audit import append_entry
from storage.db import inserted_id
from storage.errors import NotFoundError, ValidationError
from storage.features.online import OnlineStore, RedisOnlineStore, SQLiteOnlineStore, entity_key
from storage.features.records import FeatureGroup, check_identifier
from storage.features.store import FeatureStore
from storage.monitoring.prediction_log import PredictionLog, canonical_entity_key
from storage.objectstore import Place
from storage.registry.records import Record

PREDICTION_LOG = "prediction_log"

__all__ = ["ErasureResult", "erase_entity", "get_erasure", "list_erasures", "verify_erased"]


@dataclass(frozen=True)
class ErasureResult(Record):
    """One erasure: what was removed where, what remained, and whether it verified."""

    id: int
    entity_key: str
    requested_by: str
    reason: str
    removed: dict[str, int]
    remaining: dict[str, int]
    verified: bool
    created_at: datetime


def _check_keys(keys: Mapping[str, Any]) -> dict[str, str]:
    """The entity's join keys with their values in the stores' string form."""
    if isinstance(keys, str):
        keys = dict(part.split("=", 1) for part in canonical_entity_key(keys).split(","))
    if not isinstance(keys, Mapping) or not keys:
        raise ValidationError(f"entity {keys!r} must name at least one join key, e.g. {{'card_id': 1}}")
    canonical_entity_key(keys)  # validates every name and value
    return {check_identifier(k, "join key"): entity_key([v]) for k, v in keys.items()}


def _groups(store: FeatureStore, keys: Mapping[str, str]) -> list[FeatureGroup]:
    return [g for g in store.definitions.list_groups() if set(g.join_keys) <= set(keys)]


def _part_files(store: FeatureStore, group: str) -> list[str]:
    """Every stored part file of a group (folder or object store), committed or left by a crashed batch."""
    return store.offline.place.glob(check_identifier(group, "group name"), "date=*", "part-*.parquet")


def _matches(table: pa.Table, group: FeatureGroup, keys: Mapping[str, str]) -> pa.ChunkedArray:
    mask = None
    for k in group.join_keys:
        if k not in table.column_names:
            return pa.chunked_array([pa.array(np.zeros(table.num_rows, dtype=bool))])
        hit = pc.fill_null(pc.equal(pc.cast(table[k], pa.string()), keys[k]), False)
        mask = hit if mask is None else pc.and_(mask, hit)
    assert mask is not None  # a group has at least one join key
    return mask


def _erase_offline(store: FeatureStore, group: FeatureGroup, keys: Mapping[str, str]) -> int:
    place, removed = store.offline.place, 0
    for path in _part_files(store, group.name):
        if not _count_file(place, path, group, keys):  # reads the join-key columns only
            continue
        table = place.read_table(path)
        drop = _matches(table, group, keys)
        n = pc.sum(drop).as_py() or 0
        kept = table.filter(pc.invert(drop))
        if kept.num_rows == 0:
            place.remove([path])
        else:
            place.write_table(path, kept)  # the same name: its commit marker still applies
        removed += n
    return removed


def _count_file(place: Place, path: str, group: FeatureGroup, keys: Mapping[str, str]) -> int:
    with place.fs.open(path, "rb") as handle:
        present = set(pq.read_schema(handle).names)
    if not set(group.join_keys) <= present:
        return 0
    table = place.read_table(path, columns=list(group.join_keys))
    return int(pc.sum(_matches(table, group, keys)).as_py() or 0)


def _count_offline(store: FeatureStore, group: FeatureGroup, keys: Mapping[str, str]) -> int:
    place = store.offline.place
    return sum(_count_file(place, path, group, keys) for path in _part_files(store, group.name))


def _online_key(group: FeatureGroup, keys: Mapping[str, str]) -> str:
    return entity_key([keys[k] for k in group.join_keys])


def _delete_online(online: OnlineStore, group: str, key: str) -> int:
    """Delete one record; returns 1 when it existed (SQLite and Redis backends)."""
    delete = getattr(online, "delete", None)
    if callable(delete):  # a backend that knows how
        return int(delete(group, [key]))
    if isinstance(online, SQLiteOnlineStore):
        con = sqlite3.connect(online.path, timeout=60, isolation_level=None)
        try:
            cur = con.execute("DELETE FROM online_values WHERE grp = ? AND entity_key = ?", (group, key))
            return int(cur.rowcount)
        finally:
            con.close()
    if isinstance(online, RedisOnlineStore):
        return int(online.client.delete(f"{online.prefix}{group}:{key}"))
    raise ValidationError(f"online store {online.url!r} does not support erasure")


def verify_erased(
    keys: Mapping[str, Any], *, store: FeatureStore | None = None, log: PredictionLog | None = None
) -> dict[str, int]:
    """What remains of the entity: rows per ``offline:<group>``, ``online:<group>`` and the prediction log."""
    checked = _check_keys(keys)
    fs = store or FeatureStore.from_settings()
    plog = log or PredictionLog.from_settings()
    remaining: dict[str, int] = {}
    for group in _groups(fs, checked):
        remaining[f"offline:{group.name}"] = _count_offline(fs, group, checked)
        found = fs.online.read(group.name, [_online_key(group, checked)])[0]
        remaining[f"online:{group.name}"] = int(found is not None)
    remaining[PREDICTION_LOG] = plog.count(checked)
    return remaining


def erase_entity(
    keys: Mapping[str, Any],
    *,
    requested_by: str,
    reason: str = "",
    store: FeatureStore | None = None,
    log: PredictionLog | None = None,
) -> ErasureResult:
    """Erase the entity from the offline and online feature stores and the prediction log.

    Rerunning is safe: a second run removes nothing and verifies again.

    Args:
        keys: The entity's join-key values, e.g. ``{"card_id": 1}``.
        requested_by: Who asked (recorded as the audit entry's actor).
        reason: Why (e.g. the data-subject request's reference).
        store: The feature store (``FeatureStore.from_settings()`` when omitted).
        log: The prediction log (``PredictionLog.from_settings()`` when omitted).
    """
    if not isinstance(requested_by, str) or not requested_by.strip():
        raise ValidationError(f"requested_by {requested_by!r} must name the person who asked")
    checked = _check_keys(keys)
    if store is not None:
        return _erase(checked, requested_by, reason, store, log or PredictionLog.from_settings())
    fs = FeatureStore.from_settings()  # opened here, so closed here
    try:
        return _erase(checked, requested_by, reason, fs, log or PredictionLog.from_settings())
    finally:
        fs.close()


def _erase(
    checked: dict[str, Any], requested_by: str, reason: str, fs: FeatureStore, plog: PredictionLog
) -> ErasureResult:
    canonical = canonical_entity_key(checked)
    removed: dict[str, int] = {}
    for group in _groups(fs, checked):
        removed[f"offline:{group.name}"] = _erase_offline(fs, group, checked)
        removed[f"online:{group.name}"] = _delete_online(fs.online, group.name, _online_key(group, checked))
    removed[PREDICTION_LOG] = plog.erase(canonical)
    remaining = verify_erased(checked, store=fs, log=plog)
    verified = not any(remaining.values())
    result = {"removed": removed, "remaining": remaining}
    now = t.utcnow()
    with fs.db.write() as conn:
        erasure_id = inserted_id(
            conn,
            t.erasures.insert().values(
                entity_key=canonical,
                requested_by=requested_by,
                reason=reason,
                result=result,
                verified=verified,
                created_at=now,
            ),
        )
        append_entry(
            conn,
            actor=requested_by,
            action="entity.erase",
            entity_type="entity",
            entity_id="sha256:" + hashlib.sha256(canonical.encode()).hexdigest(),
            after={"erasure_id": erasure_id, "reason": reason, "verified": verified, **result},
        )
    return ErasureResult(erasure_id, canonical, requested_by, reason, removed, remaining, verified, now)


def _to_result(row: Any) -> ErasureResult:
    return ErasureResult(
        id=int(row.id),
        entity_key=row.entity_key,
        requested_by=row.requested_by,
        reason=row.reason,
        removed=dict(row.result.get("removed", {})),
        remaining=dict(row.result.get("remaining", {})),
        verified=bool(row.verified),
        created_at=row.created_at,
    )


def get_erasure(store: FeatureStore, erasure_id: int) -> ErasureResult:
    """One recorded erasure by id."""
    with store.db.read() as conn:
        row = conn.execute(sa.select(t.erasures).where(t.erasures.c.id == erasure_id)).first()
    if row is None:
        raise NotFoundError(f"erasure {erasure_id} does not exist")
    return _to_result(row)


def list_erasures(store: FeatureStore, *, limit: int = 100) -> list[ErasureResult]:
    """Recorded erasures, newest first."""
    with store.db.read() as conn:
        rows = conn.execute(sa.select(t.erasures).order_by(t.erasures.c.id.desc()).limit(limit))
        return [_to_result(r) for r in rows]
