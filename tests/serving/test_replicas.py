"""Replica processes on one port: a real scale-up under load, rolling replacement, clean stop."""

from __future__ import annotations

import threading
import time

import httpx
import psutil
import pytest

from serving.autoscaler import AutoscalePolicy
from serving.replicas import Supervisor


def _load(url: str, stop: threading.Event, pids: set[int], failures: list[str], ms: float = 30.0) -> None:
    # a new connection per request: the kernel hands each to one of the replicas
    with httpx.Client(timeout=30, limits=httpx.Limits(max_keepalive_connections=0)) as client:
        while not stop.is_set():
            try:
                response = client.get(f"{url}/work", params={"ms": ms})
                response.raise_for_status()
                pids.add(response.json()["pid"])
            except httpx.HTTPError as exc:
                failures.append(f"{type(exc).__name__}: {exc}")


@pytest.mark.slow
def test_scale_up_under_load_then_roll_and_stop() -> None:
    policy = AutoscalePolicy(
        target_cpu_percent=None, target_p95_ms=None, target_inflight=1.5, scale_down_window_s=600
    )
    sup = Supervisor(
        "serving.replicas:hello_app", min_replicas=1, max_replicas=3, policy=policy, interval_s=0.5
    )
    processes: list[psutil.Process] = []
    try:
        sup.start()
        assert sup.replica_count == 1
        first_pid = httpx.get(f"{sup.url}/").json()["pid"]
        assert first_pid == sup.replicas[0].pid
        stop, pids, failures = threading.Event(), set[int](), list[str]()
        clients = [threading.Thread(target=_load, args=(sup.url, stop, pids, failures)) for _ in range(6)]
        for c in clients:
            c.start()
        sup.start_autoscaler()
        deadline = time.monotonic() + 40
        while sup.replica_count < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert sup.replica_count >= 2, sup.decisions[-3:]
        pids.clear()
        deadline = time.monotonic() + 60  # the new replicas take connections from the shared socket
        while len(pids) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        stop.set()
        for c in clients:
            c.join()
        assert failures == []
        assert len(pids) >= 2 and pids <= {r.pid for r in sup.replicas}
        up = [e for e in sup.events if e["action"] == "scale" and e["reason"] == "autoscale"]
        assert up and up[0]["after"] > up[0]["before"] and up[0]["metrics"]["inflight_per_replica"] > 1.5

        # rolling replacement under load: new processes, no failed request
        sup._stop.set()  # the autoscaler rests while the replicas are replaced
        sup._thread.join()  # type: ignore[union-attr]
        sup._thread = None
        before = {r.pid for r in sup.replicas}
        stop, pids, failures = threading.Event(), set[int](), list[str]()
        clients = [
            threading.Thread(target=_load, args=(sup.url, stop, pids, failures, 5.0)) for _ in range(2)
        ]
        for c in clients:
            c.start()
        after = set(sup.rolling_restart())
        stop.set()
        for c in clients:
            c.join()
        assert failures == [] and len(after) == len(before) and not after & before
        processes = [psutil.Process(p) for p in after]
    finally:
        sup.close()
    assert sup.replica_count == 0
    for proc in processes:
        assert not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{sup.url}/", timeout=2)


@pytest.mark.slow
def test_run_supervised_rolls_on_sighup_and_stops_on_sigterm(tmp_path: object) -> None:
    import signal
    import subprocess
    import sys

    from serving.server import free_port
    from storage.audit import AuditLog
    from storage.db import Database

    port = free_port()
    code = (
        "from serving.config import ServeSettings\n"
        "from serving.replicas import run_supervised\n"
        f"run_supervised(ServeSettings(port={port}), 2, 3, autoscale=False,\n"
        "               factory='serving.replicas:hello_app')\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code])
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        seen: set[int] = set()
        while len(seen) < 2 and time.monotonic() < deadline:
            try:
                seen.add(httpx.get(f"{url}/", headers={"Connection": "close"}, timeout=5).json()["pid"])
            except httpx.HTTPError:
                time.sleep(0.1)
        assert len(seen) == 2
        children = {c.pid for c in psutil.Process(proc.pid).children()}
        assert seen <= children
        proc.send_signal(signal.SIGHUP)
        while time.monotonic() < deadline:
            now = {c.pid for c in psutil.Process(proc.pid).children()}
            if len(now) == 2 and not now & children:
                break
            time.sleep(0.2)
        assert len(now) == 2 and not now & children
        assert httpx.get(f"{url}/", timeout=5).json()["pid"] in now
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in now)
    from blocks.settings import get_settings

    db = Database(get_settings().resolved_database_url())
    actions = [e.action for e in AuditLog(db).entries(entity_type="server")]
    db.dispose()
    assert actions == ["replicas.scale", "replicas.roll"]
