"""Many-models benchmark: 1,000 small ONNX models behind one server, requests drawn from a Zipf law.

Serving thousands of models from one process needs the loaded versions bounded
by memory (``mlops serve --max-model-memory``, :mod:`serving.models`). This
registers ``--models`` models (a 3-feature ``LogisticRegression`` exported to
ONNX once; each model gets its own coefficients, so its own file: nothing is
shared through the registry's content addressing, and the server loads every
version into sessions of its own), then starts ``mlops serve`` in its own
process twice:

* **bounded**: ``--max-model-memory`` set to hold ``--hold`` models (by the
  cache's own estimate of one model);
* **unbounded**: a bound no run reaches (1 TiB).

Each run sends the same ``--requests`` single-row records requests
(``POST /v1/models/{name}/predict``) from ``--clients`` keep-alive clients,
the model of each request drawn from a bounded Zipf law over the names
(P(rank k) ∝ 1/k^s, ``--zipf-s`` 1.1, ranks shuffled over the names). Reported
per run: latency p50/p99 (all requests, and the misses that loaded a model),
hit rate (1 - loads/requests, the cache's own counters from ``/metrics``),
loads and evictions, loaded versions and their estimated bytes, and the server's
resident memory (psutil) after a one-request warm-up (ONNX Runtime imported,
one version loaded) and at the end. Unbounded, the resident growth per load is
what one version really costs, to set beside the cache's estimate
(``estimated_bytes_per_model``).

Usage:
    .venv/bin/python benchmarks/many_models.py [--models 1000] [--requests 10000] [--hold 150]
                                              [--clients 1] [--zipf-s 1.1] [--json OUT]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.serving import free_port, stop, wait_http  # noqa: E402

COLUMNS = ("x0", "x1", "x2")
#: A bound no run reaches: the unbounded side.
NO_BOUND = "1TiB"


def model_files(count: int, seed: int = 0) -> list[bytes]:
    """``count`` ONNX logistic regressions: one export, a different coefficient vector each."""
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(200, len(COLUMNS))).astype(np.float32)
    clf = LogisticRegression().fit(x, (x @ np.array([1.0, -0.5, 0.25]) > 0).astype(np.int64))
    proto = to_onnx(clf, x[:1], options={id(clf): {"zipmap": False}}, target_opset=17)
    coefficients = next(a for a in proto.graph.node[0].attribute if a.name == "coefficients")
    base = np.asarray(coefficients.floats)
    files = []
    for _ in range(count):
        coefficients.floats[:] = (base + rng.normal(0, 0.1, base.shape)).tolist()
        files.append(proto.SerializeToString())
    return files


def register(home: Path, count: int) -> tuple[list[str], int]:
    """Register ``count`` models of one version each; their names and one model's file bytes."""
    from storage.registry.core import Registry

    registry = Registry.open(f"sqlite:///{home}/mlops.db", str(home / "artifacts"), actor="bench")
    signature = {
        "inputs": [{"name": c, "type": "float"} for c in COLUMNS],
        "task": "classification",
        "classes": [0, 1],
    }
    names = [f"m{i:04d}" for i in range(count)]
    files = model_files(count)
    for name, data in zip(names, files, strict=True):
        registry.create_model(name)
        registry.create_version(name, framework="onnx", artifacts={"model.onnx": data}, signature=signature)
    checked = names[:50]
    if len({registry.get_version(n, 1).artifacts[0].sha256 for n in checked}) != len(checked):
        raise RuntimeError("the models share files: each must have its own coefficients")
    return names, max(len(f) for f in files)


