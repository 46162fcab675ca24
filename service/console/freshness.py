"""How fresh the online feature store is per group: the newest event time stored, entities, watermark.

The online store (:mod:`storage.features.online`) keeps one record per
entity with its event time; the newest of them says how recent the values
a model reads online are, and the materialization watermark says up to when
the offline store was copied. SQLite is read through its own read-only
connection (the service never writes there); on Redis the group's keys are
scanned, at most :data:`REDIS_SCAN_LIMIT` of them (a count at the limit is
shown as a lower bound).

Example:
    >>> import tempfile
    >>> from storage.features.online import open_online_store
    >>> url = f"sqlite:///{tempfile.mkdtemp()}/online.db"
    >>> store = open_online_store(url)
    >>> store.write("trips", [("1", 1_700_000_000_000_000, "{}"), ("2", 1_600_000_000_000_000, "{}")])
    2
    >>> found = online_freshness(url, ["trips", "empty"])
    >>> found["trips"].entities, found["trips"].newest.year, found["empty"].newest
    (2, 2023, None)
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

REDIS_SCAN_LIMIT = 10_000


@dataclass(frozen=True)
class Freshness:
    """The online state of one feature group."""

    newest: datetime | None = None
    entities: int = 0
    watermark: datetime | None = None
    capped: bool = False
    problem: str = ""

    def age_seconds(self, now: datetime | None = None) -> float | None:
        """Seconds since the newest stored event (None without one)."""
        if self.newest is None:
            return None
        return ((now or datetime.now(UTC)) - self.newest).total_seconds()


def _time(us: int | None) -> datetime | None:
    return None if us is None else datetime.fromtimestamp(int(us) / 1e6, UTC)


def _sqlite(path: str, groups: Sequence[str]) -> dict[str, Freshness]:
    if not Path(path).is_file():
        return {g: Freshness(problem="never materialized (no online store file yet)") for g in groups}
    con = sqlite3.connect(f"file:{Path(path).absolute()}?mode=ro", uri=True, timeout=5)
    try:
        out = {}
        for group in groups:
            newest, count = con.execute(
                "SELECT max(event_ts), count(*) FROM online_values WHERE grp = ?", (group,)
            ).fetchone()
            mark = con.execute("SELECT end_ts FROM online_watermarks WHERE grp = ?", (group,)).fetchone()
            out[group] = Freshness(_time(newest), int(count), _time(mark[0] if mark else None))
        return out
    except sqlite3.Error as exc:
        return {g: Freshness(problem=f"online store unreadable: {exc}") for g in groups}
    finally:
        con.close()


def _redis(url: str, groups: Sequence[str]) -> dict[str, Freshness]:
    from storage.features.online import RedisOnlineStore

    store = RedisOnlineStore(url)
    try:
        out = {}
        for group in groups:
            keys = []
            for key in store.client.scan_iter(match=f"{store.prefix}{group}:*", count=1000):
                keys.append(key)
                if len(keys) >= REDIS_SCAN_LIMIT:
                    break
            newest = None
            for start in range(0, len(keys), 1000):
                for value in store.client.mget(keys[start : start + 1000]):
                    if value is None:
                        continue
                    text = value.decode() if isinstance(value, bytes) else str(value)
                    ts = int(text.partition("\t")[0])
                    newest = ts if newest is None else max(newest, ts)
            out[group] = Freshness(
                _time(newest), len(keys), _time(store.watermark(group)), capped=len(keys) >= REDIS_SCAN_LIMIT
            )
        return out
    except Exception as exc:  # a Redis that does not answer: say so on the page
        return {
            g: Freshness(problem=f"online store unreachable: {type(exc).__name__}: {exc}") for g in groups
        }
    finally:
        store.close()


def online_freshness(url: str, groups: Sequence[str]) -> dict[str, Freshness]:
    """Newest event time, entity count and watermark of each group in the online store at ``url``."""
    if not groups:
        return {}
    if url.startswith("sqlite:///"):
        return _sqlite(url[len("sqlite:///") :], groups)
    if url.startswith(("redis://", "rediss://", "unix://")):
        return _redis(url, groups)
    return {g: Freshness(problem=f"unknown online store URL {url!r}") for g in groups}
