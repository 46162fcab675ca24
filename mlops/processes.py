"""The local services' process groups: ports, spawning, PID files, liveness, readiness, stopping.

Each service of ``mlops up`` (see :mod:`mlops.stack`) runs as its own session
and process group, with ``NAME.pid`` and ``NAME.log`` under
``$MLOPS_HOME/run/``. This module starts such a group, tells whether its
leader still runs (a reused PID or a zombie counts as gone), waits until it is
ready, and stops it with every descendant (terminate, wait, kill). It also
chooses the ports the services listen on, below the ephemeral range.

Example:
    >>> from mlops.processes import free_port
    >>> 1024 < free_port() < 65536
    True
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from blocks.settings import get_settings
from storage.errors import MlopsError, ValidationError

HOST = "127.0.0.1"
#: Ports tried first; a busy one is replaced by a free port unless it was asked for.
DEFAULT_PORTS = {"prefect": 4200, "dask": 8786, "serve": 8080, "server": 8081}


class StackError(MlopsError):
    """A service that did not start, or a stack that is already running."""


@dataclass
class ServiceRecord:
    """One started process group: what runs, where it listens, where it logs."""

    name: str
    pid: int
    create_time: float
    address: str | None
    log: str
    command: list[str]


# ------------------------------------------------------- paths and env
def run_dir(home: Path | None = None) -> Path:
    """``$MLOPS_HOME/run``: PID files, logs and the state file (not created)."""
    return (home or get_settings().resolved_home()) / "run"


def service_env(home: Path) -> dict[str, str]:
    """The environment every service starts with: this one, less ``PREFECT_API_URL``, plus ``home``'s.

    ``MLOPS_HOME`` and ``PREFECT_HOME`` (``home/prefect``) point into ``home``,
    Prefect's analytics are off, and the working directory leads ``PYTHONPATH``.
    """
    env = dict(os.environ)
    env.pop("PREFECT_API_URL", None)
    cwd = str(Path.cwd())
    python_path = env.get("PYTHONPATH")
    env.update(
        MLOPS_HOME=str(home),
        PREFECT_HOME=str(home / "prefect"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PYTHONPATH=f"{cwd}{os.pathsep}{python_path}" if python_path else cwd,
    )
    return env


# ----------------------------------------------------------------- ports
def port_is_free(port: int, host: str = HOST) -> bool:
    """Whether nothing listens on ``host:port`` and it can be bound."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port(host: str = HOST) -> int:
    """A port on ``host`` that is free right now, below the ephemeral range when one is.

    Services bind their port seconds after it is chosen; a port from the
    ephemeral range may meanwhile become the local port of some outgoing
    connection, so ports below it are tried first.
    """
    import random

    low = _ephemeral_low()
    if low > 20000:
        for _ in range(50):
            port = random.randrange(20000, low)
            if port_is_free(port, host):
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def choose_port(requested: int | None, default: int, what: str) -> int:
    """``requested`` (which must be free), else ``default`` when free, else any free port."""
    if requested is not None:
        if not 0 < requested < 65536:
            raise ValidationError(f"{what} port {requested} is out of range 1-65535")
        if not port_is_free(requested):
            raise StackError(f"{what} port {requested} on {HOST} is already in use")
        return requested
    return default if port_is_free(default) else free_port()


# -------------------------------------------------------------- processes
def live_process(record: ServiceRecord) -> Any | None:
    """The live ``psutil.Process`` of ``record``, or ``None`` (gone, reused PID, or a zombie)."""
    import psutil

    try:
        proc = psutil.Process(record.pid)
        if abs(proc.create_time() - record.create_time) > 1.0:
            return None
        if proc.status() == psutil.STATUS_ZOMBIE:
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(record.pid, os.WNOHANG)
            return None
    except psutil.Error:
        return None
    return proc


def is_alive(record: ServiceRecord) -> bool:
    """Whether the service's leading process still runs."""
    return live_process(record) is not None


def spawn_service(
    name: str,
    command: list[str],
    env: dict[str, str],
    run: Path,
    address: str | None = None,
    cwd: Path | None = None,
) -> ServiceRecord:
    """Start ``command`` in its own session and process group; log ``run/NAME.log``, PID ``run/NAME.pid``.

    ``cwd`` is the process's working directory (default: this one's).

    Example:
        >>> import sys, tempfile, pathlib
        >>> run = pathlib.Path(tempfile.mkdtemp())
        >>> record = spawn_service("nap", [sys.executable, "-c", "import time; time.sleep(30)"], {}, run)
        >>> is_alive(record), stop_service(record, timeout=5), is_alive(record)
        (True, True, False)
    """
    import psutil

    log = run / f"{name}.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
    (run / f"{name}.pid").write_text(f"{proc.pid}\n")
    return ServiceRecord(
        name=name,
        pid=proc.pid,
        create_time=psutil.Process(proc.pid).create_time(),
        address=address,
        log=str(log),
        command=command,
    )


def _log_tail(record: ServiceRecord, lines: int = 15) -> str:
    try:
        return "\n".join(Path(record.log).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def wait_until(record: ServiceRecord, ready: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``ready()`` (exceptions count as not ready) until it returns true.

    Raises:
        StackError: The service exited first, or was not ``what`` ("answering",
            "listening", ...) after ``timeout`` seconds; the message holds its log's end.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not is_alive(record):
            raise StackError(f"{record.name} exited while starting; log {record.log}:\n{_log_tail(record)}")
        with contextlib.suppress(Exception):
            if ready():
                return
        time.sleep(0.3)
    raise StackError(
        f"{record.name} was not {what} after {timeout:.0f} s; log {record.log}:\n{_log_tail(record)}"
    )


def stop_service(record: ServiceRecord, timeout: float = 10.0) -> bool:
    """Stop a service's process group and every descendant: terminate, wait ``timeout``, kill.

    Returns:
        Whether a running process was found and stopped.
    """
    return bool(stop_services([record], timeout))


def stop_services(records: list[ServiceRecord], timeout: float = 10.0) -> list[str]:
    """Stop several services at once: SIGTERM to every group, one shared wait, then SIGKILL.

    Returns:
        The names of the services that were running.
    """
    import psutil

    running, family = [], []
    for record in records:
        leader = live_process(record)
        if leader is None:
            continue
        try:
            members = [leader, *leader.children(recursive=True)]
        except psutil.Error:
            members = [leader]
        running.append(record)
        family.extend(members)
        _signal_all(record.pid, members, signal.SIGTERM)
    _, alive = psutil.wait_procs(family, timeout=timeout)
    if alive:
        for record in running:
            _signal_all(record.pid, [p for p in alive if p.pid == record.pid], signal.SIGKILL)
        for proc in alive:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        psutil.wait_procs(alive, timeout=5)
    for record in running:
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(record.pid, os.WNOHANG)
    return [r.name for r in running]


def _signal_all(pgid: int, procs: list[Any], sig: signal.Signals) -> None:
    import psutil

    with contextlib.suppress(ProcessLookupError, PermissionError):
        if os.getpgid(pgid) == pgid:
            os.killpg(pgid, sig)
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.send_signal(sig)


# ------------------------------------------------------------ readiness
def http_ok(url: str, accept_any: bool = False) -> bool:
    """Whether ``url`` answers 200 (with ``accept_any``, answers at all); raises when unreachable."""
    import httpx

    response = httpx.get(url, timeout=2.0)
    return accept_any or response.status_code == 200


def port_open(port: int) -> bool:
    """Whether something accepts connections on ``HOST:port``; raises when nothing does."""
    with socket.create_connection((HOST, port), timeout=1.0):
        return True
