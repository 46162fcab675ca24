"""The traffic router: which model version answers a request to an endpoint.

The router keeps every endpoint's configuration in memory and re-reads it from
the metadata DB at most every ``refresh_s`` (only when an endpoint's revision
moved), so :meth:`TrafficRouter.route` never touches the database. Assignment is
sticky: a request key (a user id, a session) hashes with BLAKE2b into
``[0, 1)`` and falls into one variant's slice of the cumulative weights; the
canary variant is last, so raising its weight keeps the keys it already had.
Requests without a key are assigned at random.

:meth:`TrafficRouter.observe` counts each answered request per variant
(requests, errors, latency histogram) in memory; a background thread flushes
the counters to ``serving_stats`` so every replica's traffic adds up in the
database, where the canary analysis and A/B reports read it.

Example:
    >>> from storage.db import Database
    >>> from storage.endpoints.store import EndpointStore, VariantSpec
    >>> from serving.traffic import TrafficRouter
    >>> db = Database("sqlite:///:memory:")
    >>> _ = EndpointStore(db).create("fraud", [VariantSpec("a", "fraud", "1", 50),
    ...                                        VariantSpec("b", "fraud", "2", 50)], policy="ab")
    >>> router = TrafficRouter(db)
    >>> route = router.route("fraud", "user-42")
    >>> route.variant in {"a", "b"}, route == router.route("fraud", "user-42")
    (True, True)
    >>> router.route("no-such-endpoint", "user-1") is None
    True
    >>> router.close()
"""

from __future__ import annotations

import bisect
import hashlib
import logging
import os
import random
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from storage.db import Database
from storage.endpoints.store import Endpoint, EndpointStore, LatencyHistogram, StatsRow

__all__ = ["Route", "Target", "TrafficRouter", "assignment_point"]

log = logging.getLogger(__name__)
_SCALE = float(2**64)


@dataclass(frozen=True)
class Target:
    """A model and a version reference (``"3"``, ``"@champion"``, ``"production"``)."""

    model: str
    version: str


@dataclass(frozen=True)
class Route:
    """Where one request goes: the endpoint, the chosen variant, its target, and shadows to mirror to."""

    endpoint: str
    variant: str
    target: Target
    shadows: tuple[Target, ...] = ()


