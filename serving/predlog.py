"""Asynchronous, batched writing of served predictions to the prediction log.

A request hands its whole batch (the decoded columns and the runtime's output)
to :meth:`PredictionLogWriter.submit`, which only puts it on a queue. A
background thread expands batches into rows (features and prediction as JSON)
and appends them to :class:`storage.monitoring.prediction_log.PredictionLog` every
``flush_rows`` rows or ``flush_s`` seconds. ``submit`` never blocks and never
raises: when more than ``max_rows`` rows wait, new batches are dropped and
counted; a failed write is counted and logged; :meth:`close` flushes what is
left.

Rows of a request with several rows are logged with request id ``<id>:<i>``
(``i`` from 0), so ground truth can be reported per row; a one-row request
keeps its id. A classifier's prediction is logged as
``{"label": L, "score": p}`` (``p`` the probability of the last class, the
positive one of a binary model; multiclass rows log the label only), a
regressor's as the number, a failed request as ``null`` with status ``error``.

Example:
    >>> import tempfile
    >>> import numpy as np
    >>> from storage.monitoring.prediction_log import PredictionLog
    >>> from serving.runtimes import Prediction
    >>> log = PredictionLog(tempfile.mkdtemp())
    >>> writer = PredictionLogWriter(log, flush_s=0.05).start()
    >>> writer.submit(LogBatch("r1", "fraud", 3, {"amount": np.array([5.0, 7.5])},
    ...     Prediction(labels=np.array([0, 1]), probabilities=np.array([[0.9, 0.1], [0.2, 0.8]])),
    ...     latency_ms=1.5, endpoint="fraud-api", variant="a"))
    True
    >>> writer.close()
    >>> rows = log.read(model="fraud")
    >>> rows[["request_id", "features", "variant"]].values.tolist()
    [['r1:0', '{"amount":5.0}', 'a'], ['r1:1', '{"amount":7.5}', 'a']]
    >>> rows["prediction"].tolist()
    ['{"label":0,"score":0.1}', '{"label":1,"score":0.8}']
"""

from __future__ import annotations

import collections
import json
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa

from serving.runtimes import Prediction
from storage.monitoring.prediction_log import SCHEMA, STATUSES, PredictionLog
from storage.validation import check_name

logger = logging.getLogger(__name__)

_STOP = object()
#: Batches up to this many rows are written to JSON row by row; larger ones through pandas.
SMALL_BATCH = 32


@dataclass
class LogBatch:
    """One request's predictions, as the serving path hands them over (expanded later)."""

    request_id: str
    model: str
    version: int
    columns: Mapping[str, np.ndarray]
    prediction: Prediction | None
    latency_ms: float
    endpoint: str | None = None
    variant: str | None = None
    status: str = "ok"
    ts: datetime = field(default_factory=lambda: datetime.now(UTC))
    entity_key: str | None = None

    @property
    def rows(self) -> int:
        """How many rows the batch holds."""
        for values in self.columns.values():
            return len(values)
        return 1


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def prediction_json(prediction: Prediction | None, rows: int) -> list[str]:
    """Each row's prediction as the JSON monitoring reads (see the module docs).

    >>> prediction_json(Prediction(values=np.array([1.5, 2.0])), 2)
    ['1.5', '2.0']

    A prediction that does not fit the rows (a model answering with another
    length) still logs one row per input, with a null label:

    >>> prediction_json(Prediction(labels=np.array([0.1, 0.9, 0.8, 0.2]),
    ...                             probabilities=np.array([[0.1, 0.9], [0.8, 0.2]])), 2)
    ['{"label":null,"score":0.9}', '{"label":null,"score":0.2}']
    """
    if prediction is None:
        return ["null"] * rows
    if prediction.values is not None:
        values = np.asarray(prediction.values).reshape(-1)
        if len(values) != rows:  # never drop the rows: log what was asked, without an answer
            return ["null"] * rows
        return [json.dumps(v) if np.isfinite(v) else "null" for v in values.tolist()]
    labels: list[Any] = [None] * rows
    if prediction.labels is not None and len(prediction.labels) == rows:
        labels = prediction.labels.tolist()
    probs = prediction.probabilities
    if probs is not None and probs.ndim == 2 and probs.shape == (rows, 2):
        scores = probs[:, 1].tolist()
        return [
            json.dumps({"label": _plain(lab), "score": s}, separators=(",", ":"), default=str)
            for lab, s in zip(labels, scores, strict=True)
        ]
    return [json.dumps({"label": _plain(lab)}, separators=(",", ":"), default=str) for lab in labels]


