"""What routers and clients report back about an endpoint: traffic counters and outcomes.

:class:`MeasurementsMixin` stores the per-variant counters routers flush
(``serving_stats`` rows, one per replica and flush) and adds them up over a
window for the canary and A/B analyses, and stores the outcome values clients
report per request (the latest report of a request id wins).
"""

from __future__ import annotations

import builtins
import math
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from storage import schema as t
from storage.endpoints.base import EndpointBase
from storage.endpoints.traffic import StatsRow, VariantStats
from storage.errors import ValidationError


class MeasurementsMixin(EndpointBase):
    """Traffic statistics and outcomes of :class:`~storage.endpoints.store.EndpointStore`."""

    def flush_stats(self, rows: Iterable[StatsRow]) -> int:
        """Store counters flushed by a router; rows of unknown endpoints are dropped. Returns rows stored."""
        rows = [r for r in rows if r.requests > 0]
        if not rows:
            return 0
        now = t.utcnow()
        with self.db.write() as conn:
            ids = self._ids(conn, {r.endpoint for r in rows})
            values = [
                {
                    "endpoint_id": ids[r.endpoint],
                    "variant": r.variant,
                    "replica": r.replica,
                    "window_start": r.window_start or now,
                    "window_end": now,
                    "requests": r.requests,
                    "errors": r.errors,
                    "latency_sum_ms": r.latency_sum_ms,
                    "latency_hist": {str(k): v for k, v in r.latency_hist.items()},
                }
                for r in rows
                if r.endpoint in ids
            ]
            if values:
                conn.execute(t.serving_stats.insert(), values)
            return len(values)

    def stats(self, name: str, *, since: datetime | None = None) -> dict[str, VariantStats]:
        """Per-variant totals of every replica's flushed counters that started at or after ``since``."""
        s = t.serving_stats.c
        with self.db.read() as conn:
            endpoint_id = self._id(conn, name)
            query = sa.select(s.variant, s.requests, s.errors, s.latency_sum_ms, s.latency_hist).where(
                s.endpoint_id == endpoint_id
            )
            if since is not None:
                query = query.where(s.window_start >= since)
            out: dict[str, VariantStats] = {}
            for row in conn.execute(query):
                acc = out.setdefault(row.variant, VariantStats(row.variant))
                acc.requests += row.requests
                acc.errors += row.errors
                acc.latency_sum_ms += row.latency_sum_ms
                acc.histogram.merge(row.latency_hist)
            return out

    def record_outcomes(self, name: str, outcomes: Iterable[tuple[str, str, float]]) -> int:
        """Store ``(request_id, variant, value)`` outcomes; a request id already stored is replaced."""
        latest: dict[str, tuple[str, str, float]] = {}
        for request_id, variant, value in outcomes:
            try:
                number = float(value)
            except (TypeError, ValueError):
                number = math.nan
            if not request_id or not math.isfinite(number):
                raise ValidationError(
                    f"outcome for request {request_id!r} has value {value!r}: need a finite number"
                )
            latest[str(request_id)] = (str(request_id), str(variant), number)
        rows = list(latest.values())
        if not rows:
            return 0
        o = t.serving_outcomes.c
        now = t.utcnow()
        with self.db.write() as conn:
            endpoint = self._load(conn, self._id(conn, name))
            known = {v.name for v in endpoint.variants}
            unknown = sorted({v for _, v, _ in rows} - known)
            if unknown:
                raise ValidationError(f"endpoint {name!r} has no variants {unknown}")
            ids = [r[0] for r in rows]
            conn.execute(
                t.serving_outcomes.delete().where(o.endpoint_id == endpoint.id, o.request_id.in_(ids))
            )
            conn.execute(
                t.serving_outcomes.insert(),
                [
                    {"endpoint_id": endpoint.id, "variant": v, "request_id": r, "value": x, "created_at": now}
                    for r, v, x in rows
                ],
            )
        return len(rows)

    def outcomes(self, name: str) -> dict[str, builtins.list[float]]:
        """Reported outcome values per variant."""
        o = t.serving_outcomes.c
        with self.db.read() as conn:
            endpoint_id = self._id(conn, name)
            out: dict[str, builtins.list[float]] = {}
            for row in conn.execute(
                sa.select(o.variant, o.value).where(o.endpoint_id == endpoint_id).order_by(o.id)
            ):
                out.setdefault(row.variant, []).append(float(row.value))
            return out


def since_seconds(seconds: float) -> datetime:
    """The time ``seconds`` ago (for stats windows); a window longer than the calendar is all of history.

    Example:
        >>> since_seconds(1e300).year
        1
    """
    try:
        return t.utcnow() - timedelta(seconds=seconds)
    except OverflowError:
        return datetime.min.replace(tzinfo=UTC)
