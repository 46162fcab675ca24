"""The model server SIGKILLed with predictions buffered: what the prediction log loses, and a clean restart.

The writer takes the rows it holds every ``flush_s`` seconds (after its last
write ended) and writes them, so a SIGKILL loses at most the predictions taken
since the last write that completed: one flush interval plus two writes (the
completed one and the one cut short). The figure is the oldest lost answer's
age at the kill, asserted within that bound, with the write time the server
itself reports (``mlops_prediction_log_longest_write_seconds``, read just
before the kill; writes take longer while the machine is busy). Lost answers
are the newest ones: none is older than the newest logged answer. Nothing
already written is damaged, no row is logged that was not answered, and a
restart on the same folder logs again.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from serving.server import free_port
from serving.testing import register_demo
from storage.monitoring.prediction_log import PredictionLog
from storage.registry.core import Registry

pytestmark = [pytest.mark.chaos, pytest.mark.slow]

FLUSH_S = 1.0
ROOT = Path(__file__).resolve().parents[2]
GOOD = [{"amount": 10.0, "age": 30, "country": "NL"}]
#: Between a row being queued and its answer reaching the client (threads on a busy machine).
SLACK_S = 0.5


def _longest_write(port: int) -> float:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    line = next(x for x in text.splitlines() if x.startswith("mlops_prediction_log_longest_write_seconds "))
    return float(line.split()[1])


def _start(port: int) -> subprocess.Popen[bytes]:
    code = (
        "from serving.config import ServeSettings\nfrom serving.server import serve\n"
        f"serve(ServeSettings(port={port}, log_flush_s={FLUSH_S}))\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the server exited with {proc.returncode}"
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=2).status_code == 200:
                # the model loads on its first request: load it before the clock matters
                warm = httpx.get(f"http://127.0.0.1:{port}/v2/models/fraud/ready", timeout=120)
                assert warm.status_code == 200, warm.text
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise AssertionError("the model server did not start")


class Traffic:
    """Keep-alive clients sending one-row predictions, each answer's id and time kept."""

    def __init__(self, url: str, clients: int = 3) -> None:
        self.url = url
        self.served: dict[str, float] = {}
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(clients)]

    def _run(self, client_no: int) -> None:
        n = 0
        with httpx.Client(base_url=self.url, timeout=10) as client:
            while not self.stop.is_set():
                rid = f"c{client_no}-{n}"
                n += 1
                try:
                    r = client.post("/v1/models/fraud/predict", json=GOOD, headers={"X-Request-Id": rid})
                except httpx.HTTPError:
                    time.sleep(0.05)  # the server is gone (or slow): not answered
                    continue
                if r.status_code == 200:
                    with self.lock:
                        self.served[rid] = time.monotonic()

    def __enter__(self) -> Traffic:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(30)


@pytest.fixture
def model(_isolated_home: Path) -> Iterator[PredictionLog]:
    register_demo(Registry.from_settings(), "fraud", "sklearn")
    yield PredictionLog.from_settings()


def test_sigkill_loses_at_most_one_flush_interval_and_a_restart_logs_on(model: PredictionLog) -> None:
    log, port = model, free_port()
    proc = _start(port)
    try:
        with Traffic(f"http://127.0.0.1:{port}") as traffic:
            time.sleep(3 * FLUSH_S + 0.5)
            longest_write = _longest_write(port)
            killed_at = time.monotonic()
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    served = dict(traffic.served)
    before = log.read("fraud")
    logged = set(before["request_id"])
    lost = {rid: killed_at - at for rid, at in served.items() if rid not in logged}
    assert logged <= set(served), "a row was logged for a request that was not answered"
    assert len(served) > 50, f"only {len(served)} answered: too little traffic to measure"
    window = max(lost.values(), default=0.0)
    print(
        f"\nSIGKILL with the log on (flush every {FLUSH_S} s): {len(served)} answered, {len(logged)} logged, "
        f"{len(lost)} lost, the oldest lost answered {window:.2f} s before the kill "
        f"(longest write {longest_write:.2f} s)"
    )
    newest_logged = max(served[rid] for rid in logged)
    older = [rid for rid in lost if served[rid] < newest_logged - SLACK_S]
    assert not older, f"answers older than the newest logged one were lost: {older[:5]}"
    bound = FLUSH_S + 2 * longest_write + SLACK_S
    assert window <= bound, (sorted(lost.values())[-5:], f"longest write {longest_write:.2f} s")
    assert log.verify() == []

    proc = _start(port)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            for i in range(20):
                headers = {"X-Request-Id": f"after-{i}"}
                assert client.post("/v1/models/fraud/predict", json=GOOD, headers=headers).status_code == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0  # a clean stop writes what the writer holds
    finally:
        if proc.poll() is None:
            proc.kill()
    after = log.read("fraud")
    assert set(after["request_id"]) == logged | {f"after-{i}" for i in range(20)}
    assert log.verify() == []
