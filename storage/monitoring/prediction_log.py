"""The prediction log: one row per prediction served, as Parquet files on a folder or an object store.

The format (the serving layer writes it, monitoring and erasure read it):
``<root>/model=<name>/date=YYYY-MM-DD/part-<uuid>.parquet``, the date being the
UTC date of ``ts``; ``root`` is a local folder or an fsspec URL
(``s3://bucket/mlops/predictions``). The columns:

=============  ==================  =============================================
column         type                meaning
=============  ==================  =============================================
request_id     string              id of the request (ground truth joins on it)
model          string              model name
version        int64               model version number
ts             timestamp[us, UTC]  when the prediction was made
entity_key     string, nullable    ``k=v[,k=v]`` sorted by key (see below)
features       string              the input features as JSON
prediction     string              the output as JSON
latency_ms     float64             time spent predicting
status         string              ``ok`` or ``error``
endpoint       string, nullable    serving endpoint the request was sent to
variant        string, nullable    endpoint variant that answered (``shadow:<model>:<ref>``
                                   for a mirrored shadow prediction)
=============  ==================  =============================================

Files written before ``endpoint`` and ``variant`` existed read with both null.

Every file appears whole or not at all (a temporary name renamed on a folder;
an object store shows an object once its upload completes). Compaction merges
a partition's small files into one, and erasure rewrites the files holding an
entity, both through :mod:`storage.monitoring.partitions`: the new file and a
manifest naming the files it replaces are written, and only the manifest's
arrival swaps them, so a reader (and a count) never sees a row twice or not
at all, and the server may keep appending meanwhile. A file damaged anyway
(a disk error, a partial copy) is named in a warning and left out of reads,
so the rest of the log stays readable; :meth:`PredictionLog.verify` names
every such file, and erasure and compaction refuse to pass over one.

Example:
    >>> import tempfile
    >>> from storage.monitoring.prediction_log import PredictionLog
    >>> log = PredictionLog(tempfile.mkdtemp())
    >>> _ = log.append([{"request_id": "r1", "model": "fraud", "version": 1,
    ...                  "ts": "2026-01-01T10:00:00Z", "entity_key": {"card_id": 7},
    ...                  "features": {"amount": 12.5}, "prediction": 0.1, "latency_ms": 1.2}])
    >>> log.read(model="fraud")[["request_id", "entity_key", "status"]].values.tolist()
    [['r1', 'card_id=7', 'ok']]
    >>> log.erase("card_id=7"), log.count("card_id=7")
    (1, 0)
"""

from __future__ import annotations

import errno
import os
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from blocks.settings import MlopsSettings, get_settings
from storage.errors import IntegrityError, StorageFullError, ValidationError
from storage.monitoring.partitions import Listing, Vanished, collect_garbage, listings, replace, visible
from storage.monitoring.prediction_records import (
    COLUMNS,
    SCHEMA,
    STATUSES,
    canonical_entity_key,
    check_record,
    conform,
    model_name,
    utc_timestamp,
)
from storage.objectstore import Place, duckdb_connection
from storage.parquet_files import CorruptFile, named_in, read_skipping_corrupt

__all__ = [
    "COLUMNS",
    "SCHEMA",
    "STATUSES",
    "CompactionResult",
    "PredictionLog",
    "canonical_entity_key",
    "utc_timestamp",
    "write_atomically",
]

T = TypeVar("T")
#: Reads list again when a replacement removed a file under them; erasure passes; both bounded.
ATTEMPTS = 20
_READ_ERRORS = (duckdb.IOException, duckdb.InvalidInputException, duckdb.InternalException)


