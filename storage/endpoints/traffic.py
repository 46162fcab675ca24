"""Traffic statistics of serving endpoints: latency histograms and per-variant counters.

Routers count requests, errors and latencies per variant and flush them as
:class:`StatsRow` s (see :meth:`storage.endpoints.store.EndpointStore.flush_stats`);
readers add rows up into :class:`VariantStats`. Histograms are log-spaced, so
many replicas' counts merge exactly.

Example:
    >>> stats = VariantStats("a", requests=4, errors=1, latency_sum_ms=8.0)
    >>> stats.error_rate, stats.to_dict()["mean_ms"]
    (0.25, 2.0)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

# Latency histogram: log-spaced buckets, 5% wide, from 0.01 ms up.
_HIST_BASE_MS = 0.01
_HIST_GROWTH = 1.05
_LOG_GROWTH = math.log(_HIST_GROWTH)

__all__ = ["LatencyHistogram", "StatsRow", "VariantStats"]


class LatencyHistogram:
    """A mergeable latency sketch: counts in log-spaced buckets 5% wide.

    Quantiles come back within about 2.5% of the true value, and histograms from
    many replicas add up exactly.

    Example:
        >>> h = LatencyHistogram()
        >>> for ms in range(1, 101):
        ...     h.add(float(ms))
        >>> abs(h.quantile(0.99) - 99) / 99 < 0.03
        True
    """

    __slots__ = ("counts",)

    def __init__(self, counts: Mapping[int, int] | None = None) -> None:
        self.counts: dict[int, int] = dict(counts or {})

    @staticmethod
    def bucket(ms: float) -> int:
        """The bucket index of a latency in milliseconds."""
        if not ms > _HIST_BASE_MS:  # also catches NaN
            return 0
        return int(math.log(ms / _HIST_BASE_MS) / _LOG_GROWTH) + 1

    def add(self, ms: float, count: int = 1) -> None:
        """Count ``count`` requests that took ``ms`` milliseconds."""
        index = self.bucket(ms)
        self.counts[index] = self.counts.get(index, 0) + count

    def merge(self, other: LatencyHistogram | Mapping[Any, int]) -> LatencyHistogram:
        """Add another histogram's counts to this one (returns self)."""
        counts = other.counts if isinstance(other, LatencyHistogram) else other
        for key, value in counts.items():
            index = int(key)
            self.counts[index] = self.counts.get(index, 0) + int(value)
        return self

    @property
    def total(self) -> int:
        """The number of latencies counted."""
        return sum(self.counts.values())

    def quantile(self, q: float) -> float:
        """The latency (ms) below which a fraction ``q`` of requests fell; NaN when empty."""
        total = self.total
        if total == 0:
            return math.nan
        rank = q * total
        seen = 0
        for index in sorted(self.counts):
            seen += self.counts[index]
            if seen >= rank:
                if index == 0:
                    return _HIST_BASE_MS
                low = _HIST_BASE_MS * _HIST_GROWTH ** (index - 1)
                return low * math.sqrt(_HIST_GROWTH)
        return _HIST_BASE_MS * _HIST_GROWTH ** max(self.counts)  # pragma: no cover - rank <= total

    def to_json(self) -> dict[str, int]:
        """The counts with string keys, as stored in JSON."""
        return {str(k): v for k, v in self.counts.items()}


@dataclass(frozen=True)
class StatsRow:
    """Counters one router flushes for one variant."""

    endpoint: str
    variant: str
    replica: str
    requests: int
    errors: int
    latency_sum_ms: float
    latency_hist: Mapping[int, int]
    window_start: datetime | None = None


@dataclass
class VariantStats:
    """Added-up traffic of a variant over a window."""

    variant: str
    requests: int = 0
    errors: int = 0
    latency_sum_ms: float = 0.0
    histogram: LatencyHistogram = field(default_factory=LatencyHistogram)

    @property
    def error_rate(self) -> float:
        """Errors over requests (0 without requests)."""
        return self.errors / self.requests if self.requests else 0.0

    def quantile(self, q: float) -> float:
        """Latency quantile in ms (NaN without requests)."""
        return self.histogram.quantile(q)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (NaN percentiles as None)."""

        def _ms(q: float) -> float | None:
            value = self.quantile(q)
            return None if math.isnan(value) else round(value, 4)

        return {
            "variant": self.variant,
            "requests": self.requests,
            "errors": self.errors,
            "error_rate": self.error_rate,
            "mean_ms": self.latency_sum_ms / self.requests if self.requests else None,
            "p50_ms": _ms(0.5),
            "p95_ms": _ms(0.95),
            "p99_ms": _ms(0.99),
        }