def zipf_draws(count: int, names: int, s: float, seed: int) -> np.ndarray:
    """``count`` indexes into ``names`` names: a bounded Zipf law over ranks, ranks shuffled."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, names + 1) ** s
    ranks = rng.choice(names, size=count, p=weights / weights.sum())
    return rng.permutation(names)[ranks]


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(f"{name} "):
            return float(line.split()[1])
    raise KeyError(name)


def scrape(port: int) -> dict[str, float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    conn.close()
    keys = ("mlops_loaded_versions", "mlops_loaded_model_bytes", "mlops_model_loads_total",
            "mlops_model_evictions_total")  # fmt: skip
    return {k: metric(text, k) for k in keys}


def send_all(port: int, names: list[str], draws: np.ndarray, clients: int) -> list[tuple[float, str]]:
    """Send one request per draw from ``clients`` keep-alive clients; (seconds, name) of each."""
    rng = np.random.default_rng(7)
    rows = rng.normal(size=(len(draws), len(COLUMNS))).round(3)
    results: list[list[tuple[float, str]]] = [[] for _ in range(clients)]
    errors: list[str] = []

    def worker(i: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        for j in range(i, len(draws), clients):
            name = names[draws[j]]
            body = json.dumps({"instances": [dict(zip(COLUMNS, rows[j].tolist(), strict=True))]})
            start = time.perf_counter()
            conn.request("POST", f"/v1/models/{name}/predict", body, {"Content-Type": "application/json"})
            response = conn.getresponse()
            payload = response.read()
            results[i].append((time.perf_counter() - start, name))
            if response.status != 200:
                errors.append(f"{name}: {response.status} {payload[:200]!r}")
        conn.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(f"{len(errors)} requests failed, first: {errors[0]}")
    return [r for per in results for r in per]


def run(home: Path, limit: str, names: list[str], draws: np.ndarray, clients: int) -> dict[str, Any]:
    """One server with ``--max-model-memory limit``, the requests, its figures."""
    import psutil

    port = free_port()
    env = {**os.environ, "MLOPS_HOME": str(home), "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "mlops.cli", "serve", "--port", str(port), "--no-log",
               "--max-model-memory", limit]  # fmt: skip
    proc = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_http(f"http://127.0.0.1:{port}/v2/health/ready", proc=proc)
        server = psutil.Process(proc.pid)
        send_all(port, names, draws[:1], 1)  # warm-up: ONNX Runtime imported, one version loaded
        before = scrape(port)
        rss_start = server.memory_info().rss
        started = time.perf_counter()
        samples = send_all(port, names, draws, clients)
        seconds = time.perf_counter() - started
        figures = {k: v - before[k] if k.endswith("_total") else v for k, v in scrape(port).items()}
        rss_end = server.memory_info().rss
    finally:
        stop(proc)
    seen: set[str] = {names[draws[0]]}
    first = []  # a model's first request always loads it (with a bound, later ones may too)
    for latency, name in samples:
        if name not in seen:
            seen.add(name)
            first.append(latency)
    latencies = np.asarray([s for s, _ in samples]) * 1000
    loads, requests = figures["mlops_model_loads_total"], len(samples)
    return {
        "max_model_memory": limit,
        "requests": requests,
        "requests_per_s": requests / seconds,
        "p50_ms": float(np.percentile(latencies, 50)),
        "p99_ms": float(np.percentile(latencies, 99)),
        "first_request_p50_ms": float(np.percentile(np.asarray(first) * 1000, 50)),
        "hit_rate": 1 - loads / requests,
        "models_requested": len(seen),
        "loads": int(loads),
        "evictions": int(figures["mlops_model_evictions_total"]),
        "loaded_versions": int(figures["mlops_loaded_versions"]),
        "estimated_mb": figures["mlops_loaded_model_bytes"] / 1e6,
        "rss_after_warm_up_mb": rss_start / 1e6,
        "rss_end_mb": rss_end / 1e6,
        # Resident growth per version loaded during the run (unbounded: the real size of one version).
        "rss_growth_per_load_kb": (rss_end - rss_start) / max(loads, 1) / 1e3,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--hold", type=int, default=150, help="models the bounded cache holds")
    parser.add_argument("--clients", type=int, default=1)
    parser.add_argument("--zipf-s", type=float, default=1.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    from serving.models import estimate_bytes

    home = Path(tempfile.mkdtemp(prefix="bench-many-models-"))
    started = time.perf_counter()
    names, file_bytes = register(home, args.models)
    one = estimate_bytes("onnx", file_bytes)
    results: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "models": args.models,
        "model_file_bytes": file_bytes,
        "estimated_bytes_per_model": one,
        "register_s": time.perf_counter() - started,
    }
    draws = zipf_draws(args.requests, args.models, args.zipf_s, args.seed)
    results["bounded"] = run(home, str(one * args.hold + one // 2), names, draws, args.clients)
    results["unbounded"] = run(home, NO_BOUND, names, draws, args.clients)
    results["total_s"] = time.perf_counter() - started
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text)
    return results


if __name__ == "__main__":
    main()
