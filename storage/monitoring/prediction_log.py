"""The prediction log: one row per prediction served, as Parquet files.

The format (the serving layer writes it, monitoring and erasure read it):
``<root>/model=<name>/date=YYYY-MM-DD/part-<uuid>.parquet``, the date being the
UTC date of ``ts``, with the columns

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

Every file is written under a temporary name and renamed, so a reader sees a
whole file or none. Erasing an entity rewrites each affected file the same way.
A file damaged anyway (a disk error, a partial copy) is named in a warning and
left out of reads, so the rest of the log stays readable; :meth:`PredictionLog.verify`
names every such file, and erasure refuses to pass over one (it might hold the
entity's rows).

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
import glob
import json
import math
import os
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from blocks.settings import MlopsSettings, get_settings
from storage.errors import IntegrityError, StorageFullError, ValidationError
from storage.features.online import entity_key as _key_part
from storage.features.records import check_identifier
from storage.parquet_files import CorruptFile, read_skipping_corrupt, verify_parquet
from storage.validation import check_name

SCHEMA = pa.schema(
    [
        pa.field("request_id", pa.string(), nullable=False),
        pa.field("model", pa.string(), nullable=False),
        pa.field("version", pa.int64(), nullable=False),
        pa.field("ts", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("entity_key", pa.string()),
        pa.field("features", pa.string(), nullable=False),
        pa.field("prediction", pa.string(), nullable=False),
        pa.field("latency_ms", pa.float64(), nullable=False),
        pa.field("status", pa.string(), nullable=False),
        pa.field("endpoint", pa.string()),
        pa.field("variant", pa.string()),
    ]
)
COLUMNS: tuple[str, ...] = tuple(SCHEMA.names)
STATUSES = ("ok", "error")

__all__ = ["COLUMNS", "SCHEMA", "STATUSES", "PredictionLog", "canonical_entity_key"]


def canonical_entity_key(keys: Mapping[str, Any] | str) -> str:
    """The canonical ``k=v[,k=v]`` form of an entity's join-key values, sorted by key.

    Values are written as the online store writes them (``1.0`` as ``1``,
    booleans as ``true``/``false``); a string already in this form is
    re-parsed and normalised.

    Example:
        >>> canonical_entity_key({"zone": "b", "city_id": 3})
        'city_id=3,zone=b'
        >>> canonical_entity_key("zone=b, city_id=3")
        'city_id=3,zone=b'
    """
    if isinstance(keys, str):
        pairs: dict[str, Any] = {}
        for part in keys.split(","):
            name, sep, value = part.partition("=")
            if not sep:
                raise ValidationError(f"entity key {keys!r} is malformed: expected k=v[,k=v]")
            pairs[name.strip()] = value.strip()
        keys = pairs
    if not isinstance(keys, Mapping) or not keys:
        raise ValidationError(f"entity key {keys!r} must name at least one join key, e.g. card_id=1")
    parts = []
    for name in sorted(keys):
        check_identifier(name, "entity key name")
        value = keys[name]
        if value is None or isinstance(value, Mapping | list | tuple):
            raise ValidationError(f"entity key {name!r} has value {value!r}: use a string or number")
        text = _key_part([value])
        if not text or any(c in text for c in ",=\n"):
            raise ValidationError(
                f"entity key {name!r} has value {text!r}: it must be non-empty without ',' or '='"
            )
        parts.append(f"{name}={text}")
    return ",".join(parts)


def utc_timestamp(value: Any, what: str) -> datetime:
    """``value`` as an aware UTC datetime; a ValidationError naming ``what`` when it is none.

    >>> utc_timestamp("2026-01-01 10:00", "ts").isoformat()
    '2026-01-01T10:00:00+00:00'
    """
    try:
        ts = pd.Timestamp(value)
    except (TypeError, ValueError):
        raise ValidationError(f"{what} {value!r} is not a timestamp") from None
    if pd.isna(ts):
        raise ValidationError(f"{what} is missing")
    ts = ts.tz_localize(UTC) if ts.tzinfo is None else ts.tz_convert(UTC)
    return ts.to_pydatetime()


def _json_text(field: str, value: Any, index: int) -> str:
    if isinstance(value, str):
        try:
            json.loads(value)
        except ValueError:
            raise ValidationError(f"record {index}: {field} {value[:80]!r} is not valid JSON") from None
        return value
    try:
        return json.dumps(value, allow_nan=False, separators=(",", ":"), default=str)
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"record {index}: {field} is not JSON-serialisable: {exc}") from None


def _model_name(value: Any) -> str:
    check_name("model", value)
    if "/" in value:
        raise ValidationError(f"model {value!r} cannot contain '/' in the prediction log (it names a folder)")
    return str(value)


def _row(record: Mapping[str, Any], index: int) -> dict[str, Any]:
    unknown = set(record) - set(COLUMNS)
    if unknown:
        raise ValidationError(f"record {index}: unknown fields {sorted(unknown)}; the columns are {COLUMNS}")
    for field in ("request_id", "model", "version", "ts", "prediction"):
        if record.get(field) is None:
            raise ValidationError(f"record {index}: field {field!r} is required")
    request_id = record["request_id"]
    if not isinstance(request_id, str) or not request_id:
        raise ValidationError(f"record {index}: request_id {request_id!r} must be a non-empty string")
    version = record["version"]
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValidationError(f"record {index}: version {version!r} must be a positive whole number")
    latency = record.get("latency_ms", 0.0)
    if isinstance(latency, bool) or not isinstance(latency, int | float) or not math.isfinite(latency):
        raise ValidationError(f"record {index}: latency_ms {latency!r} must be a finite number")
    if latency < 0:
        raise ValidationError(f"record {index}: latency_ms {latency!r} must not be negative")
    status = record.get("status", "ok")
    if status not in STATUSES:
        raise ValidationError(f"record {index}: status {status!r} is not one of {', '.join(STATUSES)}")
    key = record.get("entity_key")
    for field in ("endpoint", "variant"):
        if record.get(field) is not None and not isinstance(record[field], str):
            raise ValidationError(f"record {index}: {field} {record[field]!r} must be a string")
    return {
        "request_id": request_id,
        "model": _model_name(record["model"]),
        "version": int(version),
        "ts": utc_timestamp(record["ts"], f"record {index}: ts"),
        "entity_key": canonical_entity_key(key) if key is not None else None,
        "features": _json_text("features", record.get("features", {}), index),
        "prediction": _json_text("prediction", record["prediction"], index),
        "latency_ms": float(latency),
        "status": status,
        "endpoint": record.get("endpoint"),
        "variant": record.get("variant"),
    }


def write_atomically(table: pa.Table, final: Path) -> None:
    """Write ``table`` to ``final`` as Parquet under a temporary name, then rename it into place."""
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


def _read_whole(path: str, columns: list[str] | None = None) -> pa.Table:
    """A file of the log; one that does not read back is an error that names it."""
    try:
        return pq.ParquetFile(path).read(columns=columns)
    except Exception as exc:  # a damaged file: stop, naming it
        raise IntegrityError(
            f"the prediction log file {path} does not read back ({type(exc).__name__}: {exc}); "
            "restore or remove it, then erase again"
        ) from None


class PredictionLog:
    """The prediction log under ``root`` (see the module docs for the format).

    Args:
        root: Folder holding one ``model=<name>`` folder per model.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    @classmethod
    def from_settings(cls, settings: MlopsSettings | None = None) -> PredictionLog:
        """The log ``MLOPS_*`` settings point at (``MLOPS_PREDICTION_LOG_ROOT``)."""
        return cls((settings or get_settings()).resolved_prediction_log_root())

    def files(
        self, model: str | None = None, start: date | None = None, end: date | None = None
    ) -> list[str]:
        """The log's Parquet files (of one model, within a date range), sorted."""
        pattern = self.root / (f"model={_model_name(model)}" if model else "model=*") / "date=*"
        found = []
        for path in glob.glob(str(pattern / "part-*.parquet")):
            day = Path(path).parent.name.removeprefix("date=")
            if (start is None or day >= start.isoformat()) and (end is None or day <= end.isoformat()):
                found.append(path)
        return sorted(found)

    def append(self, records: Sequence[Mapping[str, Any]]) -> list[Path]:
        """Validate every record, then write one file per (model, date); returns the files."""
        rows = [_row(r, i) for i, r in enumerate(records)]
        parts: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for row in rows:
            parts.setdefault((row["model"], row["ts"].date().isoformat()), []).append(row)
        written = []
        for (model, day), part in sorted(parts.items()):
            final = self.root / f"model={model}" / f"date={day}" / f"part-{uuid.uuid4().hex}.parquet"
            write_atomically(pa.Table.from_pylist(part, schema=SCHEMA), final)
            written.append(final)
        return written

    def read(
        self, model: str | None = None, start: datetime | None = None, end: datetime | None = None
    ) -> pd.DataFrame:
        """Rows with ``start <= ts < end`` (naive times are UTC), oldest first."""
        lo = utc_timestamp(start, "start") if start is not None else None
        hi = utc_timestamp(end, "end") if end is not None else None
        files = self.files(model, lo.date() if lo else None, hi.date() if hi else None)
        if not files:
            return SCHEMA.empty_table().to_pandas()
        where: list[str] = ["TRUE"]
        params: list[Any] = [files]
        for clause, value in (("model = ?", model), ("ts >= ?", lo), ("ts < ?", hi)):
            if value is not None:
                where.append(clause)
                params.append(value)
        sql = (
            "SELECT * FROM read_parquet(?, hive_partitioning = false, "
            f"union_by_name = true) WHERE {' AND '.join(where)} ORDER BY ts, request_id"
        )

        def run(readable: list[str]) -> pd.DataFrame:
            if not readable:
                return SCHEMA.empty_table().to_pandas()
            con = duckdb.connect()
            try:
                con.execute("SET TimeZone = 'UTC'")
                frame = con.execute(sql, [readable, *params[1:]]).fetch_df()
            finally:
                con.close()
            for column in COLUMNS:  # files older than a column read it as null
                if column not in frame.columns:
                    frame[column] = None
            return frame[list(COLUMNS)]

        return read_skipping_corrupt(run, files, f"prediction log {self.root}")

    def verify(self, model: str | None = None) -> list[CorruptFile]:
        """Every file of the log (of one model) that does not read back whole, with the reason."""
        return verify_parquet(self.files(model))

    def count(self, entity_key: Mapping[str, Any] | str) -> int:
        """Rows logged for one entity (in the canonical ``k=v[,k=v]`` form, or as a mapping)."""
        key = canonical_entity_key(entity_key)
        files = self.files()
        if not files:
            return 0

        def run(readable: list[str]) -> int:
            if not readable:
                return 0
            con = duckdb.connect()
            try:
                sql = "SELECT count(*) FROM read_parquet(?, hive_partitioning = false) WHERE entity_key = ?"
                row = con.execute(sql, [readable, key]).fetchone()
                return int(row[0]) if row else 0
            finally:
                con.close()

        return read_skipping_corrupt(run, files, f"prediction log {self.root}")

    def erase(self, entity_key: Mapping[str, Any] | str) -> int:
        """Rewrite every file holding the entity's rows without them; returns the rows removed.

        Each file is replaced atomically (temporary file, then rename); a file
        left empty is deleted.

        Raises:
            IntegrityError: A file of the log does not read back (it is named): it
                might hold the entity's rows, so nothing is passed over silently.
        """
        key = canonical_entity_key(entity_key)
        removed = 0
        for path in self.files():
            keys = _read_whole(path, ["entity_key"])["entity_key"]
            if not pc.any(pc.equal(keys, key)).as_py():
                continue
            table = _read_whole(path)
            keep = pc.fill_null(pc.not_equal(table["entity_key"], key), True)
            kept = table.filter(keep)
            if kept.num_rows == table.num_rows:
                continue
            removed += table.num_rows - kept.num_rows
            if kept.num_rows == 0:
                Path(path).unlink(missing_ok=True)
            else:
                write_atomically(kept, Path(path))
        return removed
