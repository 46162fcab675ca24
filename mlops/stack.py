"""The platform's local services: start, stop and inspect them (``mlops up/down/status``).

One machine runs, each as its own process group with a PID file and a log
under ``$MLOPS_HOME/run/``:

* ``prefect-server``: ``prefect server start`` with the UI, its own
  ``PREFECT_HOME`` under ``$MLOPS_HOME/prefect`` (the user's profile is never
  touched), SQLite unless ``PREFECT_SERVER_DATABASE_CONNECTION_URL`` is set;
* the ``mlops-process`` work pool (created when missing) and ``prefect-worker``,
  a process worker on it;
* ``dask-scheduler`` and ``dask-workers`` (the ``dask`` command line);
* ``platform-service``: ``mlops server`` (REST API and console over this
  machine's registry) when the service part is installed;
* ``model-server``: ``mlops serve`` when the serving part is installed.

The worker's and the Dask workers' environment carries ``PREFECT_API_URL`` and
``MLOPS_DASK_ADDRESS``, so flow runs started through deployments report to
this Prefect server and run their tasks on this Dask cluster. The addresses
are written to ``$MLOPS_HOME/run/stack.json``; :func:`stop_stack` stops every
process group it finds there (terminate, wait, kill) and leaves nothing running.

Process groups, ports and readiness live in :mod:`mlops.processes`, the
Prefect server and its work pool in :mod:`mlops.prefect_server`; their names
are importable from here too.

Example:
    >>> from mlops.stack import free_port, StackOptions
    >>> 1024 < free_port() < 65536
    True
    >>> StackOptions(dask_workers=1, serve=False).dask_workers
    1
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from blocks.settings import get_settings
from mlops.prefect_server import (
    WORK_POOL,
    deploy_prefect_yaml,
    ensure_work_pool,
    pool_workers,
    prefect_server_command,
    start_prefect_server,
)
from mlops.processes import (
    DEFAULT_PORTS,
    HOST,
    ServiceRecord,
    StackError,
    choose_port,
    free_port,
    http_ok,
    is_alive,
    live_process,
    port_is_free,
    port_open,
    run_dir,
    service_env,
    spawn_service,
    stop_service,
    stop_services,
    wait_until,
)
from storage.errors import ValidationError

__all__ = [
    "DEFAULT_PORTS",
    "HOST",
    "SERVICE_ORDER",
    "STATE_FILE",
    "WORK_POOL",
    "ServiceRecord",
    "ServiceStatus",
    "StackError",
    "StackOptions",
    "StackState",
    "admin_key",
    "choose_port",
    "deploy_prefect_yaml",
    "ensure_work_pool",
    "free_port",
    "is_alive",
    "port_is_free",
    "read_state",
    "run_dir",
    "service_available",
    "service_pids",
    "serving_available",
    "spawn_service",
    "stack_status",
    "start_prefect_server",
    "start_stack",
    "stop_service",
    "stop_services",
    "stop_stack",
]

STATE_FILE = "stack.json"
#: The order services start in; they stop in reverse.
SERVICE_ORDER = (
    "prefect-server", "dask-scheduler", "dask-workers", "prefect-worker", "platform-service", "model-server",
)  # fmt: skip


@dataclass
class StackOptions:
    """How ``mlops up`` starts the stack.

    Attributes:
        prefect_port: Port of the Prefect server and UI (4200, or a free one when busy).
        dask_port: Port of the Dask scheduler (8786, or a free one when busy).
        dask_workers: Number of Dask worker processes.
        dask_threads: Threads per Dask worker.
        serve: Start the model server; ``None`` starts it when ``serving.app`` is installed.
        serve_port: Port of the model server (8080, or a free one when busy).
        server: Start the platform service (``mlops server``: REST API and console);
            ``None`` starts it when ``service.app`` is installed.
        server_port: Port of the platform service (8081, or a free one when busy).
        timeout: Seconds each service may take to become ready.
    """

    prefect_port: int | None = None
    dask_port: int | None = None
    dask_workers: int = 2
    dask_threads: int = 1
    serve: bool | None = None
    serve_port: int | None = None
    server: bool | None = None
    server_port: int | None = None
    timeout: float = 120.0


@dataclass
class StackState:
    """What ``mlops up`` started, as written to ``$MLOPS_HOME/run/stack.json``."""

    home: str
    prefect_api_url: str
    prefect_ui_url: str
    dask_address: str
    serve_url: str | None
    server_url: str | None = None
    work_pool: str = WORK_POOL
    services: list[ServiceRecord] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        """The variables a shell needs to use this stack: ``PREFECT_API_URL``, ``MLOPS_DASK_ADDRESS``, ..."""
        env = {
            "MLOPS_HOME": self.home,
            "PREFECT_API_URL": self.prefect_api_url,
            "MLOPS_DASK_ADDRESS": self.dask_address,
        }
        if self.serve_url:
            env["MLOPS_SERVE_URL"] = self.serve_url
        return env

    def to_dict(self) -> dict[str, Any]:
        """The state as plain JSON-able data."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StackState:
        """Read back :meth:`to_dict`."""
        services = [ServiceRecord(**s) for s in data.get("services", [])]
        return cls(**{**data, "services": services})


