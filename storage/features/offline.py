"""The offline feature store: Parquet files per group, read by an in-memory DuckDB.

Values live under ``root/<group>/date=YYYY-MM-DD/part-<hash>.parquet``
(hive-partitioned by the event date), where ``root`` is a folder or an object
store URL (``s3://bucket/prefix/features``): every read, write and listing goes
through a :class:`~storage.objectstore.Place`, and DuckDB reads remote files
through the place's registered fsspec filesystem. A batch is validated whole
against the group's definitions before anything is written; its files (one per
event date) are written atomically and named by the batch's content hash, so a
retried ingestion rewrites the same files instead of adding duplicates, and a
commit marker written last makes them visible together.
:meth:`OfflineStore.compact` merges a partition's many small files into one
(:mod:`storage.features.compaction`).

Point-in-time retrieval joins each entity row to the newest value that existed
*and was available* at the row's timestamp, within the group's TTL. With an
availability-time column a value is usable from ``max(event time, available
time)``; among usable values the newest event time wins, then the newest
availability time, then the latest ingestion. DuckDB's ``ASOF JOIN`` does the
join after a window pass that keeps only the rows that change the answer
(the SQL lives in :mod:`storage.features.pit`).

A damaged file (a disk error, a partial copy) that DuckDB cannot read is named
in a warning and left out of the store's reads until it changes (a retried
batch rewrites it), so the group's other files stay readable;
:meth:`OfflineStore.verify` names every file of a group that does not read
back whole.

Example:
    >>> import tempfile, pandas as pd
    >>> from storage.features.definitions import Feature, FeatureGroup
    >>> from storage.features.offline import OfflineStore
    >>> group = FeatureGroup("trips", "driver", ("driver_id",), "ts", ttl_seconds=3600)
    >>> fare = Feature("trips", "fare", 1, "float", "active")
    >>> store = OfflineStore(tempfile.mkdtemp())
    >>> batch = pd.DataFrame({"driver_id": [1, 1],
    ...                       "ts": pd.to_datetime(["2026-01-01 10:00", "2026-01-01 11:00"]),
    ...                       "fare": [5.0, 7.5]})
    >>> store.ingest(group, [fare], batch).rows
    2
    >>> entities = pd.DataFrame({"driver_id": [1, 1], "event_timestamp": pd.to_datetime(
    ...     ["2026-01-01 10:30", "2026-01-01 13:00"])})
    >>> store.historical(entities, [(group, [fare])])["fare"].tolist()  # the 2nd is past the TTL
    [5.0, nan]
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from storage.errors import StorageFullError
from storage.features import compaction, pit
from storage.features.compaction import COMMITS, CompactionResult
from storage.features.pit import GroupSpec, decode
from storage.features.records import Feature, FeatureGroup, check_identifier, quote
from storage.features.validation import DUCK_TYPES, ROW, SEQ, IngestResult, validate_batch
from storage.objectstore import Place, duckdb_connection
from storage.parquet_files import CorruptFile, unreadable_files, verify_parquet

__all__ = ["CompactionResult", "GroupSpec", "IngestResult", "OfflineStore", "validate_batch"]

log = logging.getLogger(__name__)

T = TypeVar("T")
RETRIES = 20


class OfflineStore:
    """Parquet files per feature group under ``root`` (a folder or an ``s3://`` URL), queried by DuckDB.

    Args:
        root: Folder, or fsspec URL, that holds one sub-folder per group.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.place = Place(root)
        #: The root as people name it: an absolute folder, or the URL.
        self.root = self.place.uri(self.place.root)
        #: Files DuckDB could not read, with their ``place.stamp`` then: left out until they change.
        self.unreadable: dict[str, tuple[int, str]] = {}
        self._retire_lists: dict[tuple[str, str], frozenset[str]] = {}
        self._reads = threading.local()

    def group_dir(self, group: str) -> Path:
        """The local folder of one group's files (a local store only: see :meth:`group_path`)."""
        if not self.place.is_local:
            raise ValueError(f"offline store {self.root} is not a local folder: use group_path")
        return Path(self.group_path(group))

    def group_path(self, group: str) -> str:
        """The path of one group's files in the store's filesystem."""
        return self.place.path(check_identifier(group, "group name"))

    def files(self, group: str) -> list[str]:
        """The group's committed Parquet files, as DuckDB and people name them.

        A batch becomes visible all at once: its files (one per date) are
        written first, then one commit marker, and only files of batches with
        a marker are read (and none a compaction retired: see
        :mod:`storage.features.compaction`). A crash in between leaves files
        that no reader sees; retrying the batch commits them.
        """
        found = [f for f in self._committed(group) if not self._known_unreadable(f)]
        seen = getattr(self._reads, "seen", None)
        if seen is not None:
            seen[group] = found
        return found

    def _committed(self, group: str) -> list[str]:
        name = check_identifier(group, "group name")
        listing = compaction.list_committed(self.place, name, self._retire_lists)
        return [self.place.uri(p) for p in listing.files]

    def _known_unreadable(self, path: str) -> bool:
        seen = self.unreadable.get(path)
        if seen is None:
            return False
        try:
            return self.place.stamp(path) == seen
        except OSError:
            return True

    def _skipping_unreadable(self, call: Callable[[], T]) -> T:
        """``call()``; again when its files changed under it, or without the files DuckDB cannot read."""
        for _ in range(RETRIES):
            seen: dict[str, list[str]] = {}
            self._reads.seen = seen
            try:
                return call()
            except duckdb.Error as exc:
                self._reads.seen = None
                if any(self.files(g) != listed for g, listed in seen.items()):
                    continue  # a compaction or a batch changed the files under the read: read again
                readable = [f for listed in seen.values() for f in listed]
                bad = unreadable_files(exc, readable, self.place.read_table)
                if not bad:
                    raise
                for found in bad:
                    try:
                        self.unreadable[found.path] = self.place.stamp(found.path)
                    except OSError:
                        continue
                    log.warning(
                        "offline store: left out the unreadable Parquet file %s (%s)",
                        found.path,
                        found.reason,
                    )
            finally:
                self._reads.seen = None
        raise RuntimeError(f"offline store {self.root}: the files kept changing during {RETRIES} reads")

    def verify(self, group: str) -> list[CorruptFile]:
        """Every committed file of ``group`` that does not read back whole, with the reason."""
        return verify_parquet(self._committed(group), self.place.read_table)

    # ------------------------------------------------------------ writing
    def ingest(self, group: FeatureGroup, feats: Sequence[Feature], df: pd.DataFrame) -> IngestResult:
        """Validate a batch whole and write it atomically, one file per event date."""
        table = validate_batch(group, feats, df)
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        batch_id = hashlib.sha256(sink.getvalue().to_pybytes()).hexdigest()[:20]
        table = table.append_column(SEQ, pa.array(np.full(len(table), time.time_ns(), dtype=np.int64)))
        table = table.append_column(ROW, pa.array(np.arange(len(table), dtype=np.int64)))
        dates = pd.Series(table[group.event_time_column].to_numpy()).dt.strftime("%Y-%m-%d").to_numpy()
        root = self.group_path(group.name)
        marker = f"{root}/{COMMITS}/{batch_id}"
        again = self.place.exists(marker)  # a retried batch: its files are committed already
        written: list[str] = []
        try:
            for day in sorted(set(dates.tolist())):  # one file per partition per batch
                path = f"{root}/date={day}/part-{batch_id}.parquet"
                self.place.write_table(path, table.filter(pa.array(dates == day)))
                written.append(path)
        except BaseException as exc:
            if not again:
                self.place.remove(written)
            if isinstance(exc, StorageFullError):
                raise StorageFullError(
                    exc.errno,
                    f"the offline store {self.root} is full ({exc.strerror}): no file of the {group.name!r} "
                    f"batch of {len(table)} rows is visible",
                ) from exc
            raise
        self.place.write_bytes(marker, str(time.time_ns()).encode())
        return IngestResult(group.name, len(table), tuple(self.place.uri(p) for p in written), batch_id)

    def compact(self, group: str, *, min_files: int = 2) -> CompactionResult:
        """Merge each partition's committed files into one (see :mod:`storage.features.compaction`).

        Example:
            >>> import tempfile, pandas as pd
            >>> from storage.features.definitions import Feature, FeatureGroup
            >>> group = FeatureGroup("trips", "driver", ("driver_id",), "ts")
            >>> fare = Feature("trips", "fare", 1, "float", "active")
            >>> store = OfflineStore(tempfile.mkdtemp())
            >>> for v in (1.0, 2.0):
            ...     _ = store.ingest(group, [fare], pd.DataFrame(
            ...         {"driver_id": [1], "ts": [pd.Timestamp("2026-01-01")], "fare": [v]}))
            >>> r = store.compact("trips")
            >>> (r.files_before, r.files_after, r.rows), len(store.files("trips"))
            ((2, 1, 2), 1)
        """
        name = check_identifier(group, "group name")
        return compaction.compact(self.place, name, min_files=min_files, cache=self._retire_lists)

    # ------------------------------------------------------------ reading
    def source_sql(
        self,
        con: duckdb.DuckDBPyConnection,
        group: FeatureGroup,
        feats: Sequence[Feature],
        *,
        min_date: str | None = None,
        max_date: str | None = None,
    ) -> tuple[str, list[Any]] | None:
        """A SELECT over the group's files with ``__et``, ``__eff``, ``__seq`` and the feature columns.

        Returns None when the group has no files yet. Feature columns absent
        from every file read as typed NULLs.
        """
        files = self.files(group.name)
        if not files:
            return None
        src = "read_parquet(?, hive_partitioning = true, hive_types_autocast = false, union_by_name = true)"
        present = {r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {src}", [files]).fetchall()}
        et = quote(group.event_time_column)
        avail = group.available_time_column
        at = quote(avail) if avail is not None and avail in present else None
        eff = f"greatest({et}, coalesce({at}, {et}))" if at else et
        cols = [quote(k) for k in group.join_keys]
        cols += [f"{et} AS __et", f"{eff} AS __eff", f"{SEQ} AS __seq", f"{ROW} AS __ingest_row"]
        for f in feats:
            cols.append(
                quote(f.column)
                if f.column in present
                else f"NULL::{DUCK_TYPES[f.dtype]} AS {quote(f.column)}"
            )
        where: list[str] = []
        params: list[Any] = [files]
        if min_date is not None:
            where.append("date >= ?")
            params.append(min_date)
        if max_date is not None:
            where.append("date <= ?")
            params.append(max_date)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        return f"SELECT {', '.join(cols)} FROM {src}{clause}", params

    def _historical(
        self,
        entity_df: pd.DataFrame,
        specs: Sequence[GroupSpec],
        *,
        timestamp_column: str = "event_timestamp",
        full_names: bool = False,
    ) -> pd.DataFrame:
        """Point-in-time join: ``entity_df`` plus one column per feature (see :mod:`storage.features.pit`).

        Args:
            entity_df: Join keys and ``timestamp_column`` per row; other columns pass through.
            specs: ``(group, features)`` pairs to join.
            timestamp_column: The entity rows' point in time (naive means UTC).
            full_names: Name columns ``group__feature`` instead of ``feature``.
        """
        con = duckdb_connection(self.place)
        try:
            return pit.historical(
                con, self, entity_df, specs, timestamp_column=timestamp_column, full_names=full_names
            )
        finally:
            con.close()

    def _historical_to_file(
        self,
        entity_path: str | os.PathLike[str],
        specs: Sequence[GroupSpec],
        output_path: str | os.PathLike[str],
        *,
        timestamp_column: str = "event_timestamp",
        full_names: bool = False,
        memory_limit_mb: int | None = None,
    ) -> int:
        """The point-in-time join for data larger than memory: Parquet in, Parquet out.

        DuckDB reads the entity file, joins and sorts (spilling to disk past
        ``memory_limit_mb``), and the result streams to ``output_path`` in record
        batches (written under a temporary name, then renamed). Returns the
        number of rows written.
        """
        check_identifier(timestamp_column, "timestamp column")
        con = duckdb_connection(self.place)
        try:
            if memory_limit_mb is not None:
                con.execute(f"SET memory_limit = '{int(memory_limit_mb)}MB'")  # an int: nothing to inject
            return pit.historical_to_file(
                con,
                self,
                entity_path,
                specs,
                output_path,
                timestamp_column=timestamp_column,
                full_names=full_names,
            )
        finally:
            con.close()

    def _read_range(
        self,
        group: FeatureGroup,
        feats: Sequence[Feature],
        start: datetime | None,
        end: datetime | None,
        *,
        latest: bool = False,
    ) -> pd.DataFrame:
        """Rows with event time in ``[start, end)``; with ``latest``, the newest row per entity."""
        con = duckdb_connection(self.place)
        try:
            lo, hi = _bound(start), _bound(end)
            src = self.source_sql(
                con,
                group,
                feats,
                min_date=lo.strftime("%Y-%m-%d") if lo is not None else None,
                max_date=hi.strftime("%Y-%m-%d") if hi is not None else None,
            )
            names = [*group.join_keys, group.event_time_column, *(f.name for f in feats)]
            if src is None:
                return pd.DataFrame({n: pd.Series(dtype=object) for n in names})
            sql, params = src
            where = ["TRUE"]
            if lo is not None:
                where.append("__et >= ?")
                params.append(lo)
            if hi is not None:
                where.append("__et < ?")
                params.append(hi)
            keys = ", ".join(quote(k) for k in group.join_keys)
            query = f"SELECT * FROM ({sql}) WHERE {' AND '.join(where)}"
            if latest:
                query += f" QUALIFY row_number() OVER (PARTITION BY {keys} ORDER BY __et DESC, __eff DESC, __seq DESC, __ingest_row DESC) = 1"  # noqa: E501
            cols = [*(quote(k) for k in group.join_keys), f"__et AS {quote(group.event_time_column)}"]
            cols += [f"{quote(f.column)} AS {quote(f.name)}" for f in feats]
            df = con.execute(
                f"SELECT {', '.join(cols)} FROM ({query}) ORDER BY __et, {keys}", params
            ).fetch_df()
        finally:
            con.close()
        for f in feats:
            df[f.name] = decode(f, df[f.name])
        return df

    def _materialization_rows(
        self, group: FeatureGroup, feats: Sequence[Feature], start: datetime | None, end: datetime
    ) -> list[tuple[str, int, str]]:
        """``(entity key, event time µs, JSON payload)`` of the newest row per entity.

        Only rows that became usable (``max(event, available)``) in
        ``[start, end)`` are considered, so an incremental run also picks up
        late-arriving values.
        """
        con = duckdb_connection(self.place)
        try:
            lo = _bound(start)
            min_date = lo.strftime("%Y-%m-%d") if lo is not None and not group.available_time_column else None
            src = self.source_sql(con, group, feats, min_date=min_date)
            if src is None:
                return []
            sql, params = src
            where = ["__eff < ?"]
            params.append(_bound(end))
            if lo is not None:
                where.append("__eff >= ?")
                params.append(lo)
            keys = ", ".join(quote(k) for k in group.join_keys)
            key_expr = (
                f"CAST({quote(group.join_keys[0])} AS VARCHAR)"
                if len(group.join_keys) == 1
                else f"concat_ws(chr(31), {keys})"
            )
            pairs = []
            for f in feats:
                val = f"{quote(f.column)}::JSON" if f.dtype == "json" else quote(f.column)
                pairs.append(f"'{f.column}', {val}")  # column names are validated identifiers
            query = (
                f"SELECT {key_expr}, epoch_us(__et), json_object({', '.join(pairs)})::VARCHAR "
                f"FROM ({sql}) WHERE {' AND '.join(where)} QUALIFY row_number() OVER "
                f"(PARTITION BY {keys} ORDER BY __et DESC, __eff DESC, __seq DESC, __ingest_row DESC) = 1"
            )
            return con.execute(query, params).fetchall()
        finally:
            con.close()

    # ------------------------------------------------------------ reads that leave out damaged files
    def historical(
        self,
        entity_df: pd.DataFrame,
        specs: Sequence[GroupSpec],
        *,
        timestamp_column: str = "event_timestamp",
        full_names: bool = False,
    ) -> pd.DataFrame:
        """Point-in-time join: ``entity_df`` plus one column per feature (see :meth:`_historical`)."""
        return self._skipping_unreadable(
            lambda: self._historical(
                entity_df, specs, timestamp_column=timestamp_column, full_names=full_names
            )
        )

    def historical_to_file(
        self,
        entity_path: str | os.PathLike[str],
        specs: Sequence[GroupSpec],
        output_path: str | os.PathLike[str],
        *,
        timestamp_column: str = "event_timestamp",
        full_names: bool = False,
        memory_limit_mb: int | None = None,
    ) -> int:
        """The point-in-time join, Parquet in, Parquet out (see :meth:`_historical_to_file`)."""
        return self._skipping_unreadable(
            lambda: self._historical_to_file(
                entity_path,
                specs,
                output_path,
                timestamp_column=timestamp_column,
                full_names=full_names,
                memory_limit_mb=memory_limit_mb,
            )
        )

    def read_range(
        self,
        group: FeatureGroup,
        feats: Sequence[Feature],
        start: datetime | None,
        end: datetime | None,
        *,
        latest: bool = False,
    ) -> pd.DataFrame:
        """Rows with event time in ``[start, end)``; with ``latest``, the newest row per entity."""
        return self._skipping_unreadable(lambda: self._read_range(group, feats, start, end, latest=latest))

    def materialization_rows(
        self, group: FeatureGroup, feats: Sequence[Feature], start: datetime | None, end: datetime
    ) -> list[tuple[str, int, str]]:
        """``(entity key, event time µs, JSON payload)`` of the newest row per entity."""
        return self._skipping_unreadable(lambda: self._materialization_rows(group, feats, start, end))


def _bound(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value
