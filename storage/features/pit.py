"""Point-in-time joins over the offline store: the SQL and the two ways to run it.

Each entity row is joined to the newest value of each group that existed *and
was available* at the row's timestamp, within the group's TTL: one DuckDB
``ASOF LEFT JOIN`` per group over candidate rows ordered by (usable from, event
time, ingestion), after a window pass that keeps only the rows that change the
answer when the group has an availability-time column. :func:`historical`
joins a DataFrame in memory; :func:`historical_to_file` joins a Parquet file
to a Parquet file with DuckDB spilling to disk. Both read the group's rows
through a :class:`RowSource` (the :class:`~storage.features.offline.OfflineStore`),
on a connection the caller opens and closes.

Example:
    >>> from storage.features.records import Feature, FeatureGroup
    >>> group = FeatureGroup("trips", "driver", ("driver_id",), "ts")
    >>> output_names([(group, [Feature("trips", "fare", 1, "float", "active")])], True, ["driver_id"])
    ['trips__fare']
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import duckdb
import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from storage.errors import ValidationError
from storage.features.records import Feature, FeatureGroup, quote
from storage.features.validation import DUCK_TYPES, _reject, _rows, take_column, to_utc_naive
from storage.objectstore import is_remote

GroupSpec = tuple[FeatureGroup, Sequence[Feature]]


class RowSource(Protocol):
    """Where a group's stored rows come from: :meth:`OfflineStore.source_sql`."""

    def source_sql(
        self,
        con: duckdb.DuckDBPyConnection,
        group: FeatureGroup,
        feats: Sequence[Feature],
        *,
        min_date: str | None = None,
        max_date: str | None = None,
    ) -> tuple[str, list[Any]] | None:
        """A SELECT over the group's files with ``__et``, ``__eff``, ``__seq`` and the feature columns."""
        ...


def historical(
    con: duckdb.DuckDBPyConnection,
    source: RowSource,
    entity_df: pd.DataFrame,
    specs: Sequence[GroupSpec],
    *,
    timestamp_column: str = "event_timestamp",
    full_names: bool = False,
) -> pd.DataFrame:
    """Point-in-time join in memory: ``entity_df`` (its index kept) plus one column per feature.

    Args:
        con: The DuckDB connection to join on (the caller closes it).
        source: The groups' stored rows.
        entity_df: Join keys and ``timestamp_column`` per row; other columns pass through.
        specs: ``(group, features)`` pairs to join.
        timestamp_column: The entity rows' point in time (naive means UTC).
        full_names: Name columns ``group__feature`` instead of ``feature``.
    """
    ts = to_utc_naive(need(entity_df, timestamp_column, "entity_df"), f"entity_df {timestamp_column!r}")
    if ts.isna().any():
        _reject("entity_df", timestamp_column, "holds null timestamps", _rows(ts.isna()), [None])
    out = entity_df.reset_index(drop=True)
    names = output_names(specs, full_names, list(out.columns))
    keys = list(dict.fromkeys(k for g, _ in specs for k in g.join_keys))
    left = pd.DataFrame({k: need(entity_df, k, "entity_df").reset_index(drop=True) for k in keys})
    left["__ts"], left["__row"] = ts.to_numpy(), np.arange(len(left), dtype=np.int64)  # by position
    con.register("entity_rows", pa.Table.from_pandas(left, preserve_index=False))
    query = join_query(con, source, specs, ts.min(), ts.max()) if len(left) else None
    try:
        frame = con.execute(query[0], query[1]).fetchnumpy() if query else None
    except duckdb.Error as exc:  # e.g. entity keys of another type than the stored ones
        raise ValidationError(f"point-in-time join failed: {exc}") from exc
    n = len(out)
    inverse = np.empty(n, dtype=np.int64)
    if frame is not None:
        inverse[np.asarray(frame["__row"])] = np.arange(n, dtype=np.int64)  # result position per entity row
    out = out.copy(deep=False)
    i = 0
    for _, feats in specs:
        for f in feats:
            if frame is None:
                out[names[i]] = pd.Series([None] * n, dtype=object)
            else:
                out[names[i]] = decode(f, pd.Series(take_column(frame[f"__f{i}"], inverse), copy=False))
            i += 1
    out.index = entity_df.index  # rows are in entity order: the caller's index joins them back
    return out


