"""Redis, the online store, stopped during online reads, serving and materialization, then back.

The test starts its own ``redis-server`` (append-only file, fsync always, so
what was written survives), kills it, and expects: online reads fail at once
with an UnavailableError naming the server; the model server answers 503 for
requests whose features it must read, and keeps answering the others;
materialization fails the same way and leaves the watermark where it was; once
Redis is back, materializing again writes the window, and a second run
changes nothing.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
import redis

from serving.app import create_app
from serving.config import ServeSettings
from serving.features import declare_features
from serving.server import ServerThread, free_port
from serving.testing import register_demo
from storage.db import Database
from storage.errors import UnavailableError
from storage.features.store import FeatureStore
from storage.registry.core import Registry

pytestmark = [pytest.mark.chaos, pytest.mark.slow]

NOW = datetime.now(UTC)
FEATURES = ["card_stats:age", "card_stats:country"]


class RedisProcess:
    """A redis-server of this test: started, killed and started again on the same port and files."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.port = folder, free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0?prefix=chaos:"

    def start(self) -> None:
        command = [
            "redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder),
            "--appendonly", "yes", "--appendfsync", "always", "--save", "", "--protected-mode", "no",
        ]  # fmt: skip
        self.proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port, socket_connect_timeout=1)
        deadline = time.monotonic() + 30
        while True:
            try:
                if client.ping():
                    return
            except redis.exceptions.RedisError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisProcess]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed: this test starts and stops its own Redis")
    server = RedisProcess(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.kill()


def _batch(cards: range, age: int, at: datetime) -> pd.DataFrame:
    n = len(cards)
    return pd.DataFrame({"card_id": list(cards), "ts": [at] * n, "age": [age] * n, "country": ["NL"] * n})


def _oip(card: int) -> dict[str, Any]:
    return {
        "inputs": [
            {"name": "card_id", "shape": [1], "datatype": "INT64", "data": [card]},
            {"name": "amount", "shape": [1], "datatype": "FP64", "data": [12.5]},
        ]
    }


def test_redis_outage_is_a_clear_error_and_materialization_resumes(
    redis_server: RedisProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLOPS_ONLINE_STORE_URL", redis_server.url)
    registry = Registry.from_settings()
    register_demo(registry, "fraud", "onnx")
    register_demo(registry, "plain", "onnx")
    store = FeatureStore(Database(registry.db.url), str(tmp_path / "offline"), redis_server.url)
    store.definitions.create_entity("card", join_keys=["card_id"])
    store.definitions.create_group("card_stats", entity="card", event_time_column="ts", ttl_seconds=86_400)
    store.definitions.register_feature("card_stats", "age", "int")
    store.definitions.register_feature("card_stats", "country", "string")
    store.ingest("card_stats", _batch(range(1, 101), 30, NOW - timedelta(hours=2)))
    first_end = NOW - timedelta(hours=1)
    assert store.materialize("card_stats", end=first_end).rows == 100
    declare_features(registry, "fraud", 1, FEATURES)
    server = ServerThread(create_app(ServeSettings(log_predictions=False), registry=registry)).start()
    plain = {"inputs": [{"name": "amount", "shape": [1], "datatype": "FP64", "data": [1.0]},
                        {"name": "age", "shape": [1], "datatype": "INT64", "data": [30]},
                        {"name": "country", "shape": [1], "datatype": "BYTES", "data": ["NL"]}]}  # fmt: skip
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            assert client.post("/v2/models/fraud/infer", json=_oip(7)).status_code == 200

            redis_server.kill()
            started = time.monotonic()
            with pytest.raises(
                UnavailableError, match=f"online store redis://127.0.0.1:{redis_server.port}/0"
            ):
                store.get_online_features([{"card_id": 7}], FEATURES)
            assert time.monotonic() - started < 6.0
            r = client.post("/v2/models/fraud/infer", json=_oip(7))
            assert r.status_code == 503 and "does not answer" in r.json()["error"], r.text
            assert client.post("/v2/models/plain/infer", json=plain).status_code == 200  # no features needed
            store.ingest("card_stats", _batch(range(1, 151), 41, NOW - timedelta(minutes=30)))
            with pytest.raises(UnavailableError):
                store.materialize("card_stats", end=NOW)

            redis_server.start()  # the same port and append-only file
            assert store.online.watermark("card_stats") == int(first_end.timestamp() * 1_000_000)
            assert store.materialize("card_stats", end=NOW).rows == 150  # resumes from the watermark
            assert store.online.count("card_stats") == 150
            again = store.materialize("card_stats", start=first_end, end=NOW)
            assert again.rows == 150 and store.online.count("card_stats") == 150
            online = store.get_online_features([{"card_id": 7}, {"card_id": 150}], FEATURES)
            assert [row["age"] for row in online.rows] == [41, 41]
            assert client.post("/v2/models/fraud/infer", json=_oip(150)).status_code == 200
    finally:
        server.stop()
        store.close()