def features_json(columns: Mapping[str, np.ndarray]) -> list[str]:
    """Each row's input features as one JSON object (missing values as null).

    >>> features_json({"x": np.array([1.5, np.nan]), "c": np.array(["a", None], dtype=object)})
    ['{"x":1.5,"c":"a"}', '{"x":null,"c":null}']
    """
    rows = len(next(iter(columns.values()))) if columns else 0
    if rows <= SMALL_BATCH:  # a DataFrame costs more than it saves on a few rows
        names = list(columns)
        values = [columns[n].tolist() for n in names]
        return [
            orjson.dumps(dict(zip(names, row, strict=True)), option=orjson.OPT_NON_STR_KEYS).decode()
            for row in zip(*values, strict=True)
        ]
    frame = pd.DataFrame(dict(columns), copy=False)
    text = frame.to_json(orient="records", lines=True, double_precision=15)
    return text.rstrip("\n").split("\n") if text else []


def batch_records(item: LogBatch) -> list[dict[str, Any]]:
    """The prediction log records of one batch."""
    n = item.rows
    features = features_json(item.columns) if item.columns else ["{}"] * n
    predictions = prediction_json(item.prediction, n)
    ids = [item.request_id] if n == 1 else [f"{item.request_id}:{i}" for i in range(n)]
    per_row = item.latency_ms / max(n, 1) if n > 1 else item.latency_ms
    return [
        {
            "request_id": ids[i],
            "model": item.model,
            "version": item.version,
            "ts": item.ts,
            "entity_key": item.entity_key,
            "features": features[i],
            "prediction": predictions[i],
            "latency_ms": per_row,
            "status": item.status,
            "endpoint": item.endpoint,
            "variant": item.variant,
        }
        for i in range(n)
    ]


def write_batches(log: PredictionLog, items: list[LogBatch]) -> list[str]:
    """Write batches as the prediction log's files, column by column (one file per model and day).

    The rows are built by the server, so they are valid by construction; the
    per-row checks of :meth:`PredictionLog.append` (the fallback when this
    raises) would cost more than the prediction itself on large batches.
    """
    groups: dict[tuple[str, str], list[LogBatch]] = {}
    for item in items:
        check_name("model", item.model)
        if "/" in item.model or not item.request_id or item.status not in STATUSES:
            raise ValueError(f"batch {item.request_id!r} cannot be written column by column")
        ts = item.ts if item.ts.tzinfo is not None else item.ts.replace(tzinfo=UTC)
        item.ts = ts.astimezone(UTC)
        groups.setdefault((item.model, item.ts.date().isoformat()), []).append(item)
    written = []
    for (model, day), part in sorted(groups.items(), key=lambda kv: kv[0]):
        columns: dict[str, list[Any]] = {name: [] for name in SCHEMA.names}
        for item in part:
            n = item.rows
            ids = [item.request_id] if n == 1 else [f"{item.request_id}:{i}" for i in range(n)]
            columns["request_id"] += ids
            columns["features"] += features_json(item.columns) if item.columns else ["{}"] * n
            columns["prediction"] += prediction_json(item.prediction, n)
            latency = item.latency_ms / n if n > 1 else item.latency_ms
            for name, value in (
                ("model", item.model), ("version", item.version), ("ts", item.ts),
                ("entity_key", item.entity_key), ("latency_ms", float(latency)), ("status", item.status),
                ("endpoint", item.endpoint), ("variant", item.variant),
            ):  # fmt: skip
                columns[name] += [value] * n
        written.append(log.write_part(model, day, pa.Table.from_pydict(columns, schema=SCHEMA)))
    return written


