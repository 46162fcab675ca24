"""The platform's local services: start, stop and inspect them (``mlops up/down/status``).

One machine runs, each as its own process group with a PID file and a log
under ``$MLOPS_HOME/run/``:

* ``prefect-server``: ``prefect server start`` with the UI, its own
  ``PREFECT_HOME`` under ``$MLOPS_HOME/prefect`` (the user's profile is never
  touched), SQLite unless ``PREFECT_SERVER_DATABASE_CONNECTION_URL`` is set;
* the ``mlops-process`` work pool (created when missing) and ``prefect-worker``,
  a process worker on it;
* ``dask-scheduler`` and ``dask-workers`` (the ``dask`` command line);
* ``model-server``: ``mlops serve`` when the serving part is installed.

The worker's and the Dask workers' environment carries ``PREFECT_API_URL`` and
``MLOPS_DASK_ADDRESS``, so flow runs started through deployments report to
this Prefect server and run their tasks on this Dask cluster. The addresses
are written to ``$MLOPS_HOME/run/stack.json``; :func:`stop_stack` stops every
process group it finds there (terminate, wait, kill) and leaves nothing running.

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
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from blocks.settings import get_settings
from storage.errors import MlopsError, ValidationError

WORK_POOL = "mlops-process"
STATE_FILE = "stack.json"
HOST = "127.0.0.1"
#: Ports tried first; a busy one is replaced by a free port unless it was asked for.
DEFAULT_PORTS = {"prefect": 4200, "dask": 8786, "serve": 8080}
#: The order services start in; they stop in reverse.
SERVICE_ORDER = ("prefect-server", "dask-scheduler", "dask-workers", "prefect-worker", "model-server")


class StackError(MlopsError):
    """A service that did not start, or a stack that is already running."""


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
        timeout: Seconds each service may take to become ready.
    """

    prefect_port: int | None = None
    dask_port: int | None = None
    dask_workers: int = 2
    dask_threads: int = 1
    serve: bool | None = None
    serve_port: int | None = None
    timeout: float = 120.0


@dataclass
class ServiceRecord:
    """One started process group: what runs, where it listens, where it logs."""

    name: str
    pid: int
    create_time: float
    address: str | None
    log: str
    command: list[str]


@dataclass
class StackState:
    """What ``mlops up`` started, as written to ``$MLOPS_HOME/run/stack.json``."""

    home: str
    prefect_api_url: str
    prefect_ui_url: str
    dask_address: str
    serve_url: str | None
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


# ----------------------------------------------------------------- paths
def run_dir(home: Path | None = None) -> Path:
    """``$MLOPS_HOME/run``: PID files, logs and the state file (not created)."""
    return (home or get_settings().resolved_home()) / "run"


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
def _process(record: ServiceRecord) -> Any | None:
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
    return _process(record) is not None


