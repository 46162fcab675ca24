"""The offline feature store: Parquet files per group, read by an in-memory DuckDB.

Values live under ``root/<group>/date=YYYY-MM-DD/part-<hash>.parquet``
(hive-partitioned by the event date). A batch is validated whole against the
group's definitions before anything is written; its files are written under
temporary names and renamed, and named by the batch's content hash, so a
retried ingestion rewrites the same files instead of adding duplicates.

Point-in-time retrieval joins each entity row to the newest value that existed
*and was available* at the row's timestamp, within the group's TTL. With an
availability-time column a value is usable from ``max(event time, available
time)``; among usable values the newest event time wins, then the newest
availability time, then the latest ingestion. DuckDB's ``ASOF JOIN`` does the
join after a window pass that keeps only the rows that change the answer.

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

import glob
import hashlib
import json
import os
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from storage.errors import ValidationError
from storage.features.records import Feature, FeatureGroup, check_identifier, quote
from storage.features.validation import (
    DUCK_TYPES,
    ROW,
    SEQ,
    IngestResult,
    _reject,
    _rows,
    take_column,
    to_utc_naive,
    validate_batch,
)

__all__ = ["GroupSpec", "IngestResult", "OfflineStore", "connect", "validate_batch"]

GroupSpec = tuple[FeatureGroup, Sequence[Feature]]


COMMITS = "_committed"


def connect() -> duckdb.DuckDBPyConnection:
    """A fresh in-memory DuckDB connection in UTC."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    return con


