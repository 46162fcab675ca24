"""The online feature store: the newest value per entity, in SQLite or Redis.

One record per (group, entity key) holds the event time and a JSON object of
the group's feature columns. Writes keep the newer record: a row whose event
time is older than the stored one changes nothing, so materialization can be
rerun and windows can overlap. Each group's materialization watermark (the end
of the last window) is kept next to the values.

``sqlite:///path`` (the default) and ``redis://host:port/db`` are understood;
``?prefix=...`` on a Redis URL namespaces every key. A Redis that does not
answer (stopped, unreachable, still loading, or silent for 10 s) is an
:class:`storage.errors.UnavailableError` naming the server, never a hang; the
model server answers 503 for the feature-backed requests it cannot fill, and a
materialization that failed leaves the group's watermark where it was, so
running it again once Redis is back writes the window again (upserts keep the
newer value: the result is the same).

Example:
    >>> import tempfile
    >>> from storage.features.online import open_online_store
    >>> store = open_online_store(f"sqlite:///{tempfile.mkdtemp()}/online.db")
    >>> store.write("trips", [("1", 1_000_000, '{"fare": 5.0}'), ("2", 1_000_000, '{"fare": 6.0}')])
    2
    >>> store.write("trips", [("1", 500_000, '{"fare": 1.0}')])  # older: kept as it was
    1
    >>> store.read("trips", ["1", "3"])
    [(1000000, {'fare': 5.0}), None]
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, urlparse

from storage.errors import UnavailableError, ValidationError

Record = tuple[str, int, str]  # (entity key, event time in µs since the epoch, JSON payload)
#: Seconds to connect to Redis, and to wait for one answer, before it counts as unavailable.
CONNECT_TIMEOUT_S = 5.0
TIMEOUT_S = 10.0
KEY_SEPARATOR = "\x1f"


def entity_key(values: Sequence[Any]) -> str:
    """The stored form of an entity's join-key values (matches DuckDB's VARCHAR cast).

    Example:
        >>> entity_key([42]), entity_key(["a", 7])
        ('42', 'a\\x1f7')
    """
    parts = []
    for v in values:
        if isinstance(v, bool):
            parts.append("true" if v else "false")
        elif isinstance(v, float) and v.is_integer():
            parts.append(str(int(v)))
        elif hasattr(v, "item"):  # numpy scalars
            parts.append(str(v.item()))
        else:
            parts.append(str(v))
    return KEY_SEPARATOR.join(parts)


class OnlineStore(Protocol):
    """What materialization and online reads need from a backend."""

    url: str

    def write(self, group: str, records: Iterable[Record]) -> int:
        """Upsert records, keeping the newer event time; returns records offered."""
        ...

    def read(self, group: str, keys: Sequence[str]) -> list[tuple[int, dict[str, Any]] | None]:
        """``(event time µs, values)`` per key, None where absent."""
        ...

    def watermark(self, group: str) -> int | None:
        """End (µs) of the last materialized window, None before the first."""
        ...

    def set_watermark(self, group: str, end_us: int) -> None:
        """Record the end of a materialized window."""
        ...

    def count(self, group: str) -> int:
        """Entities stored for ``group``."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


class SQLiteOnlineStore:
    """Online values in one SQLite file (WAL mode), one connection per thread."""

    def __init__(self, path: str) -> None:
        self.path = str(Path(path).expanduser().absolute())
        self.url = f"sqlite:///{self.path}"
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        con = self._con()
        con.executescript(
            "CREATE TABLE IF NOT EXISTS online_values (grp TEXT NOT NULL, entity_key TEXT NOT NULL,"
            " event_ts INTEGER NOT NULL, payload TEXT NOT NULL, PRIMARY KEY (grp, entity_key)) WITHOUT ROWID;"
            "CREATE TABLE IF NOT EXISTS online_watermarks (grp TEXT PRIMARY KEY, end_ts INTEGER NOT NULL);"
        )

    def _con(self) -> sqlite3.Connection:
        con: sqlite3.Connection | None = getattr(self._local, "con", None)
        if con is None:
            con = sqlite3.connect(self.path, timeout=60, isolation_level=None, check_same_thread=False)
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA synchronous=NORMAL")
            self._local.con = con
        return con

    def write(self, group: str, records: Iterable[Record]) -> int:
        con = self._con()
        rows = [(group, k, ts, p) for k, ts, p in records]
        con.execute("BEGIN IMMEDIATE")
        try:
            con.executemany(
                "INSERT INTO online_values (grp, entity_key, event_ts, payload) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (grp, entity_key) DO UPDATE SET event_ts = excluded.event_ts, "
                "payload = excluded.payload WHERE excluded.event_ts > online_values.event_ts "
                "OR (excluded.event_ts = online_values.event_ts "
                "AND excluded.payload != online_values.payload)",
                rows,
            )
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        return len(rows)

    def read(self, group: str, keys: Sequence[str]) -> list[tuple[int, dict[str, Any]] | None]:
        con = self._con()
        if len(keys) == 1:
            row = con.execute(
                "SELECT event_ts, payload FROM online_values WHERE grp = ? AND entity_key = ?",
                (group, keys[0]),
            ).fetchone()
            return [(row[0], json.loads(row[1])) if row else None]
        found: dict[str, tuple[int, dict[str, Any]]] = {}
        unique = list(dict.fromkeys(keys))
        for i in range(0, len(unique), 500):
            chunk = unique[i : i + 500]
            marks = ",".join("?" * len(chunk))
            for k, ts, payload in con.execute(
                "SELECT entity_key, event_ts, payload FROM online_values "
                f"WHERE grp = ? AND entity_key IN ({marks})",
                (group, *chunk),
            ):
                found[k] = (ts, json.loads(payload))
        return [found.get(k) for k in keys]

    def watermark(self, group: str) -> int | None:
        row = self._con().execute("SELECT end_ts FROM online_watermarks WHERE grp = ?", (group,)).fetchone()
        return int(row[0]) if row else None

    def set_watermark(self, group: str, end_us: int) -> None:
        self._con().execute(
            "INSERT INTO online_watermarks (grp, end_ts) VALUES (?, ?) "
            "ON CONFLICT (grp) DO UPDATE SET end_ts = max(end_ts, excluded.end_ts)",
            (group, end_us),
        )

    def count(self, group: str) -> int:
        return int(
            self._con().execute("SELECT count(*) FROM online_values WHERE grp = ?", (group,)).fetchone()[0]
        )

    def close(self) -> None:
        con = getattr(self._local, "con", None)
        if con is not None:
            con.close()
            self._local.con = None