def spawn_service(
    name: str, command: list[str], env: dict[str, str], run: Path, address: str | None = None
) -> ServiceRecord:
    """Start ``command`` in its own session and process group; log ``run/NAME.log``, PID ``run/NAME.pid``.

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


def _wait_until(record: ServiceRecord, ready: Callable[[], bool], timeout: float, what: str) -> None:
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
        leader = _process(record)
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
def _http_ok(url: str, accept_any: bool = False) -> bool:
    import httpx

    response = httpx.get(url, timeout=2.0)
    return accept_any or response.status_code == 200


def _port_open(port: int) -> bool:
    with socket.create_connection((HOST, port), timeout=1.0):
        return True


def _dask_workers(address: str) -> int:
    from distributed import Client

    with Client(address, timeout=5) as client:
        return len(client.scheduler_info(n_workers=-1)["workers"])


def _pool_workers(api_url: str, pool: str) -> int:
    import httpx

    response = httpx.post(f"{api_url}/work_pools/{pool}/workers/filter", json={}, timeout=5.0)
    response.raise_for_status()
    return sum(1 for w in response.json() if w.get("status") == "ONLINE")


def ensure_work_pool(api_url: str, env: dict[str, str], pool: str = WORK_POOL) -> bool:
    """Create the process work pool ``pool`` unless it exists.

    Returns:
        Whether the pool was created.
    """
    import httpx

    if httpx.get(f"{api_url}/work_pools/{pool}", timeout=10.0).status_code == 200:
        return False
    done = subprocess.run(
        [*_prefect_cli(), "work-pool", "create", pool, "--type", "process"],
        env={**env, "PREFECT_API_URL": api_url},
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0:
        raise StackError(f"work pool {pool!r} could not be created: {done.stdout[-800:]}{done.stderr[-800:]}")
    return True


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
    try:
        return importlib.util.find_spec("serving.app") is not None
    except ImportError:
        return False


def _prefect_cli() -> list[str]:
    return [sys.executable, "-m", "prefect"]


def _mlops_cli() -> list[str]:
    return [sys.executable, "-c", "from mlops.cli import main; main()"]


def _base_env(home: Path) -> dict[str, str]:
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


def start_prefect_server(
    home: Path | None = None, port: int | None = None, timeout: float = 120.0
) -> tuple[ServiceRecord, str]:
    """Start only a Prefect server (with its UI, scheduler and automation services) and wait for it.

    The server keeps its database under ``home/prefect`` and logs to
    ``home/run/prefect-server.log``. Stop it with :func:`stop_service`.

    Returns:
        The service record and the API URL (``http://127.0.0.1:PORT/api``).
    """
    home = (home or get_settings().resolved_home()).absolute()
    run = run_dir(home)
    run.mkdir(parents=True, exist_ok=True)
    (home / "prefect").mkdir(parents=True, exist_ok=True)
    port = choose_port(port, DEFAULT_PORTS["prefect"], "Prefect")
    api_url = f"http://{HOST}:{port}/api"
    record = spawn_service("prefect-server", _prefect_server_command(port), _base_env(home), run, api_url)
    try:
        _wait_until(record, lambda: _http_ok(f"{api_url}/health"), timeout, "answering")
    except BaseException:
        stop_service(record)
        raise
    return record, api_url


def _prefect_server_command(port: int) -> list[str]:
    return [*_prefect_cli(), "server", "start", "--host", HOST, "--port", str(port)]


def deploy_prefect_yaml(
    api_url: str,
    names: list[str] | None = None,
    project_dir: Path | None = None,
    home: Path | None = None,
    timeout: float = 300.0,
) -> str:
    """Register the deployments of ``prefect.yaml`` (all, or ``names``) with the server at ``api_url``.

    Runs ``prefect --no-prompt deploy`` in ``project_dir`` (default: the
    working directory), so the pull step records that folder as where the
    worker runs the flows. Creates the ``mlops-process`` pool first when
    missing.

    Returns:
        The command's output.

    Raises:
        StackError: The command failed; the message holds the end of its output.
    """
    home = (home or get_settings().resolved_home()).absolute()
    env = {**_base_env(home), "PREFECT_API_URL": api_url}
    ensure_work_pool(api_url, env)
    selection = [arg for name in names for arg in ("--name", name)] if names else ["--all"]
    done = subprocess.run(
        [*_prefect_cli(), "--no-prompt", "deploy", *selection],
        cwd=project_dir or Path.cwd(),
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    output = done.stdout + done.stderr
    if done.returncode != 0:
        raise StackError(f"prefect deploy {' '.join(selection)} failed:\n{output[-2000:]}")
    return output


# ------------------------------------------------------------------- up
def start_stack(options: StackOptions | None = None, home: Path | None = None) -> StackState:
    """Start the Prefect server, work pool and worker, Dask cluster and model server.

    Every service is ready when this returns (Prefect answers ``/api/health``,
    the Dask workers joined, the worker is online on the pool, the model server
    answers). When one fails, those already started are stopped again.

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

    prefect_port = choose_port(opts.prefect_port, DEFAULT_PORTS["prefect"], "Prefect")
    dask_port = choose_port(opts.dask_port, DEFAULT_PORTS["dask"], "Dask scheduler")
    serve_port = choose_port(opts.serve_port, DEFAULT_PORTS["serve"], "model server") if serve else None
    api_url = f"http://{HOST}:{prefect_port}/api"
    dask_address = f"tcp://{HOST}:{dask_port}"
    state = StackState(
        home=str(home),
        prefect_api_url=api_url,
        prefect_ui_url=f"http://{HOST}:{prefect_port}",
        dask_address=dask_address,
        serve_url=f"http://{HOST}:{serve_port}" if serve_port else None,
    )
    env = _base_env(home)
    connected = {**env, "PREFECT_API_URL": api_url, "MLOPS_DASK_ADDRESS": dask_address}
    if state.serve_url:
        # rollouts started by the worker find the model server and its admin API here
        connected["MLOPS_SERVE_URL"] = state.serve_url
        connected["MLOPS_SERVE_ADMIN_KEY"] = env.get("MLOPS_SERVE_ADMIN_KEY") or admin_key(run)
    # Services that do not need each other start side by side: the Dask cluster
    # and the model server come up while the Prefect server migrates its database.
    try:
        server = _start(
            state, run, "prefect-server", state.prefect_ui_url, env, _prefect_server_command(prefect_port)
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
        _wait_until(scheduler, lambda: _port_open(dask_port), opts.timeout, "listening")
        workers = _start(state, run, "dask-workers", dask_address, connected, [
            sys.executable, "-m", "distributed.cli.dask_worker", dask_address,
            "--nworkers", str(opts.dask_workers), "--nthreads", str(opts.dask_threads),
            "--host", HOST, "--no-dashboard", "--local-directory", str(run / "dask"),
        ])  # fmt: skip

        _wait_until(server, lambda: _http_ok(f"{api_url}/health"), opts.timeout, "answering")
        ensure_work_pool(api_url, env)
        worker = _start(state, run, "prefect-worker", None, connected, [
            *_prefect_cli(), "worker", "start", "--pool", WORK_POOL, "--type", "process",
            "--name", f"mlops-worker-{os.getpid()}",
        ])  # fmt: skip

        _wait_until(workers, lambda: _dask_workers(dask_address) >= opts.dask_workers, opts.timeout, "joined")
        if model_server is not None:
            ready_url = f"{state.serve_url}/v2/health/ready"
            _wait_until(model_server, lambda: _http_ok(ready_url, accept_any=True), opts.timeout, "answering")
        _wait_until(worker, lambda: _pool_workers(api_url, WORK_POOL) > 0, opts.timeout, "online")
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
        proc = _process(record)
        if proc is None:
            continue
        yield proc.pid
        with contextlib.suppress(psutil.Error):
            yield from (child.pid for child in proc.children(recursive=True))
