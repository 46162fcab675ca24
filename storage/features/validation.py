"""Validation of an ingested batch against its definitions, and type conversions.

A batch is checked whole before anything is written: key and time columns
present and non-null, no unknown or archived columns, every value of the
feature's type. The error names the group, the column and the first rows (by
position in the batch) with their values.

Example:
    >>> import pandas as pd
    >>> from storage.features.records import Feature, FeatureGroup
    >>> from storage.features.validation import validate_batch
    >>> group = FeatureGroup("trips", "driver", ("driver_id",), "ts")
    >>> batch = pd.DataFrame({"driver_id": [1, 2], "ts": pd.to_datetime(["2026-01-01"] * 2),
    ...                       "rides": [3, 4.5]})
    >>> validate_batch(group, [Feature("trips", "rides", 1, "int", "active")], batch)
    Traceback (most recent call last):
    ...
    storage.errors.ValidationError: batch rejected for group 'trips': column 'rides' expects int at rows 1 ...
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from storage.errors import ValidationError
from storage.features.records import Feature, FeatureGroup, check_identifier

ARROW_TYPES: dict[str, pa.DataType] = {
    "int": pa.int64(),
    "float": pa.float64(),
    "string": pa.string(),
    "bool": pa.bool_(),
    "array": pa.list_(pa.float64()),
    "json": pa.string(),
}
DUCK_TYPES = {
    "int": "BIGINT",
    "float": "DOUBLE",
    "string": "VARCHAR",
    "bool": "BOOLEAN",
    "array": "DOUBLE[]",
    "json": "VARCHAR",
}
SEQ = "_ingest_seq"
ROW = "_ingest_row"
MAX_ROWS_IN_MESSAGE = 10


@dataclass(frozen=True)
class IngestResult:
    """What one ingestion wrote: rows, files and the batch's content hash."""

    group: str
    rows: int
    files: tuple[str, ...]
    batch_id: str

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary."""
        return {"group": self.group, "rows": self.rows, "files": list(self.files), "batch_id": self.batch_id}


def to_utc_naive(values: Any, what: str) -> pd.Series:
    """Timestamps as naive UTC ``datetime64[us]``; naive input is taken as UTC."""
    try:
        series = pd.to_datetime(pd.Series(values), utc=True)
    except (ValueError, TypeError) as exc:
        raise ValidationError(f"{what} holds values that are not timestamps: {exc}") from exc
    return series.dt.tz_convert(None).astype("datetime64[us]")


def _rows(mask: Any) -> list[int]:
    return [int(i) for i in np.flatnonzero(np.asarray(mask))]


def _reject(group: str, column: str, problem: str, rows: Sequence[int], values: Sequence[Any]) -> None:
    shown = ", ".join(f"{r} ({v!r})" for r, v in zip(rows[:MAX_ROWS_IN_MESSAGE], values, strict=False))
    more = f" and {len(rows) - MAX_ROWS_IN_MESSAGE} more" if len(rows) > MAX_ROWS_IN_MESSAGE else ""
    raise ValidationError(
        f"batch rejected for group {group!r}: column {column!r} {problem} at rows {shown}{more}; "
        "nothing was written"
    )


def _is_int(v: Any) -> bool:
    return isinstance(v, int | np.integer) and not isinstance(v, bool | np.bool_)


def _is_float(v: Any) -> bool:
    return isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool | np.bool_)


def _is_array(v: Any) -> bool:
    return isinstance(v, list | tuple | np.ndarray) and all(_is_float(x) for x in v)


_CHECKS = {
    "int": _is_int,
    "float": _is_float,
    "string": lambda v: isinstance(v, str),
    "bool": lambda v: isinstance(v, bool | np.bool_),
    "array": _is_array,
    "json": lambda v: isinstance(v, dict),
}


def _feature_array(group: str, feat: Feature, series: pd.Series) -> pa.Array:
    """Check one feature column element by element and convert it to Arrow."""
    notnull = (
        series.notna().to_numpy()
        if feat.dtype not in ("array", "json")
        else series.map(lambda v: v is not None and not (isinstance(v, float) and np.isnan(v))).to_numpy(
            dtype=bool
        )
    )
    kind = series.dtype.kind
    if (feat.dtype == "float" and kind in "iuf") or (feat.dtype == "int" and kind in "iu"):
        pass
    elif feat.dtype == "int" and kind == "f":
        arr = series.to_numpy()
        bad = notnull & (np.floor(np.where(notnull, arr, 0)) != np.where(notnull, arr, 0))
        if bad.any():
            _reject(group, feat.name, "expects int", _rows(bad), series[bad].tolist())
    elif feat.dtype == "bool" and kind == "b":
        pass
    else:
        check = _CHECKS[feat.dtype]
        ok = series.map(lambda v: check(v)).to_numpy(dtype=bool)
        bad = notnull & ~ok
        if bad.any():
            _reject(group, feat.name, f"expects {feat.dtype}", _rows(bad), series[bad].tolist())
    if feat.dtype == "json":
        series = series.map(lambda v: json.dumps(v, sort_keys=True) if isinstance(v, dict) else None)
    elif feat.dtype == "array":
        series = series.map(lambda v: [float(x) for x in v] if v is not None and notnull_scalar(v) else None)
    elif feat.dtype == "int" and kind == "f":
        series = series.astype("Int64")
    try:
        return pa.Array.from_pandas(series, type=ARROW_TYPES[feat.dtype])
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as exc:
        raise ValidationError(f"batch rejected for group {group!r}: column {feat.name!r}: {exc}") from exc


def notnull_scalar(v: Any) -> bool:
    """False for None and NaN, True for anything else (lists included)."""
    return not (v is None or (isinstance(v, float) and np.isnan(v)))


def validate_batch(group: FeatureGroup, feats: Sequence[Feature], df: pd.DataFrame) -> pa.Table:
    """Check a batch against the definitions and convert it to the stored Arrow layout.

    Raises ValidationError naming the column and the rows when anything is
    wrong: a missing key or time column, an unknown or archived column, a
    null key or timestamp, a value of the wrong type.
    """
    by_name = {f.name: f for f in feats}
    time_cols = [group.event_time_column] + (
        [group.available_time_column] if group.available_time_column else []
    )
    for col in df.columns:
        if not isinstance(col, str) or (col not in by_name and col not in (*group.join_keys, *time_cols)):
            raise ValidationError(
                f"batch rejected for group {group.name!r}: column {col!r} is not a feature of it"
            )
        check_identifier(col, "column")
    for col in (*group.join_keys, group.event_time_column):
        if col not in df.columns:
            raise ValidationError(
                f"batch rejected for group {group.name!r}: required column {col!r} is missing"
            )
    df = df.reset_index(drop=True)
    arrays: dict[str, pa.Array] = {}
    for key in group.join_keys:
        s = df[key]
        if s.isna().any():
            _reject(group.name, key, "is a join key and holds nulls", _rows(s.isna()), [None])
        if s.dtype.kind not in "iu" and not s.map(lambda v: isinstance(v, str)).all():
            bad = ~s.map(lambda v: isinstance(v, str)).to_numpy(dtype=bool)
            _reject(
                group.name,
                key,
                "is a join key and must be all integers or all strings",
                _rows(bad),
                s[bad].tolist(),
            )
        arrays[key] = pa.Array.from_pandas(s, type=pa.int64() if s.dtype.kind in "iu" else pa.string())
    for col in time_cols:
        if col not in df.columns:
            arrays[col] = pa.nulls(len(df), pa.timestamp("us"))
            continue
        ts = to_utc_naive(df[col], f"batch for group {group.name!r}: column {col!r}")
        if col == group.event_time_column and ts.isna().any():
            _reject(group.name, col, "is the event time and holds nulls", _rows(ts.isna()), [None])
        arrays[col] = pa.Array.from_pandas(ts, type=pa.timestamp("us"))
    for name, feat in by_name.items():
        if name not in df.columns:
            continue
        if feat.status == "archived":
            raise ValidationError(f"batch rejected for group {group.name!r}: feature {feat.ref} is archived")
        arrays[feat.column] = _feature_array(group.name, feat, df[name])
    return pa.table(arrays)


def take_column(values: np.ndarray, order: np.ndarray) -> Any:
    """``values[order]`` from DuckDB's ``fetchnumpy``, with NULLs as pandas expects them."""
    if not isinstance(values, np.ma.MaskedArray):
        return values[order]
    data, mask = values.data[order], np.ma.getmaskarray(values)[order]
    if not mask.any():
        return data
    if data.dtype.kind == "f":
        data[mask] = np.nan
        return data
    if data.dtype.kind in "iu":
        return pd.arrays.IntegerArray(data.astype(np.int64), mask)
    if data.dtype.kind == "b":
        return pd.arrays.BooleanArray(data, mask)
    data = data.astype(object)
    data[mask] = None
    return data