def assignment_point(endpoint: str, request_key: str) -> float:
    """The stable point in ``[0, 1)`` a request key falls on for an endpoint.

    Example:
        >>> assignment_point("fraud", "user-1") == assignment_point("fraud", "user-1")
        True
        >>> 0 <= assignment_point("fraud", "user-1") < 1
        True
    """
    digest = hashlib.blake2b(f"{endpoint}\x00{request_key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _SCALE


@dataclass(frozen=True)
class _Table:
    """One endpoint compiled for routing."""

    revision: int
    bounds: tuple[float, ...]  # cumulative weights, last == 1.0
    plain: tuple[Route, ...]  # per variant, without shadows
    mirrored: tuple[Route, ...]  # per variant, with the shadow targets
    shadow_fraction: float
    targets: dict[str, Target]  # every live variant's target, weight 0 included

    @classmethod
    def compile(cls, endpoint: Endpoint) -> _Table | None:
        live = [v for v in endpoint.live if v.weight > 0]
        total = sum(v.weight for v in live)
        if not live or total <= 0:
            return None
        targets = {v.name: Target(v.model, v.version) for v in endpoint.live}
        bounds, acc = [], 0.0
        for v in live:
            acc += v.weight / total
            bounds.append(acc)
        bounds[-1] = 1.0
        shadows = tuple(Target(s.model, s.version) for s in endpoint.shadows)
        plain = tuple(Route(endpoint.name, v.name, Target(v.model, v.version)) for v in live)
        mirrored = tuple(Route(r.endpoint, r.variant, r.target, shadows) for r in plain)
        fraction = endpoint.shadow_percent / 100.0 if shadows else 0.0
        return cls(endpoint.revision, tuple(bounds), plain, mirrored, fraction, targets)


class _Counter:
    __slots__ = ("errors", "histogram", "latency_sum_ms", "requests", "started")

    def __init__(self, started: datetime | None = None) -> None:
        self.started = started or datetime.now(UTC)
        self.requests = 0
        self.errors = 0
        self.latency_sum_ms = 0.0
        self.histogram = LatencyHistogram()


class TrafficRouter:
    """Routes requests to endpoint variants from the endpoint configuration in the metadata DB.

    Args:
        db: The metadata database holding endpoints.
        refresh_s: Longest time a cached configuration is used before re-reading it.
        flush_s: How often observed counters are written to the database.
        replica: Name of this process in the flushed stats (host-pid by default).
        background: Run refresh and flush on a background thread (else call
            :meth:`refresh` and :meth:`flush` yourself).
        guard_s: How often the background thread checks running canaries and
            rolls back one that breaches its thresholds (None: never), so a
            failing canary stops even when no rollout flow watches it.
    """

    def __init__(
        self,
        db: Database,
        *,
        refresh_s: float = 1.0,
        flush_s: float = 2.0,
        replica: str | None = None,
        background: bool = True,
        guard_s: float | None = 5.0,
    ) -> None:
        self.db = db
        self.store = EndpointStore(db, actor="router")
        self.refresh_s = refresh_s
        self.flush_s = flush_s
        self.guard_s = guard_s
        self._canaries: set[str] = set()
        self.replica = replica or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._tables: dict[str, _Table | None] = {}
        self._revisions: dict[str, int] = {}
        self._loaded_at = 0.0
        self._refresh_lock = threading.Lock()
        self._counters: dict[tuple[str, str], _Counter] = {}
        self._sealed: list[tuple[str, str, _Counter]] = []
        self._counter_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.refresh()
        if background:
            self._thread = threading.Thread(target=self._loop, name="traffic-router", daemon=True)
            self._thread.start()

    # -- routing ---------------------------------------------------------------

    def route(self, name: str, request_key: str | None) -> Route | None:
        """The route for one request to endpoint ``name`` (None when no such endpoint exists)."""
        tables = self._tables
        if name not in tables:
            # A model name, or an endpoint created elsewhere moments ago: the background
            # thread picks it up; without one, re-read at most every refresh_s.
            if self._thread is not None or time.monotonic() - self._loaded_at < self.refresh_s:
                return None
            self.refresh()
            tables = self._tables
            if name not in tables:
                return None
        table = tables[name]
        if table is None:
            return None
        point = assignment_point(name, request_key) if request_key is not None else random.random()
        index = bisect.bisect_right(table.bounds, point)
        if index >= len(table.plain):
            index = len(table.plain) - 1
        if table.shadow_fraction and random.random() < table.shadow_fraction:
            return table.mirrored[index]
        return table.plain[index]

    def endpoints(self) -> list[str]:
        """Names of the endpoints the router knows now."""
        return sorted(self._tables)

    def refresh(self) -> None:
        """Re-read endpoints whose revision moved (all of them on the first call)."""
        with self._refresh_lock:
            revisions = self.store.revisions()
            if revisions != self._revisions:
                tables = dict(self._tables)
                for gone in set(tables) - set(revisions):
                    del tables[gone]
                changed = {n for n, r in revisions.items() if self._revisions.get(n) != r}
                self._seal(changed | (set(self._revisions) - set(revisions)))
                for name in sorted(changed):
                    try:
                        endpoint = self.store.get(name)
                    except LookupError:  # deleted between the two reads
                        tables.pop(name, None)
                        continue
                    tables[name] = _Table.compile(endpoint)
                    plan = endpoint.canary
                    if endpoint.policy == "canary" and plan is not None and plan.status == "running":
                        self._canaries.add(name)
                    else:
                        self._canaries.discard(name)
                self._canaries &= set(revisions)
                self._tables = tables
                self._revisions = revisions
            self._loaded_at = time.monotonic()

    # -- observations ----------------------------------------------------------

    def _seal(self, endpoints: set[str]) -> None:
        """Close the counters of endpoints whose configuration changed: later requests count anew."""
        if not endpoints:
            return
        with self._counter_lock:
            for key in [k for k in self._counters if k[0] in endpoints]:
                self._sealed.append((*key, self._counters.pop(key)))

    def observe(self, endpoint: str, variant: str, target: Target, latency_ms: float, ok: bool) -> None:
        """Count one answered request of a variant.

        A request answered by a target the variant no longer points to (routed
        just before a change) is not counted: it belongs to the old configuration.
        """
        table = self._tables.get(endpoint)
        if table is not None and table.targets.get(variant, target) != target:
            return
        key = (endpoint, variant)
        with self._counter_lock:
            counter = self._counters.get(key)
            if counter is None:
                counter = self._counters[key] = _Counter()
            counter.requests += 1
            if not ok:
                counter.errors += 1
            counter.latency_sum_ms += latency_ms
            counter.histogram.add(latency_ms)

    def pending(self) -> dict[tuple[str, str], tuple[int, int]]:
        """Requests and errors counted but not yet flushed, by (endpoint, variant)."""
        with self._counter_lock:
            found = {k: (c.requests, c.errors) for k, c in self._counters.items()}
            for endpoint, variant, c in self._sealed:
                old = found.get((endpoint, variant), (0, 0))
                found[(endpoint, variant)] = (old[0] + c.requests, old[1] + c.errors)
            return found

    def flush(self) -> int:
        """Write the counters to the database now; returns the rows written."""
        with self._counter_lock:
            counters = [(e, v, c) for (e, v), c in self._counters.items()] + self._sealed
            self._counters, self._sealed = {}, []
        rows = [
            StatsRow(
                e, v, self.replica, c.requests, c.errors, c.latency_sum_ms, c.histogram.counts, c.started
            )
            for e, v, c in counters
        ]
        try:
            return self.store.flush_stats(rows)
        except Exception:
            with self._counter_lock:  # keep them for the next flush
                self._sealed.extend(counters)
            raise

    def guard(self) -> list[str]:
        """Roll back running canaries that breach their thresholds now; returns their endpoints."""
        if not self._canaries:
            return []
        from serving.canary import check_breaches

        rolled = list(check_breaches(self.store, actor=f"canary-guard:{self.replica}"))
        if rolled:
            self.refresh()
        return rolled

    def _loop(self) -> None:
        last_flush = last_guard = time.monotonic()
        while not self._stop.wait(min(self.refresh_s, self.flush_s)):
            try:
                if time.monotonic() - self._loaded_at >= self.refresh_s:
                    self.refresh()
                if time.monotonic() - last_flush >= self.flush_s:
                    last_flush = time.monotonic()
                    self.flush()
                if self.guard_s is not None and time.monotonic() - last_guard >= self.guard_s:
                    last_guard = time.monotonic()
                    self.guard()
            except Exception as exc:  # the database may be busy or gone for a moment
                log.warning("traffic router refresh/flush failed: %s: %s", type(exc).__name__, exc)

    def close(self) -> None:
        """Flush counters and stop background work."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        try:
            self.flush()
        except Exception as exc:
            log.warning("traffic router final flush failed: %s: %s", type(exc).__name__, exc)