def historical_to_file(
    con: duckdb.DuckDBPyConnection,
    source: RowSource,
    entity_path: str | os.PathLike[str],
    specs: Sequence[GroupSpec],
    output_path: str | os.PathLike[str],
    *,
    timestamp_column: str = "event_timestamp",
    full_names: bool = False,
) -> int:
    """Point-in-time join for data larger than memory: Parquet in, Parquet out.

    DuckDB reads the entity file, joins and sorts on ``con`` (the caller
    closes it), and the result streams to ``output_path`` in record batches
    (:func:`write_batches`: atomic on a folder and on an object store). Either
    path may be a local path or an fsspec URL (``s3://...``). Returns the
    number of rows written.
    """
    entity = str(entity_path)
    if is_remote(entity):
        fs = fsspec.core.url_to_fs(entity)[0]
        protocols = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
        if not set(protocols) & set(con.list_filesystems()):  # the store's own is registered already
            con.register_filesystem(fs)
    cols = [r[0] for r in con.execute("DESCRIBE SELECT * FROM read_parquet(?)", [entity]).fetchall()]
    if timestamp_column not in cols:
        raise ValidationError(f"entity file is missing column {timestamp_column!r}")
    for k in dict.fromkeys(k for g, _ in specs for k in g.join_keys):
        if k not in cols:
            raise ValidationError(f"entity file is missing column {k!r}")
    names = output_names(specs, full_names, cols)
    con.execute(
        "CREATE TEMP TABLE entity_rows AS SELECT *, "
        f"timezone('UTC', {quote(timestamp_column)}::TIMESTAMPTZ) AS __ts, "
        "file_row_number AS __row FROM read_parquet(?, file_row_number = true)",
        [entity],
    )
    lo, hi = con.execute("SELECT min(__ts), max(__ts) FROM entity_rows").fetchone() or (None, None)
    query = join_query(con, source, specs, lo, hi, passthrough=[c for c in cols if c != "file_row_number"])
    if query is None:
        raise ValidationError("the entity file is empty or no group has data")
    sql, params = query
    renames = ", ".join(f'"__f{i}" AS {quote_any(n)}' for i, n in enumerate(names))
    relation = con.sql(
        f"SELECT * EXCLUDE ({', '.join(f'__f{i}' for i in range(len(names)))}, __row), {renames} "
        f"FROM ({sql}) ORDER BY __row",
        params=params,
    )
    return write_batches(relation.to_arrow_reader(100_000), output_path)


def write_batches(reader: Any, output_path: str | os.PathLike[str]) -> int:
    """Stream an Arrow record-batch reader to a Parquet file; returns the rows written.

    A local file is written under a temporary name and renamed; an object
    store's upload is aborted on failure, so a reader never sees half a file.

    Example:
        >>> import tempfile, pyarrow as pa
        >>> table = pa.table({"x": [1, 2, 3]})
        >>> write_batches(pa.RecordBatchReader.from_batches(table.schema, table.to_batches()),
        ...               f"{tempfile.mkdtemp()}/out.parquet")
        3
    """

    def stream(sink: Any) -> int:
        rows = 0
        with pq.ParquetWriter(sink, reader.schema, compression="zstd") as writer:
            for batch in reader:
                writer.write_batch(batch)
                rows += batch.num_rows
        return rows

    text = str(output_path)
    if is_remote(text):
        fs, path = fsspec.core.url_to_fs(text)
        handle = fs.open(path, "wb")
        try:
            rows = stream(handle)
        except BaseException:
            handle.discard()
            raise
        handle.close()
        return rows
    out = Path(text)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex}.tmp")
    try:
        rows = stream(tmp)
        os.replace(tmp, out)
        return rows
    finally:
        tmp.unlink(missing_ok=True)


def join_query(
    con: duckdb.DuckDBPyConnection,
    source: RowSource,
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
        part = group_rows(con, source, group, feats, min_ts, max_ts)
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


def group_rows(
    con: duckdb.DuckDBPyConnection,
    source: RowSource,
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
    src = source.source_sql(con, group, feats, min_date=min_date, max_date=max_date)
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


def need(df: pd.DataFrame, column: str, what: str) -> pd.Series:
    """``df[column]``, or a ValidationError saying ``what`` is missing it."""
    if column not in df.columns:
        raise ValidationError(f"{what} is missing column {column!r}")
    return df[column]


def quote_any(name: str) -> str:
    """Any column name double-quoted for SQL (embedded quotes doubled): for pass-through columns."""
    return '"' + str(name).replace('"', '""') + '"'


def output_names(specs: Sequence[GroupSpec], full_names: bool, existing: Sequence[str]) -> list[str]:
    """The joined feature columns' names; a ValidationError when two collide or one is taken."""
    names = [f"{g.name}__{f.name}" if full_names else f.name for g, fs in specs for f in fs]
    clash = {n for n in names if names.count(n) > 1 or n in existing}
    if clash:
        raise ValidationError(f"feature columns {sorted(clash)} collide: pass full_names=True")
    return names


def decode(feat: Feature, col: pd.Series) -> pd.Series:
    """JSON features parsed from their stored text; other features as they are."""
    if feat.dtype == "json":
        return col.map(lambda v: json.loads(v) if isinstance(v, str) else None)
    return col
