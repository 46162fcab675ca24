"""Replica processes behind one port, scaled by the autoscaler, replaced one at a time.

The supervisor binds the listening socket once and starts replica processes
that inherit it: each runs uvicorn's ``Server.serve(sockets=[sock])`` on the
same socket, and the kernel hands each new connection to one of them. Adding
or removing a replica never closes the port, so clients see no refused
connection.

Each replica wraps its app in a small ASGI middleware that measures in-flight
requests (time-averaged) and request latency, and writes them with its
readiness to a JSON file the supervisor reads; the supervisor adds each
process's CPU (psutil) and feeds :class:`serving.autoscaler.Autoscaler`.
A rolling replacement starts a new replica, waits until it is ready, then
stops an old one, one at a time. A replica stops by draining
(:mod:`serving.graceful`): it stops accepting, answers each keep-alive
connection's next request with ``Connection: close`` and lets requests in
flight finish, so neither a rolling replacement nor a scale-down loses a
request. A replica that dies (a crash, SIGKILL, the OOM killer) is replaced
by the watchdog within about ``interval_s`` plus its start time; only the
requests it held are lost. Scaling and replacements are audited when a
metadata DB is given.
This module holds the supervisor (scaling, rolling replacement, the port);
:mod:`serving.replica_process` holds one replica process: what runs inside it,
and starting, reading, waiting for and stopping it.

``mlops serve --replicas N --autoscale`` calls :func:`run_supervised`;
SIGHUP there replaces every replica, SIGINT/SIGTERM stop them all (drained),
and the supervisor exits 0.

Example:
    >>> sup = Supervisor("serving.replicas:hello_app", min_replicas=1, max_replicas=1)
    >>> sup.port > 0, sup.replica_count
    (True, 0)
    >>> sup.close()
"""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from serving.autoscaler import AutoscalePolicy, Autoscaler, ReplicaMetrics, ScaleDecision
from serving.replica_process import (
    DEFAULT_FACTORY,
    DRAIN_S,
    Replica,
    hello_app,
    read_stats,
    spawn_replica,
    stop_replica,
    stop_timeout,
    wait_ready,
)

if TYPE_CHECKING:
    from serving.config import ServeSettings
    from storage.db import Database

__all__ = ["Replica", "Supervisor", "hello_app", "run_supervised"]

log = logging.getLogger(__name__)