# Keep the newer record: ARGV = event time, value. The stored value is "<ts>\t<json>".
_UPSERT_LUA = """
local cur = redis.call('GET', KEYS[1])
if cur then
  local ts = tonumber(string.sub(cur, 1, string.find(cur, '\\t') - 1))
  if ts > tonumber(ARGV[1]) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1] .. '\\t' .. ARGV[2])
return 1
"""


class RedisOnlineStore:
    """Online values in Redis: one string per (group, entity) under a key prefix."""

    def __init__(self, url: str, *, prefix: str | None = None) -> None:
        import redis

        parsed = urlparse(url)
        query = parse_qs(parsed.query)
        self.prefix = prefix if prefix is not None else query.get("prefix", ["mlops:features:"])[0]
        self.url = url
        host = f"{parsed.hostname or ''}{f':{parsed.port}' if parsed.port else ''}"
        self.where = parsed._replace(netloc=host, query="").geturl()  # for messages: no password
        self.client = redis.Redis.from_url(
            url.split("?", 1)[0], socket_connect_timeout=CONNECT_TIMEOUT_S, socket_timeout=TIMEOUT_S
        )
        self._upsert = self.client.register_script(_UPSERT_LUA)

    @contextlib.contextmanager
    def _answering(self) -> Iterator[None]:
        """Redis connection errors and timeouts as an UnavailableError naming the server."""
        import redis

        try:
            yield
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            raise UnavailableError(f"the online store {self.where} does not answer: {exc}") from exc

    def _key(self, group: str, key: str) -> str:
        return f"{self.prefix}{group}:{key}"

    def write(self, group: str, records: Iterable[Record]) -> int:
        n = 0
        with self._answering():
            pipe = self.client.pipeline(transaction=False)
            for k, ts, payload in records:
                self._upsert(keys=[self._key(group, k)], args=[ts, payload], client=pipe)
                n += 1
                if n % 5000 == 0:
                    pipe.execute()
            pipe.execute()
        return n

    def read(self, group: str, keys: Sequence[str]) -> list[tuple[int, dict[str, Any]] | None]:
        with self._answering():
            raw = self.client.mget([self._key(group, k) for k in keys]) if keys else []
        out: list[tuple[int, dict[str, Any]] | None] = []
        for value in raw:
            if value is None:
                out.append(None)
                continue
            text = value.decode() if isinstance(value, bytes) else str(value)
            ts, _, payload = text.partition("\t")
            out.append((int(ts), json.loads(payload)))
        return out

    def watermark(self, group: str) -> int | None:
        with self._answering():
            value = self.client.get(f"{self.prefix}__watermark__:{group}")
        return int(value) if value is not None else None

    def set_watermark(self, group: str, end_us: int) -> None:
        current = self.watermark(group)
        if current is None or end_us > current:
            with self._answering():
                self.client.set(f"{self.prefix}__watermark__:{group}", end_us)

    def count(self, group: str) -> int:
        with self._answering():
            return sum(1 for _ in self.client.scan_iter(match=f"{self.prefix}{group}:*", count=1000))

    def close(self) -> None:
        self.client.close()


def open_online_store(url: str) -> OnlineStore:
    """The online store a URL names: ``sqlite:///path`` or ``redis://host:port/db[?prefix=p]``."""
    if url.startswith("sqlite:///"):
        return SQLiteOnlineStore(url[len("sqlite:///") :])
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisOnlineStore(url)
    raise ValidationError(f"online store URL {url!r} is not sqlite:///... or redis://...")