def write_atomically(table: pa.Table, final: Path) -> None:
    """Write ``table`` to the local file ``final`` as Parquet under a temporary name, then rename it."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.{uuid.uuid4().hex}.tmp")
    try:
        pq.write_table(table, tmp, compression="zstd")
        os.replace(tmp, final)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            message = f"{final.parent} is full ({exc.strerror}): {table.num_rows} rows were not written"
            raise StorageFullError(exc.errno, message) from exc
        raise
    finally:
        tmp.unlink(missing_ok=True)


@dataclass
class CompactionResult:
    """What :meth:`PredictionLog.compact` did.

    Attributes:
        files_before: Files a reader saw in the compacted model(s) before.
        files_after: Files a reader sees after (appends made meanwhile included).
        partitions: Partitions merged into one file each.
        rows: Rows in the merged partitions (unchanged by merging).
        conflicts: Partitions left as they were because another replacement got there first.
        skipped: Files that do not read back (their partitions were left alone), with the reason.
    """

    files_before: int = 0
    files_after: int = 0
    partitions: int = 0
    rows: int = 0
    conflicts: int = 0
    skipped: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """The result as plain data (for a flow's return value)."""
        return asdict(self)


class PredictionLog:
    """The prediction log under ``root`` (see the module docs for the format).

    Args:
        root: Folder or fsspec URL holding one ``model=<name>`` folder per model.

    Attributes:
        root: The root as given (a string).
        place: Where the files are (:class:`storage.objectstore.Place`).
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.place = Place(root)
        self.root = self.place.url

    @classmethod
    def from_settings(cls, settings: MlopsSettings | None = None) -> PredictionLog:
        """The log ``MLOPS_*`` settings point at (``MLOPS_PREDICTION_LOG_ROOT``, ``MLOPS_STORAGE_URL``)."""
        return cls((settings or get_settings()).resolved_prediction_log_root())

    # ------------------------------------------------------------ listing
    def _partitions(
        self, model: str | None, start: date | None = None, end: date | None = None
    ) -> list[Listing]:
        found = listings(self.place, f"model={model_name(model)}" if model else "model=*", "date=*")
        days = [(p, p.parts[-1].removeprefix("date=")) for p in found]
        lo, hi = (start.isoformat() if start else None), (end.isoformat() if end else None)
        return [p for p, day in days if (lo is None or day >= lo) and (hi is None or day <= hi)]

    def _paths(self, model: str | None, start: date | None = None, end: date | None = None) -> list[str]:
        parts = self._partitions(model, start, end)
        return [self.place.path(*p.parts, name) for p in parts for name in visible(p)]

    def files(
        self, model: str | None = None, start: date | None = None, end: date | None = None
    ) -> list[str]:
        """The files a reader reads now (of one model, within a date range), as URIs, sorted."""
        for _ in range(ATTEMPTS):
            try:
                return [self.place.uri(p) for p in self._paths(model, start, end)]
            except Vanished:
                continue
        raise IntegrityError(f"prediction log {self.root}: the files kept changing while listed")

    # ------------------------------------------------------------ writing
    def write_part(self, model: str, day: str, table: pa.Table) -> str:
        """Write one new file of rows of ``model`` made on ``day`` (``YYYY-MM-DD``); returns its path."""
        path = self.place.path(
            f"model={model_name(model)}", f"date={day}", f"part-{uuid.uuid4().hex}.parquet"
        )
        try:
            self.place.write_table(path, table)
        except StorageFullError as exc:
            message = f"{exc.strerror}: {table.num_rows} rows of the prediction log were not written"
            raise StorageFullError(exc.errno, message) from exc
        return path

    def append(self, records: Sequence[Mapping[str, Any]]) -> list[str]:
        """Validate every record, then write one file per (model, date); returns the files' paths."""
        rows = [check_record(r, i) for i, r in enumerate(records)]
        parts: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for row in rows:
            parts.setdefault((row["model"], row["ts"].date().isoformat()), []).append(row)
        return [
            self.write_part(model, day, pa.Table.from_pylist(part, schema=SCHEMA))
            for (model, day), part in sorted(parts.items())
        ]

    # ------------------------------------------------------------ reading
    def _reading(
        self, run: Callable[[duckdb.DuckDBPyConnection, list[str]], T], empty: T,
        model: str | None = None, start: date | None = None, end: date | None = None,
    ) -> T:  # fmt: skip
        """``run`` over the files a reader sees; listed again when a replacement removed one meanwhile."""
        for _ in range(ATTEMPTS):
            try:
                uris = self.files(model, start, end)
                guarded = lambda readable: self._guarded(run, readable, empty)  # noqa: E731
                return read_skipping_corrupt(guarded, uris, f"prediction log {self.root}")
            except Vanished:
                continue
        raise IntegrityError(f"prediction log {self.root}: the files kept changing during {ATTEMPTS} reads")

    def _guarded(
        self, run: Callable[[duckdb.DuckDBPyConnection, list[str]], T], uris: list[str], empty: T
    ) -> T:
        if not uris:
            return empty
        con = duckdb_connection(self.place)
        try:
            return run(con, uris)
        except (duckdb.Error, OSError) as exc:
            if any(not self.place.exists(self._path(u)) for u in uris):
                raise Vanished(f"a file of {self.root} went away during the read") from exc
            reading = isinstance(exc, _READ_ERRORS) or type(exc) is duckdb.Error
            if isinstance(exc, duckdb.Error) and reading and not named_in(exc, uris):
                bad = self._corrupt(uris)
                if bad:  # name them, so that the read leaves them out
                    raise duckdb.IOException(
                        f"{exc}; not readable: {', '.join(c.path for c in bad)}"
                    ) from exc
            raise
        finally:
            con.close()

    def _path(self, uri: str) -> str:
        return uri if self.place.is_local else str(self.place.fs._strip_protocol(uri))

    def _corrupt(self, uris: Sequence[str]) -> list[CorruptFile]:
        corrupt = []
        for uri in uris:
            try:
                self.place.read_table(self._path(uri))
            except FileNotFoundError:
                raise Vanished(f"{uri} went away during the check") from None
            except Exception as exc:  # any failure to read back is what this check reports
                corrupt.append(CorruptFile(uri, f"{type(exc).__name__}: {exc}"))
        return corrupt

    def read(
        self, model: str | None = None, start: datetime | None = None, end: datetime | None = None
    ) -> pd.DataFrame:
        """Rows with ``start <= ts < end`` (naive times are UTC), oldest first."""
        lo = utc_timestamp(start, "start") if start is not None else None
        hi = utc_timestamp(end, "end") if end is not None else None
        where: list[str] = ["TRUE"]
        params: list[Any] = []
        for clause, value in (("model = ?", model), ("ts >= ?", lo), ("ts < ?", hi)):
            if value is not None:
                where.append(clause)
                params.append(value)
        sql = (
            "SELECT * FROM read_parquet(?, hive_partitioning = false, "
            f"union_by_name = true) WHERE {' AND '.join(where)} ORDER BY ts, request_id"
        )

        def run(con: duckdb.DuckDBPyConnection, uris: list[str]) -> pd.DataFrame:
            frame = con.execute(sql, [uris, *params]).fetch_df()
            for column in COLUMNS:  # files older than a column read it as null
                if column not in frame.columns:
                    frame[column] = None
            return frame[list(COLUMNS)]

        empty = SCHEMA.empty_table().to_pandas()
        return self._reading(run, empty, model, lo.date() if lo else None, hi.date() if hi else None)

    def verify(self, model: str | None = None) -> list[CorruptFile]:
        """Every file of the log (of one model) that does not read back whole, with the reason."""
        for _ in range(ATTEMPTS):
            try:
                return self._corrupt(self.files(model))
            except Vanished:
                continue
        raise IntegrityError(f"prediction log {self.root}: the files kept changing while verified")

    def count(self, entity_key: Mapping[str, Any] | str) -> int:
        """Rows logged for one entity (in the canonical ``k=v[,k=v]`` form, or as a mapping)."""
        key = canonical_entity_key(entity_key)

        def run(con: duckdb.DuckDBPyConnection, uris: list[str]) -> int:
            sql = "SELECT count(*) FROM read_parquet(?, hive_partitioning = false) WHERE entity_key = ?"
            row = con.execute(sql, [uris, key]).fetchone()
            return int(row[0]) if row else 0

        return self._reading(run, 0)

    # ------------------------------------------------------------ rewriting
    def _whole(self, path: str, columns: list[str] | None = None) -> pa.Table:
        """A file of the log; one that does not read back is an error that names it."""
        try:
            return self.place.read_table(path, columns)
        except FileNotFoundError:
            raise Vanished(f"{self.place.uri(path)} went away") from None
        except Exception as exc:  # a damaged file: stop, naming it
            raise IntegrityError(
                f"the prediction log file {self.place.uri(path)} does not read back "
                f"({type(exc).__name__}: {exc}); restore or remove it, then try again"
            ) from None

    def erase(self, entity_key: Mapping[str, Any] | str) -> int:
        """Rewrite every file holding the entity's rows without them; returns the rows removed.

        In each partition the files holding the entity are replaced by one file
        of their other rows (none when nothing is left), atomically for readers;
        passes repeat until no row of the entity is left (a compaction running
        at the same time may have merged a file before it was rewritten).

        Raises:
            IntegrityError: A file of the log does not read back (it is named): it
                might hold the entity's rows, so nothing is passed over silently.
        """
        key = canonical_entity_key(entity_key)
        removed = 0
        for _ in range(ATTEMPTS):
            try:
                done, conflicts = self._erase_pass(key)
            except Vanished:
                continue
            removed += done
            if not conflicts and self.count(key) == 0:
                return removed
        raise IntegrityError(f"prediction log {self.root}: rows of {key} remain after {ATTEMPTS} passes")

    def _erase_pass(self, key: str) -> tuple[int, int]:
        removed = conflicts = 0
        for part in self._partitions(None):
            inputs, kept, gone = [], [], 0
            for name in visible(part):
                path = self.place.path(*part.parts, name)
                if not pc.any(pc.equal(self._whole(path, ["entity_key"])["entity_key"], key)).as_py():
                    continue
                table = conform(self._whole(path))
                rest = table.filter(pc.fill_null(pc.not_equal(table["entity_key"], key), True))
                inputs.append(name)
                kept.append(rest)
                gone += table.num_rows - rest.num_rows
            if not inputs:
                continue
            if replace(self.place, part.parts, inputs, pa.concat_tables(kept)):
                removed += gone
            else:
                conflicts += 1
        return removed, conflicts

    def compact(self, model: str | None = None, *, min_files: int = 2) -> CompactionResult:
        """Merge each partition (model and date) of ``min_files`` files or more into one file.

        Readers see the small files or the merged one, never both and never
        neither; rows appended meanwhile land in new files and stay. A
        partition with a file that does not read back is left alone and named
        in ``skipped``; one another replacement changed meanwhile counts in
        ``conflicts`` (it is merged next time).
        """
        if isinstance(min_files, bool) or not isinstance(min_files, int) or min_files < 2:
            raise ValidationError(f"min_files {min_files!r} must be a whole number of at least 2")
        result = CompactionResult()
        for part in self._stable(lambda: self._partitions(model)):
            names = visible(part)
            result.files_before += len(names)
            if len(names) < min_files:
                collect_garbage(self.place, part.parts)
                continue
            merged = self._merge(part, names, result)
            if merged is None:
                continue
            if replace(self.place, part.parts, names, merged):
                result.partitions += 1
                result.rows += merged.num_rows
            else:
                result.conflicts += 1
        result.files_after = len(self.files(model))
        return result

    def _merge(self, part: Listing, names: list[str], result: CompactionResult) -> pa.Table | None:
        tables = []
        for name in names:
            path = self.place.path(*part.parts, name)
            try:
                tables.append(conform(self.place.read_table(path)))
            except FileNotFoundError:
                result.conflicts += 1
                return None
            except Exception as exc:  # a damaged file: leave the partition as it is, naming the file
                result.skipped.append(f"{self.place.uri(path)}: {type(exc).__name__}: {exc}")
                return None
        merged = pa.concat_tables(tables)
        return merged.sort_by([("ts", "ascending"), ("request_id", "ascending")])

    @staticmethod
    def _stable(list_now: Callable[[], list[Listing]]) -> list[Listing]:
        for _ in range(ATTEMPTS):
            try:
                return list_now()
            except Vanished:
                continue
        raise IntegrityError("the prediction log's files kept changing while listed")
