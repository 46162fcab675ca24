"""``mlops serve --replicas N``: replica processes of the real app behind one port, stopped by SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from serving.server import free_port
from serving.testing import register_demo
from storage.registry.core import Registry


@pytest.mark.slow
def test_serve_with_two_replicas_answers_from_both_and_stops_them(tmp_path: Path) -> None:
    home = tmp_path / "home"
    registry = Registry.open(f"sqlite:///{home}/mlops.db", str(home / "artifacts"))
    register_demo(registry, "fraud", "onnx")
    registry.db.dispose()
    port = free_port()
    env = {**os.environ, "MLOPS_HOME": str(home)}
    command = [sys.executable, "-m", "mlops.cli", "serve", "--port", str(port), "--replicas", "2", "--no-log"]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    children: set[int] = set()
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            children = {c.pid for c in psutil.Process(proc.pid).children()}
            try:
                ready = httpx.get(f"{url}/v2/health/ready", headers={"Connection": "close"}, timeout=5)
                if ready.status_code == 200 and len(children) == 2:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "mlops serve --replicas 2 did not become ready"
            time.sleep(0.2)
        metadata = httpx.get(f"{url}/v2/models/fraud", timeout=10)
        assert metadata.status_code == 200 and metadata.json()["name"] == "fraud"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)

    def running(pid: int) -> bool:
        return psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE

    assert not [pid for pid in children if running(pid)]
