"""One replica process: what runs inside it, and how the supervisor starts, watches and stops it.

Inside, :func:`_replica_main` (``python -m serving.replica_process``) runs the
app factory's app with uvicorn on the listening socket it inherits, wrapped in
a small ASGI middleware that measures in-flight requests (time-averaged) and
request latency; a thread writes them with the replica's readiness to a JSON
file every :data:`STATS_EVERY_S` seconds. Outside, the supervisor
(:mod:`serving.replicas`) calls :func:`spawn_replica`, :func:`wait_ready`,
:func:`read_stats` and :func:`stop_replica`.

Stopping is a drain (:class:`serving.graceful.GracefulServer`): on SIGTERM a
replica stops accepting (the others keep the shared socket), answers every
request from then on with ``Connection: close``, waits up to ``drain_s`` for
its keep-alive connections to close, lets requests in flight finish, and exits
0; SIGKILL follows only after :func:`stop_timeout` seconds.

Example:
    >>> sink = _Sink()
    >>> sink.begin(); sink.end(12.0)
    >>> snap = sink.snapshot()
    >>> snap["requests"], snap["p95_ms"], snap["window"]
    (1, 12.0, 1)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from serving.config import ServeSettings

__all__ = [
    "DEFAULT_FACTORY",
    "SETTINGS_ENV",
    "Replica",
    "hello_app",
    "read_stats",
    "spawn_replica",
    "stop_replica",
    "stop_timeout",
    "wait_ready",
]

SETTINGS_ENV = "MLOPS_REPLICA_SETTINGS"
DEFAULT_FACTORY = "serving.app:create_app"
STATS_EVERY_S = 0.25
LATENCY_WINDOW_S = 10.0
#: Longest wait for a stopping replica's keep-alive connections (uvicorn's keep-alive timeout).
DRAIN_S = 5.0
#: Longest wait for requests in flight once the drain is over.
GRACEFUL_S = 10.0


def stop_timeout(drain_s: float = DRAIN_S) -> float:
    """Seconds a stopping replica gets before SIGKILL: its drain, its graceful shutdown, a margin."""
    return drain_s + GRACEFUL_S + 5.0


# ---------------------------------------------------------------- inside a replica
class _Sink:
    """Request counters of one replica: in-flight area, latencies of the last window."""

    def __init__(self) -> None:
        self.inflight = 0
        self.requests = 0
        self.latencies: deque[tuple[float, float]] = deque()
        self._area = 0.0
        self._changed = time.monotonic()
        self._since = self._changed
        self.lock = threading.Lock()

    def _account(self, now: float) -> None:
        self._area += self.inflight * (now - self._changed)
        self._changed = now

    def begin(self) -> None:
        with self.lock:
            self._account(time.monotonic())
            self.inflight += 1

    def end(self, ms: float) -> None:
        now = time.monotonic()
        with self.lock:
            self._account(now)
            self.inflight -= 1
            self.requests += 1
            self.latencies.append((now, ms))

    def snapshot(self) -> dict[str, Any]:
        now = time.monotonic()
        with self.lock:
            self._account(now)
            span = max(now - self._since, 1e-6)
            average = self._area / span
            self._area, self._since = 0.0, now
            while self.latencies and self.latencies[0][0] < now - LATENCY_WINDOW_S:
                self.latencies.popleft()
            values = sorted(ms for _, ms in self.latencies)
        p95 = values[min(len(values) - 1, int(0.95 * len(values)))] if values else None
        return {"inflight_avg": average, "requests": self.requests, "p95_ms": p95, "window": len(values)}


class _Measured:
    """ASGI middleware: counts in-flight HTTP requests and their latency."""

    def __init__(self, app: Any, sink: _Sink) -> None:
        self.app = app
        self.sink = sink

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self.sink.begin()
        start = time.perf_counter()
        try:
            await self.app(scope, receive, send)
        finally:
            self.sink.end((time.perf_counter() - start) * 1000)


def _load_factory(path: str) -> Callable[..., Any]:
    module, _, attr = path.partition(":")
    if not module or not attr:
        raise ValueError(f"app factory {path!r} must look like 'package.module:function'")
    factory: Callable[..., Any] = getattr(importlib.import_module(module), attr)
    return factory


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def _replica_main(fd: int, factory: str, replica: str, stats_dir: str, drain_s: float = DRAIN_S) -> None:
    """Run one replica on the inherited listening socket ``fd`` until SIGTERM (then drain, exit 0)."""
    import uvicorn

    from serving.config import ServeSettings
    from serving.graceful import GracefulServer

    raw = os.environ.get(SETTINGS_ENV)
    settings = ServeSettings.model_validate_json(raw) if raw else ServeSettings()
    sink = _Sink()
    app = _Measured(_load_factory(factory)(settings), sink)
    sock = socket.socket(fileno=fd)
    config = uvicorn.Config(
        app,
        log_level=settings.log_level,
        access_log=False,
        timeout_graceful_shutdown=int(GRACEFUL_S),
        lifespan="auto",
    )
    server = GracefulServer(config, drain_s=drain_s)
    path = Path(stats_dir) / f"{replica}.json"
    stop = threading.Event()

    def report() -> None:
        while not stop.wait(STATS_EVERY_S):
            data = {"replica": replica, "pid": os.getpid(), "ready": bool(server.started), **sink.snapshot()}
            with contextlib.suppress(OSError):
                _write_json(path, data)

    writer = threading.Thread(target=report, name="replica-stats", daemon=True)
    writer.start()
    try:
        asyncio.run(server.serve(sockets=[sock]))
    finally:
        stop.set()
        writer.join(timeout=2)
        with contextlib.suppress(OSError):
            path.unlink()


def hello_app(settings: Any = None) -> Any:
    """A tiny app for trying replicas: ``GET /`` answers, ``GET /work?ms=20`` burns CPU for that long."""
    from fastapi import FastAPI

    app = FastAPI()

    @app.get("/")
    def hello() -> dict[str, Any]:
        return {"pid": os.getpid()}

    @app.get("/work")
    def work(ms: float = 20.0) -> dict[str, Any]:
        end = time.perf_counter() + ms / 1000
        n = 0
        while time.perf_counter() < end:
            n += 1
        return {"pid": os.getpid(), "loops": n}

    @app.get("/v2/health/ready")
    def ready() -> dict[str, bool]:
        return {"ready": True}

    return app


# ---------------------------------------------------------------- seen from the supervisor
@dataclass
class Replica:
    """One replica process."""

    name: str
    process: subprocess.Popen[bytes]
    started_at: float
    stats: dict[str, Any] = field(default_factory=dict)
    cpu: Any = None

    @property
    def pid(self) -> int:
        """The process id."""
        return self.process.pid

    @property
    def alive(self) -> bool:
        """Whether the process runs."""
        return self.process.poll() is None


def spawn_replica(
    sock: socket.socket,
    factory: str,
    settings: ServeSettings | None,
    stats_dir: Path,
    drain_s: float = DRAIN_S,
) -> Replica:
    """Start a replica process serving ``factory``'s app on the inheritable listening ``sock``."""
    name = f"replica-{uuid.uuid4().hex[:8]}"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    if settings is not None:
        env[SETTINGS_ENV] = settings.model_dump_json()
    fd = sock.fileno()
    command = [sys.executable, "-m", "serving.replica_process", "--fd", str(fd), "--factory", factory]
    command += ["--replica", name, "--stats-dir", str(stats_dir), "--drain-s", str(drain_s)]
    process = subprocess.Popen(command, pass_fds=(fd,), env=env)
    replica = Replica(name, process, time.monotonic())
    try:
        import psutil

        replica.cpu = psutil.Process(process.pid)
        replica.cpu.cpu_percent(None)
    except Exception:  # psutil missing or the process already gone
        replica.cpu = None
    return replica