class PredictionLogWriter:
    """Writes submitted batches to a prediction log from a background thread.

    Args:
        log: Where rows go.
        flush_rows: Write once this many rows wait...
        flush_s: ...or this many seconds passed since the last write.
        max_rows: Rows that may wait; batches beyond are dropped (and counted).
    """

    def __init__(
        self, log: PredictionLog, *, flush_rows: int = 5_000, flush_s: float = 1.0, max_rows: int = 1_000_000
    ) -> None:
        self.log = log
        self.flush_rows = flush_rows
        self.flush_s = flush_s
        self.max_rows = max_rows
        self.rows_written = 0
        self.rows_dropped = 0
        self.rows_failed = 0
        self.longest_write_s = 0.0
        self._waiting = 0
        self._lock = threading.Lock()
        # Batches go on a deque without waking the writer; it wakes every flush_s, or at once
        # when flush_rows wait (a wake-up per request would cost the serving thread the GIL).
        self._items: collections.deque[Any] = collections.deque()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> PredictionLogWriter:
        """Start the background thread (once); returns the writer."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="prediction-log-writer", daemon=True)
            self._thread.start()
        return self

    def submit(self, item: LogBatch) -> bool:
        """Queue a batch; False (and counted as dropped) when the queue is full. Never blocks."""
        rows = item.rows
        with self._lock:
            if self._waiting + rows > self.max_rows:
                self.rows_dropped += rows
                return False
            self._waiting += rows
            urgent = self._waiting >= self.flush_rows
        self._items.append(item)
        if urgent:
            self._wake.set()
        return True

    def flush(self, timeout: float = 10.0) -> bool:
        """Write everything submitted so far; True when done within ``timeout``."""
        if self._thread is None:
            return False
        done = threading.Event()
        self._items.append(done)
        self._wake.set()
        return done.wait(timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Write what is left and stop the thread."""
        if self._thread is None:
            return
        self._items.append(_STOP)
        self._wake.set()
        self._thread.join(timeout)
        self._thread = None

    @property
    def waiting(self) -> int:
        """Rows submitted and not yet written."""
        return self._waiting

    def _write(self, items: list[LogBatch]) -> None:
        rows = sum(i.rows for i in items)
        try:
            write_batches(self.log, items)
            self.rows_written += rows
            return
        except Exception:  # let the validating path below say what is wrong
            pass
        try:
            records = [r for item in items for r in batch_records(item)]
            self.log.append(records)
            self.rows_written += rows
        except Exception as exc:
            if len(items) > 1:  # one bad batch must not lose the others
                for item in items:
                    self._write([item])
                return
            self.rows_failed += rows
            logger.warning("prediction log: %d row(s) of %s not written: %s", rows, items[0].request_id, exc)

    def _run(self) -> None:
        while True:
            self._wake.wait(self.flush_s)
            self._wake.clear()
            pending: list[LogBatch] = []
            events: list[threading.Event] = []
            stop = False
            while self._items:
                item = self._items.popleft()
                if item is _STOP:
                    stop = True
                elif isinstance(item, threading.Event):
                    events.append(item)
                else:
                    pending.append(item)
            if pending:
                rows = sum(i.rows for i in pending)
                began = time.monotonic()
                try:
                    for start in range(0, len(pending), 1000):  # bounded memory per write
                        self._write(pending[start : start + 1000])
                finally:
                    with self._lock:
                        self._waiting -= rows
                    self.longest_write_s = max(self.longest_write_s, time.monotonic() - began)
            for event in events:
                event.set()
            if stop:
                return
