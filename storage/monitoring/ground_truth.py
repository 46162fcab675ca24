"""The ground-truth log: true labels reported after the fact, joined to predictions by request id.

Files are ``<root>/date=YYYY-MM-DD/part-<uuid>.parquet`` (the UTC date the labels
were stored), columns ``request_id`` (string), ``label`` (int64, float64, bool
or string — one type per file), ``ts`` (timestamp, UTC). ``root`` is a folder or
an fsspec URL (``s3://bucket/mlops/ground_truth``): ``MLOPS_GROUND_TRUTH_ROOT``,
else ``ground_truth`` under ``MLOPS_STORAGE_URL`` or ``MLOPS_HOME``. Each file
appears whole or not at all (see :class:`storage.objectstore.Place`).

A request id reported twice keeps its newest label: :meth:`GroundTruthLog.read`
returns one row per request id, the frame
:func:`tasks.monitoring.performance.join_ground_truth` expects, and :func:`read_labels`
reads either such a folder or a single labels file (``.parquet``, ``.csv``,
``.json``, ``.jsonl``).

Example:
    >>> import tempfile
    >>> truth = GroundTruthLog(tempfile.mkdtemp())
    >>> _ = truth.append([{"request_id": "r1", "label": 1}, {"request_id": "r2", "label": 0}])
    >>> _ = truth.append([{"request_id": "r1", "label": 0}])
    >>> truth.read()[["request_id", "label"]].values.tolist()
    [['r1', 0], ['r2', 0]]
"""

from __future__ import annotations

import math
import os
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from blocks.settings import MlopsSettings, get_settings
from storage.errors import ValidationError
from storage.monitoring.prediction_records import utc_timestamp
from storage.objectstore import Place, is_remote

COLUMNS = ("request_id", "label", "ts")
MAX_REQUEST_ID = 512
#: Suffixes of a single labels file (anything else is read as a ground-truth folder).
LABEL_FILES = (".parquet", ".csv", ".json", ".jsonl")

__all__ = ["COLUMNS", "GroundTruthLog", "read_labels"]


def _label_type(labels: Sequence[Any]) -> pa.DataType:
    if all(isinstance(v, bool) for v in labels):
        return pa.bool_()
    if all(isinstance(v, int) and not isinstance(v, bool) for v in labels):
        return pa.int64()
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in labels):
        return pa.float64()
    if all(isinstance(v, str) for v in labels):
        return pa.string()
    kinds = sorted({type(v).__name__ for v in labels})
    raise ValidationError(f"labels in one call must share a type (numbers, booleans or strings), got {kinds}")


def _now_or_utc(value: Any, index: int) -> datetime:
    return datetime.now(UTC) if value is None else utc_timestamp(value, f"label {index}: ts")


def check_label(record: Any, index: int) -> dict[str, Any]:
    """One validated ``{request_id, label, ts}`` record.

    >>> check_label({"request_id": "r1", "label": "spam"}, 0)["label"]
    'spam'
    >>> check_label({"request_id": "", "label": 1}, 3)
    Traceback (most recent call last):
    ...
    storage.errors.ValidationError: label 3: request_id '' must be a non-empty string
    """
    if not isinstance(record, Mapping):
        raise ValidationError(f"label {index} must be an object with request_id and label")
    unknown = sorted(set(record) - set(COLUMNS))
    if unknown:
        raise ValidationError(f"label {index}: unknown field(s) {unknown}; the fields are {list(COLUMNS)}")
    rid = record.get("request_id")
    if not isinstance(rid, str) or not rid.strip() or len(rid) > MAX_REQUEST_ID:
        raise ValidationError(f"label {index}: request_id {rid!r} must be a non-empty string")
    label = record.get("label")
    if label is None or not isinstance(label, bool | int | float | str):
        raise ValidationError(f"label {index} ({rid}): label {label!r} must be a number, boolean or string")
    if isinstance(label, float) and not math.isfinite(label):
        raise ValidationError(f"label {index} ({rid}): label {label!r} must be finite")
    if isinstance(label, int) and not isinstance(label, bool) and not -(2**63) <= label < 2**63:
        raise ValidationError(f"label {index} ({rid}): label {label!r} is out of range")
    return {"request_id": rid, "label": label, "ts": _now_or_utc(record.get("ts"), index)}


class GroundTruthLog:
    """True labels by request id, as Parquet files under ``root`` (see the module docs).

    Args:
        root: A folder or an fsspec URL.

    Attributes:
        root: The root as given (a string).
        place: Where the files are (:class:`storage.objectstore.Place`).
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.place = Place(root)
        self.root = self.place.url

    @classmethod
    def from_settings(cls, settings: MlopsSettings | None = None) -> GroundTruthLog:
        """The log under ``MLOPS_GROUND_TRUTH_ROOT``, else ``ground_truth`` under storage or home."""
        return cls((settings or get_settings()).resolved_ground_truth_root())

    def append(self, records: Sequence[Mapping[str, Any]]) -> str:
        """Validate every record, then write them as one file; returns its path."""
        if not records:
            raise ValidationError("no labels to store")
        rows = [check_label(r, i) for i, r in enumerate(records)]
        schema = pa.schema(
            [
                pa.field("request_id", pa.string(), nullable=False),
                pa.field("label", _label_type([r["label"] for r in rows]), nullable=False),
                pa.field("ts", pa.timestamp("us", tz="UTC"), nullable=False),
            ]
        )
        day = datetime.now(UTC).date().isoformat()
        final = self.place.path(f"date={day}", f"part-{uuid.uuid4().hex}.parquet")
        self.place.write_table(final, pa.Table.from_pylist(rows, schema=schema))
        return final

    def files(self) -> list[str]:
        """The Parquet files under ``root`` (any depth, temporary files skipped), sorted."""
        found = self.place.glob("**", "*.parquet")
        return sorted(f for f in found if not f.rsplit("/", 1)[-1].startswith("."))

    def read(self) -> pd.DataFrame:
        """One row per request id (its newest label), ordered by request id."""
        frames = [self.place.read_table(path).to_pandas() for path in self.files()]
        frames = [f for f in frames if len(f)]
        if not frames:
            return pd.DataFrame(
                {"request_id": pd.Series(dtype=object), "label": pd.Series(dtype=object),
                 "ts": pd.Series(dtype="datetime64[us, UTC]")}
            )  # fmt: skip
        frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
        frame = frame.reset_index(names="_order").sort_values(["ts", "_order"], kind="stable")
        frame = frame.drop_duplicates("request_id", keep="last").sort_values("request_id")
        return frame[list(COLUMNS)].reset_index(drop=True)


def read_labels(path: str | os.PathLike[str]) -> pd.DataFrame:
    """A labels table: a ground-truth folder or URL (see the module docs) or one labels file.

    Example:
        >>> import tempfile
        >>> root = tempfile.mkdtemp()
        >>> _ = GroundTruthLog(root).append([{"request_id": "a", "label": 1}])
        >>> read_labels(root)["label"].tolist()
        [1]
    """
    if is_remote(path) and not str(path).lower().endswith(LABEL_FILES):
        return GroundTruthLog(path).read()
    p = Path(path)
    if p.is_dir():
        return GroundTruthLog(p).read()
    from storage.features.store import read_table

    return read_table(p)