@dataclass
class ServiceStatus:
    """One service as ``mlops status`` shows it."""

    name: str
    pid: int
    alive: bool
    address: str | None
    log: str


# ------------------------------------------------------------ state file
def read_state(home: Path | None = None) -> StackState | None:
    """The state file of the running (or last) stack, or ``None`` when there is none."""
    path = run_dir(home) / STATE_FILE
    if not path.exists():
        return None
    try:
        return StackState.from_dict(json.loads(path.read_text()))
    except (ValueError, TypeError) as exc:
        raise StackError(
            f"state file {path} is unreadable ({exc}); remove it after checking no service runs"
        ) from exc


def _write_state(state: StackState, run: Path) -> None:
    tmp = run / f"{STATE_FILE}.tmp"
    tmp.write_text(json.dumps(state.to_dict(), indent=2))
    tmp.replace(run / STATE_FILE)


# --------------------------------------------------------------- helpers
def _dask_workers(address: str) -> int:
    from distributed import Client

    with Client(address, timeout=5) as client:
        return len(client.scheduler_info(n_workers=-1)["workers"])


def admin_key(run: Path) -> str:
    """The model server's admin key of this stack: ``run/admin-key``, created (mode 0600) when missing.

    ``mlops up`` gives it to the model server and the Prefect worker when
    ``MLOPS_SERVE_ADMIN_KEY`` is not set, so rollouts can change traffic.
    """
    import secrets

    path = run / "admin-key"
    if not path.exists():
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(24))
    return path.read_text().strip()


def serving_available() -> bool:
    """Whether the model server (``serving.app``) is installed."""
    return _installed("serving.app")


def service_available() -> bool:
    """Whether the platform service (``service.app``) is installed."""
    return _installed("service.app")


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:
        return False


def _mlops_cli() -> list[str]:
    return [sys.executable, "-c", "from mlops.cli import main; main()"]


