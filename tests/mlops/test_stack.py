"""``mlops up`` / ``mlops down`` / ``mlops status`` (mlops/stack.py, mlops/cli_ops.py).

The slow test starts the real stack on loopback (Prefect server, process
worker, one Dask worker, no model server), deploys the ``cluster-check``
deployment of prefect.yaml, starts it through the Prefect API with
``run_deployment``, reads where its tasks ran, and stops everything; every
process the stack had is checked gone. A fixture stops the stack whatever
the test's outcome.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from typer.testing import CliRunner

from mlops.cli import app
from mlops.stack import (
    STATE_FILE,
    ServiceRecord,
    StackError,
    StackOptions,
    StackState,
    choose_port,
    deploy_prefect_yaml,
    free_port,
    is_alive,
    read_state,
    run_dir,
    service_available,
    service_pids,
    serving_available,
    spawn_service,
    start_stack,
    stop_service,
    stop_stack,
)

ROOT = Path(__file__).resolve().parents[2]


def home() -> Path:
    return Path(os.environ["MLOPS_HOME"])


def _sleeper(run: Path, name: str = "sleeper", ignore_term: bool = False) -> ServiceRecord:
    """A service whose leader starts a child; with ``ignore_term`` both ignore SIGTERM."""
    ignore = f"if {ignore_term}: signal.signal(signal.SIGTERM, signal.SIG_IGN)"
    child = f"import signal, time\n{ignore}\ntime.sleep(120)"
    code = (
        f"import signal, subprocess, sys, time\n{ignore}\n"
        f"child = subprocess.Popen([sys.executable, '-c', {child!r}])\n"
        "print('started', child.pid, flush=True)\n"
        "time.sleep(120)\n"
    )
    record = spawn_service(name, [sys.executable, "-c", code], dict(os.environ), run)
    deadline = time.monotonic() + 20
    while "started" not in Path(record.log).read_text():
        assert time.monotonic() < deadline, "sleeper did not start"
        time.sleep(0.05)
    return record


def _family(record: ServiceRecord) -> list[int]:
    proc = psutil.Process(record.pid)
    return [proc.pid, *(c.pid for c in proc.children(recursive=True))]


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


# ------------------------------------------------------------- fast checks
@pytest.mark.parametrize("ignore_term", [False, True], ids=["terminates", "needs-kill"])
def test_stop_service_ends_the_whole_group(tmp_path: Path, ignore_term: bool) -> None:
    record = _sleeper(tmp_path, ignore_term=ignore_term)
    family = _family(record)
    assert len(family) == 2 and is_alive(record)
    started = time.monotonic()
    assert stop_service(record, timeout=1.0)
    assert all(_gone(pid) for pid in family), family
    assert not is_alive(record)
    assert time.monotonic() - started < 10
    assert not stop_service(record), "a stopped service is not stopped twice"


def test_reused_pid_is_not_taken_for_the_service(tmp_path: Path) -> None:
    record = _sleeper(tmp_path)
    try:
        stranger = ServiceRecord(**{**record.__dict__, "create_time": record.create_time - 3600})
        assert not is_alive(stranger)
        assert not stop_service(stranger), "a PID reused by another process must not be killed"
        assert is_alive(record)
    finally:
        stop_service(record)


def test_busy_port_asked_for_is_an_error() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        busy = sock.getsockname()[1]
        with pytest.raises(StackError, match=f"port {busy}"):
            choose_port(busy, 4200, "Prefect")
        assert choose_port(None, busy, "Prefect") != busy
    with pytest.raises(ValueError, match="out of range"):
        choose_port(70000, 4200, "Prefect")


def test_status_and_down_without_a_stack() -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["status", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"running": False, "addresses": {}, "services": []}
    result = runner.invoke(app, ["down"])
    assert result.exit_code == 0 and "nothing was running" in result.stdout


def test_up_refuses_while_a_stack_runs_and_down_stops_it() -> None:
    run = run_dir()
    run.mkdir(parents=True)
    record = _sleeper(run, name="prefect-server")
    state = StackState(str(home()), "http://127.0.0.1:1/api", "http://127.0.0.1:1", "tcp://127.0.0.1:2", None)
    state.services.append(record)
    (run / STATE_FILE).write_text(json.dumps(state.to_dict()))
    try:
        result = CliRunner().invoke(app, ["status", "--json"])
        shown = json.loads(result.stdout)
        assert shown["running"] and shown["services"][0]["pid"] == record.pid
        assert shown["addresses"]["MLOPS_DASK_ADDRESS"] == "tcp://127.0.0.1:2"
        with pytest.raises(StackError, match="already runs"):
            start_stack(StackOptions(dask_workers=1, serve=False))
        result = CliRunner().invoke(app, ["up", "--no-serve"])
        assert result.exit_code == 1 and "mlops down" in result.stderr
    finally:
        stopped = stop_stack()
    assert stopped == ["prefect-server"]
    assert not is_alive(record)
    assert read_state() is None and not (run / "prefect-server.pid").exists()


def test_bad_options_are_errors() -> None:
    with pytest.raises(ValueError, match="dask_workers"):
        start_stack(StackOptions(dask_workers=0))


# --------------------------------------------------------------- the stack
@pytest.fixture
def stack_env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    for key in ("PREFECT_API_URL", "PREFECT_PROFILE", "MLOPS_DASK_ADDRESS"):
        env.pop(key, None)
    env.update(
        MLOPS_HOME=str(home()),
        PREFECT_HOME=str(tmp_path / "user-prefect-home"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_WORKER_QUERY_SECONDS="1",
        PREFECT_WORKER_PREFETCH_SECONDS="1",
    )
    return env


@pytest.fixture
def running_stack(stack_env: dict[str, str]) -> Iterator[StackState]:
    """``mlops up`` as a user runs it; whatever happens, the stack is stopped afterwards."""
    try:
        done = subprocess.run(
            [sys.executable, "-m", "mlops.cli", "up", "--dask-workers", "1", "--json",
             "--serve" if serving_available() else "--no-serve", "--serve-port", str(free_port()),
             "--server" if service_available() else "--no-server", "--server-port", str(free_port()),
             "--prefect-port", str(free_port()), "--dask-port", str(free_port())],
            cwd=ROOT, env=stack_env, capture_output=True, text=True, timeout=240,
        )  # fmt: skip
        assert done.returncode == 0, f"mlops up failed:\n{done.stdout}\n{done.stderr}"
        yield StackState.from_dict(json.loads(done.stdout))
    finally:
        stop_stack(home(), timeout=10)


@pytest.mark.slow
def test_up_runs_a_deployment_on_the_dask_cluster_and_down_leaves_nothing(
    running_stack: StackState, stack_env: dict[str, str]
) -> None:
    from distributed import Client
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    state = running_stack
    assert state.prefect_api_url.startswith("http://127.0.0.1:")
    expected = {"prefect-server", "dask-scheduler", "dask-workers", "prefect-worker"}
    if service_available():  # the platform service over the same home: API behind keys, console sign-in
        expected.add("platform-service")
        assert state.server_url is not None
        assert httpx.get(f"{state.server_url}/api/v1/health", timeout=5).status_code == 200
        assert httpx.get(f"{state.server_url}/api/v1/models", timeout=5).status_code == 401
        sign_in = httpx.get(f"{state.server_url}/login", timeout=5)
        assert sign_in.status_code == 200 and "key" in sign_in.text.lower()
    if serving_available():
        expected.add("model-server")
        assert state.serve_url is not None
        assert httpx.get(f"{state.serve_url}/v2/health/live", timeout=5).status_code == 200
        key = (run_dir() / "admin-key").read_text().strip()
        admin = f"{state.serve_url}/admin/endpoints"
        assert httpx.get(admin, headers={"Authorization": f"Bearer {key}"}, timeout=5).status_code == 200
        assert httpx.get(admin, timeout=5).status_code in (401, 403)
        (worker,) = [s for s in state.services if s.name == "prefect-worker"]
        worker_env = psutil.Process(worker.pid).environ()
        assert worker_env["MLOPS_SERVE_URL"] == state.serve_url
        assert worker_env["MLOPS_SERVE_ADMIN_KEY"] == key
    assert {s.name for s in state.services} == expected
    assert all(is_alive(s) for s in state.services)
    for service in state.services:
        assert (run_dir() / f"{service.name}.pid").read_text().strip() == str(service.pid)
        assert Path(service.log).exists()

    status = subprocess.run(
        [sys.executable, "-m", "mlops.cli", "status", "--json"], env=stack_env, capture_output=True, text=True
    )
    shown = json.loads(status.stdout)
    assert shown["running"] and all(s["alive"] for s in shown["services"])
    assert shown["addresses"]["PREFECT_API_URL"] == state.prefect_api_url

    deploy_prefect_yaml(state.prefect_api_url, ["cluster-check"], project_dir=ROOT, home=home())
    with temporary_settings({PREFECT_API_URL: state.prefect_api_url}):
        flow_run = run_deployment(
            "cluster-check/cluster-check", parameters={"n_tasks": 3}, timeout=90, poll_interval=1
        )
        assert flow_run.state is not None and flow_run.state.is_completed(), flow_run.state
        with get_client(sync_client=True) as client:
            (artifact,) = client.read_artifacts(
                artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run.id]))
            )
    rows: list[dict[str, Any]] = json.loads(artifact.data)  # type: ignore[arg-type]
    assert len(rows) == 3
    assert {r["scheduler"] for r in rows} == {state.dask_address}
    with Client(state.dask_address, timeout=10) as client:
        cluster_workers = set(client.scheduler_info(n_workers=-1)["workers"])
    assert {r["worker"] for r in rows} <= cluster_workers
    (dask_workers,) = [s for s in state.services if s.name == "dask-workers"]
    worker_pids = set(_family(dask_workers))
    assert {r["pid"] for r in rows} <= worker_pids, "tasks ran outside the stack's Dask worker processes"

    pids = set(service_pids(state))
    down = subprocess.run(
        [sys.executable, "-m", "mlops.cli", "down"],
        env=stack_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert down.returncode == 0, down.stderr
    assert "prefect-server" in down.stdout
    deadline = time.monotonic() + 10
    while not all(_gone(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert [pid for pid in pids if not _gone(pid)] == []
    assert read_state() is None
    assert not any(run_dir().glob("*.pid"))
    leftovers = [
        p.pid
        for p in psutil.process_iter(["environ"])
        if _env_of(p).get("MLOPS_HOME") == str(home()) and p.pid != os.getpid()
    ]
    assert leftovers == [], "processes of the stack still run"


def _env_of(proc: psutil.Process) -> dict[str, str]:
    try:
        return proc.environ()
    except (psutil.Error, OSError):
        return {}