def read_stats(replica: Replica, stats_dir: Path) -> dict[str, Any]:
    """The replica's latest stats file (kept in ``replica.stats``; the last good one when unreadable)."""
    path = stats_dir / f"{replica.name}.json"
    with contextlib.suppress(OSError, ValueError):
        replica.stats = json.loads(path.read_text())
    return replica.stats


def wait_ready(replica: Replica, stats_dir: Path, timeout_s: float) -> None:
    """Wait until the replica reports ready; stop it and raise RuntimeError when it exits or times out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not replica.alive:
            raise RuntimeError(f"{replica.name} (pid {replica.pid}) exited with {replica.process.returncode}")
        if read_stats(replica, stats_dir).get("ready"):
            return
        time.sleep(0.05)
    stop_replica(replica, stats_dir)
    raise RuntimeError(f"{replica.name} was not ready within {timeout_s} s")


def stop_replica(replica: Replica, stats_dir: Path, timeout: float | None = None) -> None:
    """SIGTERM the replica (it drains), SIGKILL it after ``timeout`` seconds, remove its stats file.

    ``timeout`` defaults to :func:`stop_timeout` of the default drain.
    """
    timeout = stop_timeout() if timeout is None else timeout
    if replica.alive:
        replica.process.send_signal(signal.SIGTERM)
        try:
            replica.process.wait(timeout)
        except subprocess.TimeoutExpired:
            replica.process.kill()
            replica.process.wait(5)
    with contextlib.suppress(OSError):
        (stats_dir / f"{replica.name}.json").unlink()


def _main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="one model-server replica on an inherited socket")
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--factory", default=DEFAULT_FACTORY)
    parser.add_argument("--replica", required=True)
    parser.add_argument("--stats-dir", required=True)
    parser.add_argument("--drain-s", type=float, default=DRAIN_S)
    args = parser.parse_args(argv)
    _replica_main(args.fd, args.factory, args.replica, args.stats_dir, args.drain_s)


if __name__ == "__main__":
    _main()