# ------------------------------------------------------------------- up
def start_stack(options: StackOptions | None = None, home: Path | None = None) -> StackState:
    """Start the Prefect server, work pool and worker, Dask cluster, platform service and model server.

    Every service is ready when this returns (Prefect answers ``/api/health``,
    the Dask workers joined, the worker is online on the pool, the platform
    service and the model server answer). When one fails, those already
    started are stopped again.

    Raises:
        StackError: A stack of this ``MLOPS_HOME`` is already running, a port
            asked for is taken, or a service did not start (the message holds
            the end of its log).
    """
    opts = options or StackOptions()
    if opts.dask_workers < 1:
        raise ValidationError(f"dask_workers must be at least 1, got {opts.dask_workers}")
    home = (home or get_settings().resolved_home()).absolute()
    run = run_dir(home)
    previous = read_state(home)
    if previous is not None:
        running = [s.name for s in previous.services if is_alive(s)]
        if running:
            raise StackError(
                f"the stack of {home} already runs ({', '.join(running)}); run `mlops down` first"
            )
    run.mkdir(parents=True, exist_ok=True)
    (home / "prefect").mkdir(parents=True, exist_ok=True)
    serve = serving_available() if opts.serve is None else opts.serve
    if serve and not serving_available():
        raise StackError("the model server is not installed (no serving.app); start with --no-serve")
    with_service = service_available() if opts.server is None else opts.server
    if with_service and not service_available():
        raise StackError("the platform service is not installed (no service.app); start with --no-server")

    prefect_port = choose_port(opts.prefect_port, DEFAULT_PORTS["prefect"], "Prefect")
    dask_port = choose_port(opts.dask_port, DEFAULT_PORTS["dask"], "Dask scheduler")
    serve_port = choose_port(opts.serve_port, DEFAULT_PORTS["serve"], "model server") if serve else None
    server_port = (
        choose_port(opts.server_port, DEFAULT_PORTS["server"], "platform service") if with_service else None
    )
    api_url = f"http://{HOST}:{prefect_port}/api"
    dask_address = f"tcp://{HOST}:{dask_port}"
    state = StackState(
        home=str(home),
        prefect_api_url=api_url,
        prefect_ui_url=f"http://{HOST}:{prefect_port}",
        dask_address=dask_address,
        serve_url=f"http://{HOST}:{serve_port}" if serve_port else None,
        server_url=f"http://{HOST}:{server_port}" if server_port else None,
    )
    env = service_env(home)
    connected = {**env, "PREFECT_API_URL": api_url, "MLOPS_DASK_ADDRESS": dask_address}
    if state.serve_url:
        # rollouts started by the worker find the model server and its admin API here
        connected["MLOPS_SERVE_URL"] = state.serve_url
        connected["MLOPS_SERVE_ADMIN_KEY"] = env.get("MLOPS_SERVE_ADMIN_KEY") or admin_key(run)
    # Services that do not need each other start side by side: the Dask cluster
    # and the model server come up while the Prefect server migrates its database.
    try:
        server = _start(
            state, run, "prefect-server", state.prefect_ui_url, env, prefect_server_command(prefect_port)
        )
        scheduler = _start(state, run, "dask-scheduler", dask_address, env, [
            sys.executable, "-m", "distributed.cli.dask_scheduler",
            "--host", HOST, "--port", str(dask_port), "--no-dashboard",
        ])  # fmt: skip
        model_server = None
        if serve_port is not None:
            model_server = _start(state, run, "model-server", state.serve_url, connected, [
                *_mlops_cli(), "serve", "--host", HOST, "--port", str(serve_port),
            ])  # fmt: skip
        platform = None
        if server_port is not None:
            platform = _start(state, run, "platform-service", state.server_url, env, [
                *_mlops_cli(), "server", "--host", HOST, "--port", str(server_port),
            ])  # fmt: skip
        wait_until(scheduler, lambda: port_open(dask_port), opts.timeout, "listening")
        workers = _start(state, run, "dask-workers", dask_address, connected, [
            sys.executable, "-m", "distributed.cli.dask_worker", dask_address,
            "--nworkers", str(opts.dask_workers), "--nthreads", str(opts.dask_threads),
            "--host", HOST, "--no-dashboard", "--local-directory", str(run / "dask"),
        ])  # fmt: skip

        wait_until(server, lambda: http_ok(f"{api_url}/health"), opts.timeout, "answering")
        ensure_work_pool(api_url, env)
        worker = _start(state, run, "prefect-worker", None, connected, [
            sys.executable, "-m", "mlops.prefect_worker", "--pool", WORK_POOL,
            "--name", f"mlops-worker-{os.getpid()}",
        ])  # fmt: skip

        wait_until(workers, lambda: _dask_workers(dask_address) >= opts.dask_workers, opts.timeout, "joined")
        if platform is not None:
            health_url = f"{state.server_url}/api/v1/health"
            wait_until(platform, lambda: http_ok(health_url), opts.timeout, "answering")
        if model_server is not None:
            ready_url = f"{state.serve_url}/v2/health/ready"
            wait_until(model_server, lambda: http_ok(ready_url, accept_any=True), opts.timeout, "answering")
        wait_until(worker, lambda: pool_workers(api_url, WORK_POOL) > 0, opts.timeout, "online")
    except BaseException:
        _stop_all(state, timeout=10.0)
        raise
    return state


def _start(
    state: StackState, run: Path, name: str, address: str | None, env: dict[str, str], command: list[str]
) -> ServiceRecord:
    record = spawn_service(name, command, env, run, address)
    state.services.append(record)
    _write_state(state, run)
    return record


# ------------------------------------------------------------- down/status
def _stop_all(state: StackState, timeout: float) -> list[str]:
    order = {name: i for i, name in enumerate(SERVICE_ORDER)}
    records = sorted(state.services, key=lambda s: order.get(s.name, -1), reverse=True)
    stopped = stop_services(records, timeout)
    for record in records:
        Path(record.log).with_suffix(".pid").unlink(missing_ok=True)
    (Path(state.home) / "run" / STATE_FILE).unlink(missing_ok=True)
    return stopped


def stop_stack(home: Path | None = None, timeout: float = 10.0) -> list[str]:
    """Stop every service of the stack (all groups at once) and remove the state file.

    Returns:
        The names of the services that were running and are now stopped.
    """
    state = read_state(home)
    if state is None:
        return []
    return _stop_all(state, timeout)


def stack_status(home: Path | None = None) -> list[ServiceStatus]:
    """Each recorded service with its PID, whether it runs, its address and log."""
    state = read_state(home)
    if state is None:
        return []
    return [ServiceStatus(s.name, s.pid, is_alive(s), s.address, s.log) for s in state.services]


def service_pids(state: StackState) -> Iterator[int]:
    """Every PID of the stack's process groups right now: leaders and their descendants."""
    import psutil

    for record in state.services:
        proc = live_process(record)
        if proc is None:
            continue
        yield proc.pid
        with contextlib.suppress(psutil.Error):
            yield from (child.pid for child in proc.children(recursive=True))
