"""SIGTERM after a clean shutdown is exit status 0: ``mlops serve``, its supervisor, ``mlops up``'s services.

Each test starts real processes as children of the test, so it can read their
exit status, sends SIGTERM the way a supervisor (systemd, Kubernetes,
``mlops down``) does, and expects 0 (uvicorn and Prefect's server re-raised the
signal: 143).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from mlops.clean_exit import exit_status, wrap
from serving.server import free_port

pytestmark = [pytest.mark.chaos, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def _mlops(*args: str) -> list[str]:
    return [sys.executable, "-c", "from mlops.cli import main; main()", *args]


def _wait(check: Callable[[], bool], proc: subprocess.Popen[bytes], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"exited early with {proc.returncode}"
        try:
            if check():
                return
        except (httpx.HTTPError, OSError):
            pass
        time.sleep(0.2)
    raise AssertionError(f"not ready within {timeout} s")


def _ready(url: str) -> Callable[[], bool]:
    return lambda: httpx.get(url, timeout=2, headers={"Connection": "close"}).status_code == 200


def _stop(proc: subprocess.Popen[bytes], timeout: float = 60.0) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


@pytest.mark.parametrize("replicas", [0, 2])
def test_mlops_serve_exits_0_on_sigterm(replicas: int) -> None:
    port = free_port()
    extra = ["--replicas", str(replicas)] if replicas else []
    proc = subprocess.Popen(_mlops("serve", "--port", str(port), "--no-log", *extra), cwd=ROOT)
    _wait(_ready(f"http://127.0.0.1:{port}/v2/health/live"), proc)
    if replicas:
        import psutil

        _wait(lambda: len(psutil.Process(proc.pid).children()) == replicas, proc)
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as idle_keep_alive:
        assert idle_keep_alive.get("/v2/health/live").status_code == 200
        assert _stop(proc) == 0


def test_the_supervisor_stopped_while_replicas_start_exits_0() -> None:
    port = free_port()
    proc = subprocess.Popen(
        _mlops("serve", "--port", str(port), "--no-log", "--replicas", "3"), cwd=ROOT, start_new_session=True
    )
    _wait(_ready(f"http://127.0.0.1:{port}/v2/health/live"), proc)  # the first replica answers
    os.killpg(proc.pid, signal.SIGTERM)  # the whole group, starting replicas too
    assert proc.wait(60) == 0


def test_clean_exit_maps_a_requested_stop_to_0() -> None:
    assert exit_status(-signal.SIGTERM, signal.SIGTERM) == 0
    assert exit_status(143, signal.SIGTERM) == 0
    assert exit_status(-signal.SIGKILL, signal.SIGTERM) == 128 + signal.SIGKILL
    assert exit_status(-signal.SIGTERM, None) == 143
    code = "import os, signal, time; print('up', flush=True); time.sleep(60)"
    proc = subprocess.Popen(wrap([sys.executable, "-c", code]), stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline() == b"up\n"
    assert _stop(proc) == 0
    crash = subprocess.run(wrap([sys.executable, "-c", "raise SystemExit(3)"]), timeout=60)
    assert crash.returncode == 3


def test_mlops_up_services_exit_0_on_sigterm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlops.stack import SERVICE_ORDER, StackOptions, start_stack, stop_stack

    for key in ("PREFECT_API_URL", "PREFECT_PROFILE", "MLOPS_DASK_ADDRESS"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "user-prefect-home"))
    monkeypatch.setenv("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    monkeypatch.chdir(ROOT)
    ports = {"prefect_port": free_port(), "dask_port": free_port(), "serve_port": free_port()}
    ports["server_port"] = free_port()
    state = start_stack(StackOptions(dask_workers=1, serve=True, server=True, timeout=240, **ports))
    codes: dict[str, int | None] = {}
    took: dict[str, float] = {}  # seconds from SIGTERM to exit, shown when the test fails
    try:
        # the services are this process's children: stop each group as `mlops down` does, read its status
        # (a deadline, not a measure: with both cores busy a Prefect worker took over 60 s to stop)
        for service in reversed(state.services):
            os.killpg(service.pid, signal.SIGTERM)
            asked = time.monotonic()
            deadline, code = asked + 300, None
            while code is None and time.monotonic() < deadline:
                pid, status = os.waitpid(service.pid, os.WNOHANG)
                code = os.waitstatus_to_exitcode(status) if pid else None
                time.sleep(0.1)
            codes[service.name] = code
            took[service.name] = round(time.monotonic() - asked, 1)
    finally:
        stop_stack(timeout=10)
    assert set(codes) == set(SERVICE_ORDER)  # every service mlops up has
    assert codes == dict.fromkeys(codes, 0), (codes, took)
