"""The prediction log's rows: the columns, and the checks every appended record passes.

See :mod:`storage.monitoring.prediction_log` for what each column means.

Example:
    >>> check_record({"request_id": "r1", "model": "fraud", "version": 1,
    ...               "ts": "2026-01-01T10:00:00Z", "prediction": 0.1}, 0)["ts"].isoformat()
    '2026-01-01T10:00:00+00:00'
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import pyarrow as pa

from storage.errors import ValidationError
from storage.features.online import entity_key as _key_part
from storage.features.records import check_identifier
from storage.validation import check_name

__all__ = [
    "COLUMNS",
    "SCHEMA",
    "STATUSES",
    "canonical_entity_key",
    "check_record",
    "conform",
    "model_name",
    "utc_timestamp",
]

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


def model_name(value: Any) -> str:
    """``value`` checked as a model name that can name a folder of the log.

    >>> model_name("fraud")
    'fraud'
    """
    check_name("model", value)
    if "/" in value:
        raise ValidationError(f"model {value!r} cannot contain '/' in the prediction log (it names a folder)")
    return str(value)


def check_record(record: Mapping[str, Any], index: int) -> dict[str, Any]:
    """Record number ``index``, checked and in the log's types (a ValidationError names the field)."""
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
        "model": model_name(record["model"]),
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


def conform(table: pa.Table) -> pa.Table:
    """A table of the log's files in today's schema (columns a file predates are null).

    >>> conform(pa.table({"request_id": ["r1"]})).column_names == list(COLUMNS)
    True
    """
    columns = [
        table[f.name].cast(f.type) if f.name in table.column_names else pa.nulls(table.num_rows, f.type)
        for f in SCHEMA
    ]
    return pa.Table.from_arrays(columns, schema=SCHEMA)
