"""Soak: the model server at about 80% of its measured capacity for many minutes.

Setup: two versions of the demo fraud model (ONNX) behind the endpoint
``fraud-ab``, an A/B test at 50/50 with sticky assignment by user, served by
``mlops serve`` in its own process with the prediction log on (flushed every
second). Then:

1. **capacity**: closed-loop requests from ``--clients`` keep-alive
   ``http.client`` connections for ``--capacity-seconds``: requests/s;
2. **soak**: open loop at ``--load`` (0.8) of that rate for ``--minutes``
   (10): each client thread sends on its own fixed schedule (a late request
   is sent at once, never skipped), with a random user as ``X-Request-Key``
   and a unique ``X-Request-Id``;
3. every ``--sample-seconds`` the server process's RSS and open file
   descriptors (psutil); per minute the requests, errors, p50 and p99;
4. at the end the server is stopped with SIGTERM (the writer flushes; exit
   status 0 expected) and the prediction log is read: its rows for the soak's
   request ids must equal the requests answered.

Targets: 0 errors; RSS growth under 5% from the end of the first minute
(warm-up: the model sessions, the router's caches, the log's first files) to
the end; log rows == requests answered.

Usage:
    .venv/bin/python benchmarks/soak.py [--minutes 10] [--clients 4] [--load 0.8] [--json OUT]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

ADMIN_KEY = "soak-admin"
ENDPOINT = "fraud-ab"
TARGETS = {"errors": 0, "rss_growth_percent": 5.0}
BODY = json.dumps(
    {
        "inputs": [
            {"name": "amount", "shape": [1], "datatype": "FP64", "data": [120.5]},
            {"name": "age", "shape": [1], "datatype": "INT64", "data": [31]},
            {"name": "country", "shape": [1], "datatype": "BYTES", "data": ["NL"]},
        ]
    }
).encode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def setup(home: Path) -> None:
    """Two versions of the demo model in a fresh registry under ``home``."""
    os.environ["MLOPS_HOME"] = str(home)
    from serving.testing import register_demo
    from storage.registry.core import Registry

    registry = Registry.from_settings()
    register_demo(registry, "fraud", "onnx")
    register_demo(registry, "fraud", "onnx")
    registry.db.dispose()


def start_server(home: Path, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "MLOPS_HOME": str(home), "PYTHONPATH": str(ROOT), "MLOPS_SERVE_LOG_FLUSH_S": "1"}
    command = [sys.executable, "-m", "mlops.cli", "serve", "--port", str(port), "--admin-key", ADMIN_KEY,
               "--model", "fraud"]  # fmt: skip
    proc = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the model server exited with {proc.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/v2/health/ready")
            if conn.getresponse().status == 200:
                conn.close()
                return proc
            conn.close()
        except OSError:
            pass
        time.sleep(0.3)
    proc.kill()
    raise RuntimeError("the model server was not ready within 180 s")


def create_endpoint(port: int) -> None:
    body = {"name": ENDPOINT, "policy": "ab", "variants": [
        {"name": "a", "model": "fraud", "version": "1", "weight": 50},
        {"name": "b", "model": "fraud", "version": "2", "weight": 50},
    ]}  # fmt: skip
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Authorization": f"Bearer {ADMIN_KEY}", "Content-Type": "application/json"}
    conn.request("POST", "/admin/endpoints", json.dumps(body), headers)
    response = conn.getresponse()
    text = response.read()
    conn.close()
    if response.status >= 300:
        raise RuntimeError(f"creating the endpoint failed: {response.status} {text[:200]!r}")


class Client:
    """One keep-alive connection; ``send`` returns (ok, seconds, request id)."""

    def __init__(self, port: int, users: int, seed: int) -> None:
        self.port = port
        self.users = users
        self.rng = random.Random(seed)
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def send(self) -> tuple[bool, float, str]:
        rid = uuid.uuid4().hex
        headers = {"Content-Type": "application/json", "X-Request-Id": rid,
                   "X-Request-Key": f"user-{self.rng.randrange(self.users)}"}  # fmt: skip
        start = time.perf_counter()
        try:
            self.conn.request("POST", f"/v2/models/{ENDPOINT}/infer", BODY, headers)
            response = self.conn.getresponse()
            response.read()
            ok = response.status == 200
        except (OSError, http.client.HTTPException):
            self.conn.close()
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            ok = False
        return ok, time.perf_counter() - start, rid

    def close(self) -> None:
        self.conn.close()


def capacity(port: int, clients: int, seconds: float) -> float:
    """Closed-loop requests/s from ``clients`` connections for ``seconds``."""
    counts = [0] * clients
    stop = threading.Event()

    def run(i: int) -> None:
        client = Client(port, 10_000, i)
        for _ in range(20):
            client.send()  # warm the connection and the versions
        while not stop.is_set():
            ok, _, _ = client.send()
            counts[i] += ok
        client.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    time.sleep(3.0)  # warm-up
    before, start = sum(counts), time.perf_counter()
    time.sleep(seconds)
    done, wall = sum(counts) - before, time.perf_counter() - start
    stop.set()
    for t in threads:
        t.join()
    return done / wall


def soak(port: int, pid: int, clients: int, rate: float, minutes: float, sample_s: float) -> dict[str, Any]:
    """Open-loop load at ``rate`` requests/s; per-minute figures and resource samples."""
    import psutil

    server = psutil.Process(pid)
    start = time.perf_counter()
    end = start + minutes * 60
    records: list[list[tuple[float, bool, float, str]]] = [[] for _ in range(clients)]
    interval = clients / rate

    def run(i: int) -> None:
        client = Client(port, 10_000, 100 + i)
        due = start + i * interval / clients
        out = records[i]
        while due < end:
            now = time.perf_counter()
            if due > now:
                time.sleep(due - now)
            ok, seconds, rid = client.send()
            out.append((due - start, ok, seconds, rid))
            due += interval
        client.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    samples = []
    while any(t.is_alive() for t in threads):
        with server.oneshot():
            rss_mb = server.memory_info().rss / 2**20
            at = round(time.perf_counter() - start, 1)
            samples.append(
                {"t_s": at, "rss_mb": rss_mb, "fds": server.num_fds(), "threads": server.num_threads()}
            )
        for t in threads:
            t.join(timeout=sample_s / len(threads))
    flat = [r for part in records for r in part]
    per_minute = []
    for m in range(int(np.ceil(minutes))):
        rows = [r for r in flat if m * 60 <= r[0] < (m + 1) * 60]
        lat = np.asarray([r[2] for r in rows if r[1]]) * 1000
        per_minute.append({
            "minute": m + 1, "requests": len(rows), "errors": sum(not r[1] for r in rows),
            "p50_ms": round(float(np.percentile(lat, 50)), 2) if len(lat) else None,
            "p99_ms": round(float(np.percentile(lat, 99)), 2) if len(lat) else None,
        })  # fmt: skip
    warm = [s for s in samples if s["t_s"] >= min(60.0, minutes * 60 / 5)]
    rss_start, rss_end = (warm[0]["rss_mb"], warm[-1]["rss_mb"]) if warm else (0.0, 0.0)
    return {
        "requests": len(flat),
        "answered": sum(r[1] for r in flat),
        "errors": sum(not r[1] for r in flat),
        "answered_ids": {r[3] for r in flat if r[1]},
        "per_minute": per_minute,
        "rss_mb_after_warmup": round(rss_start, 1),
        "rss_mb_end": round(rss_end, 1),
        "rss_growth_percent": round(100 * (rss_end - rss_start) / rss_start, 2) if rss_start else None,
        "fds": [samples[0]["fds"], max(s["fds"] for s in samples), samples[-1]["fds"]] if samples else [],
        "threads": [samples[0]["threads"], samples[-1]["threads"]] if samples else [],
        "achieved_rps": round(len(flat) / (minutes * 60), 1),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--load", type=float, default=0.8, help="share of the measured capacity")
    parser.add_argument("--capacity-seconds", type=float, default=15.0)
    parser.add_argument("--sample-seconds", type=float, default=5.0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    home = Path(tempfile.mkdtemp(prefix="mlops-soak-"))
    setup(home)
    port = free_port()
    proc = start_server(home, port)
    try:
        create_endpoint(port)
        rps = capacity(port, args.clients, args.capacity_seconds)
        rate = args.load * rps
        print(f"capacity {rps:.0f} requests/s with {args.clients} clients; soak at {rate:.0f}/s "
              f"for {args.minutes:g} min", flush=True)  # fmt: skip
        result = soak(port, proc.pid, args.clients, rate, args.minutes, args.sample_seconds)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            exit_status = proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            exit_status = proc.wait(10)
    from storage.monitoring.prediction_log import PredictionLog

    logged = PredictionLog(home / "predictions").read("fraud")
    ids = result.pop("answered_ids")
    soak_rows = logged[logged["request_id"].isin(ids)]
    result.update(
        capacity_rps=round(rps, 1),
        target_rps=round(rate, 1),
        clients=args.clients,
        minutes=args.minutes,
        log_rows=len(soak_rows),
        log_rows_by_variant=soak_rows["variant"].value_counts().to_dict(),
        server_exit_status=exit_status,
        cpus=os.cpu_count(),
        targets=TARGETS,
    )
    result["met"] = {
        "errors": result["errors"] == 0,
        "rss_growth": result["rss_growth_percent"] is not None and result["rss_growth_percent"] < 5.0,
        "log_rows_equal_answered": result["log_rows"] == result["answered"],
        "exit_status_0": exit_status == 0,
    }
    text = json.dumps(result, indent=2, default=str)
    print(text)
    if args.json:
        args.json.write_text(text)
    return result


if __name__ == "__main__":
    main()
