"""Features at serving time: what the online lookup adds to one request, in process (SQLite and Redis).

A version of the demo card-fraud model declares two online features
(``card_stats:age``, ``card_stats:country``); 100,000 cards are materialized
to the online store. Measured in this process, after 200 warm-up calls, over
``--repeats`` single-row requests for random cards:

* **lookup**: :meth:`serving.features.FeatureFiller.fill` (the version's plan
  from memory, one online read per group, the policy, the typed columns);
* **request**: the model server's whole inference path for a request that
  carries ``card_id`` and ``amount`` (ASGI app called in process: JSON,
  routing, fill, ONNX Runtime, response) against the same request carrying
  every input to a version that declares no features; the difference is what
  filling adds end to end.

Target: the lookup adds at most 1 ms at p99.

Usage:
    .venv/bin/python benchmarks/feature_serving.py [--repeats 5000] [--redis-url redis://127.0.0.1:6379/0]
                                                   [--json OUT]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

CARDS = 100_000


def pct(values: list[float]) -> dict[str, float]:
    arr = np.asarray(values) * 1000
    return {"p50_ms": float(np.percentile(arr, 50)), "p99_ms": float(np.percentile(arr, 99))}


def setup(online_url: str) -> Any:
    import pandas as pd

    from serving.features import declare_features
    from serving.testing import register_demo
    from storage.features.store import FeatureStore
    from storage.registry.core import Registry

    os.environ["MLOPS_ONLINE_STORE_URL"] = online_url
    registry = Registry.from_settings()
    register_demo(registry, "fraud", "onnx", n_estimators=100)
    register_demo(registry, "fraud", "onnx", n_estimators=100)
    store = FeatureStore.from_settings()
    store.definitions.create_entity("card", join_keys=["card_id"])
    store.definitions.create_group("card_stats", entity="card", event_time_column="ts", ttl_seconds=86400)
    store.definitions.register_feature("card_stats", "age", "int")
    store.definitions.register_feature("card_stats", "country", "string")
    rng = np.random.default_rng(0)
    now = datetime.now(UTC)
    store.ingest("card_stats", pd.DataFrame({
        "card_id": np.arange(CARDS), "ts": [now - timedelta(minutes=1)] * CARDS,
        "age": rng.integers(18, 80, CARDS), "country": rng.choice(["NL", "DE", "FR", "US"], CARDS),
    }))  # fmt: skip
    store.materialize("card_stats", end=now + timedelta(seconds=1))
    store.close()
    declare_features(registry, "fraud", 2, ["card_stats:age", "card_stats:country"])
    return registry


async def call(app: Any, path: str, body: bytes) -> int:
    status = 0
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    scope = {
        "type": "http", "method": "POST", "path": path, "raw_path": path.encode(), "query_string": b"",
        "headers": [(b"content-type", b"application/json")], "http_version": "1.1", "scheme": "http",
        "server": ("127.0.0.1", 80), "client": ("127.0.0.1", 1), "root_path": "", "app": app,
    }  # fmt: skip
    await app(scope, receive, send)
    return status


def measure(online_url: str, repeats: int) -> dict[str, Any]:
    from serving.app import create_app
    from serving.config import ServeSettings
    from serving.protocol import Batch

    registry = setup(online_url)
    app = create_app(ServeSettings(log_predictions=False), registry=registry)
    state = app.state.serving
    state.start()
    loaded = state.cache.get("fraud", "2")
    plan = state.features.plan("fraud", 2, loaded.spec)
    rng = np.random.default_rng(1)
    cards = rng.integers(0, CARDS, repeats + 200)
    lookups = []
    for i, card in enumerate(cards):
        given = Batch({"card_id": np.array([card]), "amount": np.array([120.0])}, 1)
        start = time.perf_counter()
        state.features.fill(plan, given)
        if i >= 200:
            lookups.append(time.perf_counter() - start)

    def body(card: int | None) -> bytes:
        inputs = [{"name": "amount", "shape": [1], "datatype": "FP64", "data": [120.0]}]
        if card is None:
            inputs += [{"name": "age", "shape": [1], "datatype": "INT64", "data": [31]},
                       {"name": "country", "shape": [1], "datatype": "BYTES", "data": ["NL"]}]  # fmt: skip
        else:
            inputs.append({"name": "card_id", "shape": [1], "datatype": "INT64", "data": [int(card)]})
        return json.dumps({"inputs": inputs}).encode()

    async def run() -> tuple[list[float], list[float]]:
        plain, filled = [], []
        for i, card in enumerate(cards):  # interleaved, so both see the same machine
            for version, payload, out in (("1", body(None), plain), ("2", body(int(card)), filled)):
                start = time.perf_counter()
                status = await call(app, f"/v2/models/fraud/versions/{version}/infer", payload)
                if status != 200:
                    raise RuntimeError(f"status {status}")
                if i >= 200:
                    out.append(time.perf_counter() - start)
        return plain, filled

    plain, filled = asyncio.run(run())
    state.close()
    p, f = pct(plain), pct(filled)
    return {
        "lookup": pct(lookups),
        "request_all_inputs": p,
        "request_filled": f,
        "added_p50_ms": f["p50_ms"] - p["p50_ms"],
        "added_p99_ms": f["p99_ms"] - p["p99_ms"],
    }


def _drop_redis_keys(url: str) -> None:
    try:
        import redis

        base, _, prefix = url.partition("?prefix=")
        client = redis.Redis.from_url(base)
        keys = list(client.scan_iter(match=f"{prefix}*", count=5000))
        for i in range(0, len(keys), 5000):
            client.delete(*keys[i : i + 5000])
        client.close()
    except Exception:  # nothing to clean
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5000)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    report: dict[str, Any] = {"target_lookup_p99_ms": 1.0}
    for name in ("sqlite", "redis"):
        os.environ["MLOPS_HOME"] = tempfile.mkdtemp(prefix=f"feature-serving-{name}-")
        url = (
            f"sqlite:///{os.environ['MLOPS_HOME']}/online.db"
            if name == "sqlite"
            else f"{args.redis_url}?prefix=bench-{uuid.uuid4().hex[:8]}:"
        )
        try:
            report[name] = measure(url, args.repeats)
        except Exception as exc:  # no Redis server: say so
            report[name] = {"error": f"{type(exc).__name__}: {exc}"}
        if name == "redis":
            _drop_redis_keys(url)
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