class OfflineStore:
    """Parquet files per feature group under ``root``, queried by DuckDB.

    Args:
        root: Folder that holds one sub-folder per group.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def group_dir(self, group: str) -> Path:
        """The folder of one group's files."""
        return self.root / check_identifier(group, "group name")

    def files(self, group: str) -> list[str]:
        """The group's committed Parquet files.

        A batch becomes visible all at once: its files (one per date) are
        renamed into place first, then one commit marker is written, and only
        files of batches with a marker are read. A crash in between leaves
        files that no reader sees; retrying the batch commits them.
        """
        root = self.group_dir(group)
        committed = {p.name for p in (root / COMMITS).glob("*")} if (root / COMMITS).is_dir() else set()
        return sorted(
            f
            for f in glob.glob(str(root / "date=*" / "part-*.parquet"))
            if Path(f).stem.removeprefix("part-") in committed
        )

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
        staged: list[tuple[Path, Path]] = []
        try:
            for day in sorted(set(dates.tolist())):
                part = table.filter(pa.array(dates == day))
                final = self.group_dir(group.name) / f"date={day}" / f"part-{batch_id}.parquet"
                final.parent.mkdir(parents=True, exist_ok=True)
                tmp = final.with_name(f".{final.name}.{uuid.uuid4().hex}.tmp")
                pq.write_table(part, tmp, compression="zstd")
                staged.append((tmp, final))
        except BaseException:
            for tmp, _ in staged:
                tmp.unlink(missing_ok=True)
            raise
        for tmp, final in staged:
            os.replace(tmp, final)
        self._commit_batch(group.name, batch_id)
        return IngestResult(group.name, len(table), tuple(str(f) for _, f in staged), batch_id)

    def _commit_batch(self, group: str, batch_id: str) -> None:
        """Write the batch's commit marker (temporary name, then rename)."""
        marker = self.group_dir(group) / COMMITS / batch_id
        marker.parent.mkdir(parents=True, exist_ok=True)
        tmp = marker.with_name(f".{batch_id}.{uuid.uuid4().hex}.tmp")
        tmp.write_text(str(time.time_ns()))
        os.replace(tmp, marker)

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

    def historical(
        self,
        entity_df: pd.DataFrame,
        specs: Sequence[GroupSpec],
        *,
        timestamp_column: str = "event_timestamp",
        full_names: bool = False,
    ) -> pd.DataFrame:
        """Point-in-time join: ``entity_df`` plus one column per feature.

        Args:
            entity_df: Join keys and ``timestamp_column`` per row; other columns pass through.
            specs: ``(group, features)`` pairs to join.
            timestamp_column: The entity rows' point in time (naive means UTC).
            full_names: Name columns ``group__feature`` instead of ``feature``.
        """
        ts = to_utc_naive(
            self._need(entity_df, timestamp_column, "entity_df"), f"entity_df {timestamp_column!r}"
        )
        if ts.isna().any():
            _reject("entity_df", timestamp_column, "holds null timestamps", _rows(ts.isna()), [None])
        out = entity_df.reset_index(drop=True)
        names = _output_names(specs, full_names, list(out.columns))
        keys = list(dict.fromkeys(k for g, _ in specs for k in g.join_keys))
        left = pd.DataFrame({k: self._need(entity_df, k, "entity_df").reset_index(drop=True) for k in keys})
        left["__ts"], left["__row"] = ts, np.arange(len(left), dtype=np.int64)
        con = connect()
        try:
            con.register("entity_rows", pa.Table.from_pandas(left, preserve_index=False))
            query = self._join_query(con, specs, ts.min(), ts.max()) if len(left) else None
            try:
                frame = con.execute(query[0], query[1]).fetchnumpy() if query else None
            except duckdb.Error as exc:  # e.g. entity keys of another type than the stored ones
                raise ValidationError(f"point-in-time join failed: {exc}") from exc
        finally:
            con.close()
        n = len(out)
        inverse = np.empty(n, dtype=np.int64)
        if frame is not None:
            inverse[np.asarray(frame["__row"])] = np.arange(
                n, dtype=np.int64
            )  # result position per entity row
        out = out.copy(deep=False)
        i = 0
        for _, feats in specs:
            for f in feats:
                if frame is None:
                    out[names[i]] = pd.Series([None] * n, dtype=object)
                else:
                    out[names[i]] = _decode(f, pd.Series(take_column(frame[f"__f{i}"], inverse), copy=False))
                i += 1
        return out

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
        """The point-in-time join for data larger than memory: Parquet in, Parquet out.

        DuckDB reads the entity file, joins and sorts (spilling to disk past
        ``memory_limit_mb``), and the result streams to ``output_path`` in record
        batches (written under a temporary name, then renamed). Returns the
        number of rows written.
        """
        check_identifier(timestamp_column, "timestamp column")
        con = connect()
        if memory_limit_mb is not None:
            con.execute(f"SET memory_limit = '{int(memory_limit_mb)}MB'")  # an int: nothing to inject
        out = Path(output_path)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex}.tmp")
        try:
            cols = [
                r[0]
                for r in con.execute("DESCRIBE SELECT * FROM read_parquet(?)", [str(entity_path)]).fetchall()
            ]
            if timestamp_column not in cols:
                raise ValidationError(f"entity file is missing column {timestamp_column!r}")
            for k in dict.fromkeys(k for g, _ in specs for k in g.join_keys):
                if k not in cols:
                    raise ValidationError(f"entity file is missing column {k!r}")
            names = _output_names(specs, full_names, cols)
            con.execute(
                "CREATE TEMP TABLE entity_rows AS SELECT *, "
                f"timezone('UTC', {quote(timestamp_column)}::TIMESTAMPTZ) AS __ts, "
                "file_row_number AS __row FROM read_parquet(?, file_row_number = true)",
                [str(entity_path)],
            )
            lo, hi = con.execute("SELECT min(__ts), max(__ts) FROM entity_rows").fetchone() or (None, None)
            query = self._join_query(
                con, specs, lo, hi, passthrough=[c for c in cols if c != "file_row_number"]
            )
            if query is None:
                raise ValidationError("the entity file is empty or no group has data")
            sql, params = query
            renames = ", ".join(f'"__f{i}" AS {quote_any(n)}' for i, n in enumerate(names))
            relation = con.sql(
                f"SELECT * EXCLUDE ({', '.join(f'__f{i}' for i in range(len(names)))}, __row), {renames} "
                f"FROM ({sql}) ORDER BY __row",
                params=params,
            )
            reader: Any = relation.to_arrow_reader(100_000)
            rows = 0
            with pq.ParquetWriter(tmp, reader.schema, compression="zstd") as writer:
                for batch in reader:
                    writer.write_batch(batch)
                    rows += batch.num_rows
            os.replace(tmp, out)
            return rows
        finally:
            tmp.unlink(missing_ok=True)
            con.close()

    @staticmethod
    def _need(df: pd.DataFrame, column: str, what: str) -> pd.Series:
        if column not in df.columns:
            raise ValidationError(f"{what} is missing column {column!r}")
        return df[column]

    def _join_query(
        self,
        con: duckdb.DuckDBPyConnection,
        specs: Sequence[GroupSpec],
        min_ts: Any,
        max_ts: Any,
        passthrough: Sequence[str] = (),
    ) -> tuple[str, list[Any]] | None:
        """One SELECT over ``entity_rows`` with an ASOF LEFT JOIN per group; features as ``__f<i>``."""
        selects = ["e.__row"] + [f"e.{quote_any(c)}" for c in passthrough]
        select_params: list[Any] = []
        joins: list[str] = []
        join_params: list[Any] = []
        i = 0
        for n, (group, feats) in enumerate(specs):
            part = self._group_rows(con, group, feats, min_ts, max_ts)
            for f in feats:
                if part is None:
                    selects.append(f"NULL::{DUCK_TYPES[f.dtype]} AS __f{i}")
                elif group.ttl_seconds:
                    selects.append(
                        f"CASE WHEN g{n}.__et >= e.__ts - to_seconds(?::BIGINT) "
                        f"THEN g{n}.{quote(f.column)} END AS __f{i}"
                    )
                    select_params.append(group.ttl_seconds)
                else:
                    selects.append(f"g{n}.{quote(f.column)} AS __f{i}")
                i += 1
            if part is None:
                continue
            on = " AND ".join(f"e.{quote(k)} = g{n}.{quote(k)}" for k in group.join_keys)
            upper = (
                "struct_pack(a := e.__ts, b := 'infinity'::TIMESTAMP, c := 9223372036854775807::BIGINT, "
                "d := 9223372036854775807::BIGINT)"
            )
            joins.append(f"ASOF LEFT JOIN ({part[0]}) g{n} ON {on} AND {upper} >= g{n}.__ord")
            join_params += part[1]
        if not joins and i == 0:
            return None
        # Parameters in text order: the select list's, then each join's.
        return (
            f"SELECT {', '.join(selects)} FROM entity_rows e {' '.join(joins)}",
            select_params + join_params,
        )

    def _group_rows(
        self,
        con: duckdb.DuckDBPyConnection,
        group: FeatureGroup,
        feats: Sequence[Feature],
        min_ts: Any,
        max_ts: Any,
    ) -> tuple[str, list[Any]] | None:
        """The group's candidate rows, each with a unique ``__ord`` for the ASOF join."""
        # A value is usable only when its event time is at or before the row's
        # time and, with a TTL, not older than the TTL: prune date partitions.
        max_date = pd.Timestamp(max_ts).strftime("%Y-%m-%d")
        min_date = None
        if group.ttl_seconds:
            min_date = (pd.Timestamp(min_ts) - pd.Timedelta(seconds=group.ttl_seconds)).strftime("%Y-%m-%d")
        src = self.source_sql(con, group, feats, min_date=min_date, max_date=max_date)
        if src is None:
            return None
        sql, params = src
        keys = ", ".join(quote(k) for k in group.join_keys)
        # Order candidate rows by (usable from, event time, ingestion): ASOF
        # then takes the last usable row and every tie has one winner.
        order = "struct_pack(a := __eff, b := __et, c := __seq, d := __ingest_row)"
        rows = f"SELECT *, {order} AS __ord FROM ({sql})"
        if group.available_time_column:
            # Keep only rows that beat every row usable before them: then the last
            # usable row is the one with the newest event time (late values never leak).
            rows = (
                f"SELECT * FROM ({rows}) QUALIFY __et >= coalesce(max(__et) OVER (PARTITION BY {keys} "
                "ORDER BY __ord ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), __et)"
            )
        return rows, params

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
        con = connect()
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
            df[f.name] = _decode(f, df[f.name])
        return df

    def materialization_rows(
        self, group: FeatureGroup, feats: Sequence[Feature], start: datetime | None, end: datetime
    ) -> list[tuple[str, int, str]]:
        """``(entity key, event time µs, JSON payload)`` of the newest row per entity.

        Only rows that became usable (``max(event, available)``) in
        ``[start, end)`` are considered, so an incremental run also picks up
        late-arriving values.
        """
        con = connect()
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


def _bound(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value


def quote_any(name: str) -> str:
    """Any column name double-quoted for SQL (embedded quotes doubled): for pass-through columns."""
    return '"' + str(name).replace('"', '""') + '"'


def _output_names(specs: Sequence[GroupSpec], full_names: bool, existing: Sequence[str]) -> list[str]:
    names = [f"{g.name}__{f.name}" if full_names else f.name for g, fs in specs for f in fs]
    clash = {n for n in names if names.count(n) > 1 or n in existing}
    if clash:
        raise ValidationError(f"feature columns {sorted(clash)} collide: pass full_names=True")
    return names


def _decode(feat: Feature, col: pd.Series) -> pd.Series:
    if feat.dtype == "json":
        return col.map(lambda v: json.loads(v) if isinstance(v, str) else None)
    return col