class Supervisor:
    """Binds the port once; starts, scales, replaces and stops replica processes serving it.

    Args:
        factory: ``module:function`` returning the ASGI app, called with the settings.
        settings: Server settings handed to every replica (host and port come from here).
        host: Interface to bind (``settings.host`` by default).
        port: Port to bind (``settings.port``; 0 picks a free one).
        min_replicas: Replicas started at once and kept at least.
        max_replicas: Most replicas the autoscaler may start.
        policy: Autoscaling policy (its min/max are replaced by these).
        interval_s: How often the autoscaler looks at the metrics.
        db: Metadata DB to audit scaling and replacements in (optional).
        ready_timeout_s: Longest wait for a new replica to become ready.
        drain_s: Longest wait for a stopping replica's keep-alive connections.
    """

    def __init__(
        self,
        factory: str = DEFAULT_FACTORY,
        settings: ServeSettings | None = None,
        *,
        host: str | None = None,
        port: int | None = None,
        min_replicas: int = 2,
        max_replicas: int = 50,
        policy: AutoscalePolicy | None = None,
        interval_s: float = 1.0,
        db: Database | None = None,
        ready_timeout_s: float = 60.0,
        drain_s: float = DRAIN_S,
    ) -> None:
        from dataclasses import replace

        self.factory = factory
        self.settings = settings
        self.host = host or (settings.host if settings is not None else "127.0.0.1")
        wanted_port = port if port is not None else (settings.port if settings is not None else 0)
        base = policy or AutoscalePolicy()
        self.policy = replace(base, min_replicas=min_replicas, max_replicas=max_replicas)
        self.autoscaler = Autoscaler(self.policy)
        self.interval_s = interval_s
        self.db = db
        self.ready_timeout_s = ready_timeout_s
        self.drain_s = drain_s
        self.stats_dir = Path(tempfile.mkdtemp(prefix="mlops-replicas-"))
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((self.host, wanted_port))
        self.sock.listen(2048)
        self.sock.set_inheritable(True)
        self.port = int(self.sock.getsockname()[1])
        self.replicas: list[Replica] = []
        self.decisions: list[ScaleDecision] = []
        self.events: list[dict[str, Any]] = []
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------

    @property
    def url(self) -> str:
        """The base URL clients call."""
        return f"http://{self.host}:{self.port}"

    @property
    def replica_count(self) -> int:
        """Replicas running now."""
        with self._lock:
            return sum(1 for r in self.replicas if r.alive)

    def start(self, replicas: int | None = None) -> Supervisor:
        """Start ``replicas`` (default ``min_replicas``) and wait until they are ready."""
        self.scale_to(replicas or self.policy.min_replicas, reason="start")
        return self

    def start_autoscaler(self) -> None:
        """Run the autoscaling loop (it replaces dead replicas too) on a background thread."""
        self._start_loop(autoscale=True)

    def start_watchdog(self) -> None:
        """Replace replicas that die, on a background thread, without autoscaling."""
        self._start_loop(autoscale=False)

    def _start_loop(self, *, autoscale: bool) -> None:
        if self._thread is None:
            name = "autoscaler" if autoscale else "replica-watchdog"
            self._thread = threading.Thread(target=self._loop, args=(autoscale,), name=name, daemon=True)
            self._thread.start()

    def close(self) -> None:
        """Stop the autoscaler and every replica, close the socket."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        with self._lock:
            for replica in list(self.replicas):
                self._stop_replica(replica)
            self.replicas.clear()
        self.sock.close()
        for leftover in self.stats_dir.glob("*"):
            with contextlib.suppress(OSError):
                leftover.unlink()
        with contextlib.suppress(OSError):
            self.stats_dir.rmdir()

    def __enter__(self) -> Supervisor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- replicas (process handling in serving.replica_process) ----------------

    def _spawn(self) -> Replica:
        return spawn_replica(self.sock, self.factory, self.settings, self.stats_dir, self.drain_s)

    def _read_stats(self, replica: Replica) -> dict[str, Any]:
        return read_stats(replica, self.stats_dir)

    def _wait_ready(self, replica: Replica) -> None:
        wait_ready(replica, self.stats_dir, self.ready_timeout_s)

    def _stop_replica(self, replica: Replica) -> None:
        stop_replica(replica, self.stats_dir, stop_timeout(self.drain_s))

    def _record(self, action: str, before: int, after: int, detail: dict[str, Any]) -> None:
        event = {"action": action, "before": before, "after": after, "at": time.time(), **detail}
        self.events.append(event)
        log.info("replicas %s: %s -> %s %s", action, before, after, detail)
        if self.db is None:
            return
        from storage.audit import append_entry

        try:
            with self.db.write() as conn:
                append_entry(
                    conn,
                    actor="supervisor",
                    action=f"replicas.{action}",
                    entity_type="server",
                    entity_id=f"{self.host}:{self.port}",
                    before={"replicas": before},
                    after={"replicas": after, **detail},
                )
        except Exception as exc:  # auditing must not stop serving
            log.warning("could not audit replicas.%s: %s", action, exc)

    def scale_to(self, count: int, *, reason: str = "manual", detail: dict[str, Any] | None = None) -> int:
        """Start or stop replicas until ``count`` run (within min/max); returns the count."""
        count = min(max(count, 1), self.policy.max_replicas)
        with self._lock:
            self.replicas = [r for r in self.replicas if r.alive]
            before = len(self.replicas)
            if count > before:
                fresh = [self._spawn() for _ in range(count - before)]
                for replica in fresh:
                    self._wait_ready(replica)
                self.replicas.extend(fresh)
            elif count < before:
                for replica in sorted(self.replicas, key=lambda r: r.started_at)[count - before :]:
                    self._stop_replica(replica)
                    self.replicas.remove(replica)
            after = len(self.replicas)
        if after != before:
            self._record("scale", before, after, {"reason": reason, **(detail or {})})
        return after

    def rolling_restart(self) -> list[int]:
        """Replace every replica one at a time (start new, wait ready, stop old); returns the new pids."""
        with self._lock:
            old = [r for r in self.replicas if r.alive]
            for replica in old:
                fresh = self._spawn()
                self._wait_ready(fresh)
                self.replicas.append(fresh)
                self._stop_replica(replica)
                self.replicas.remove(replica)
            pids = [r.pid for r in self.replicas]
        self._record("roll", len(old), len(pids), {"pids": pids})
        return pids

    def replace_dead(self) -> list[int]:
        """Start a replica for each one that exited without being stopped; returns the new pids."""
        with self._lock:
            dead = [r for r in self.replicas if not r.alive]
            fresh_pids: list[int] = []
            for replica in dead:
                fresh = self._spawn()
                self._wait_ready(fresh)  # raises when it cannot start: the next step tries again
                self.replicas.remove(replica)
                self._stop_replica(replica)  # removes its stats file
                self.replicas.append(fresh)
                fresh_pids.append(fresh.pid)
                detail = {"pid": replica.pid, "exit": replica.process.returncode, "new_pid": fresh.pid}
                self._record("replace", len(self.replicas), len(self.replicas), detail)
        return fresh_pids

    # -- autoscaling -----------------------------------------------------------

    def metrics(self) -> ReplicaMetrics:
        """What the replicas report now: mean CPU, worst p95, mean in-flight per replica."""
        with self._lock:
            live = [r for r in self.replicas if r.alive]
            cpu: list[float] = []
            p95: list[float] = []
            inflight = 0.0
            for replica in live:
                stats = self._read_stats(replica)
                inflight += float(stats.get("inflight_avg") or 0.0)
                if stats.get("p95_ms") is not None and stats.get("window", 0) >= 5:
                    p95.append(float(stats["p95_ms"]))
                if replica.cpu is not None:
                    with contextlib.suppress(Exception):
                        cpu.append(float(replica.cpu.cpu_percent(None)))
        n = max(1, len(live))
        return ReplicaMetrics(
            replicas=len(live),
            cpu_percent=sum(cpu) / len(cpu) if cpu else None,
            p95_ms=max(p95) if p95 else None,
            inflight_per_replica=inflight / n,
        )

    def autoscale_once(self, now: float | None = None) -> ScaleDecision:
        """Read the metrics, ask the autoscaler, scale; replaces replicas that died."""
        metrics = self.metrics()
        decision = self.autoscaler.recommend(metrics, now=time.monotonic() if now is None else now)
        self.decisions.append(decision)
        if decision.desired != metrics.replicas:
            self.scale_to(decision.desired, reason="autoscale", detail={"metrics": decision.reasons})
        return decision

    def _loop(self, autoscale: bool = True) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.replace_dead()
                if autoscale:
                    self.autoscale_once()
            except Exception as exc:  # keep watching after a replica that failed to start
                log.warning("replica supervision step failed: %s: %s", type(exc).__name__, exc)


def run_supervised(
    settings: ServeSettings,
    min_replicas: int = 2,
    max_replicas: int = 50,
    autoscale: bool = True,
    *,
    factory: str = DEFAULT_FACTORY,
    policy: AutoscalePolicy | None = None,
) -> None:
    """Serve ``settings.host:settings.port`` with supervised replicas until SIGINT/SIGTERM (SIGHUP: roll).

    Args:
        settings: Server settings for every replica.
        min_replicas: Replicas to start (and keep at least, when autoscaling).
        max_replicas: Most replicas the autoscaler starts.
        autoscale: Scale between min and max on CPU, p95 latency and in-flight requests.
        factory: The app factory (``module:function``).
        policy: Autoscaling targets and windows.
    """
    from blocks.settings import get_settings
    from storage.db import Database

    db = Database(get_settings().resolved_database_url())
    supervisor = Supervisor(
        factory, settings, min_replicas=min_replicas, max_replicas=max_replicas, policy=policy, db=db
    )
    done = threading.Event()
    roll = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: done.set())
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    with contextlib.suppress(AttributeError, ValueError):
        signal.signal(signal.SIGHUP, lambda *_: roll.set())
    try:
        try:
            supervisor.start()
        except RuntimeError:
            if done.is_set():  # stopped while starting: the replicas got the signal too
                return
            raise
        log.warning("serving %s with %d replicas", supervisor.url, supervisor.replica_count)
        if autoscale:
            supervisor.start_autoscaler()
        else:
            supervisor.start_watchdog()
        while not done.wait(0.5):
            if roll.is_set():
                roll.clear()
                supervisor.rolling_restart()
    finally:
        supervisor.close()
        db.dispose()
