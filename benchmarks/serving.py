"""Serving benchmark: the same 100-tree GradientBoosting in process, behind our server, behind MLflow's.

The model is the demo card-fraud pipeline of :mod:`serving.testing` (scaled
numbers + one-hot country, ``GradientBoostingClassifier(n_estimators=100)``),
trained on ``--train-rows`` rows and exported to ONNX. Measured:

* **in process** (the limit): ONNX Runtime's ``session.run`` on prepared
  arrays — single rows (p50/p99) and 10,000-row batches (rows/s);
* **our server** (``mlops serve`` in its own process, prediction log on,
  ONNX runtime): Open Inference Protocol requests with one tensor per column,
  single rows at 1 and ``--clients`` concurrent clients (p50/p99, requests/s),
  and 10,000-row batches (rows/s);
* **MLflow** (``mlflow models serve --env-manager local`` on the same pipeline
  saved with ``mlflow.sklearn``, ``/invocations`` with ``dataframe_split``), the
  same requests, when MLflow is installed (the ``bench`` extra);
* **MLServer** 1.7 (Seldon's Open Inference Protocol server, in its own
  virtualenv: ``--mlserver-python``) serving the same pipeline with its
  scikit-learn runtime (``content_type: pd``), single rows and batches over REST;
* **ours over gRPC** (``--grpc-port``, tritonclient's grpc client, raw tensors)
  beside REST;
* **router overhead**: :meth:`serving.traffic.TrafficRouter.route` plus
  :meth:`~serving.traffic.TrafficRouter.observe` on a two-variant A/B endpoint,
  per request, in process; and single-row latency through that endpoint
  against the model named directly.

Clients are keep-alive ``http.client`` connections, one per thread, in the
benchmark's process (the same client for every side); the servers run in their own processes on the same
machine, so clients and servers share its cores. Every measurement
interleaves the sides (``--rounds`` turns each for single rows, batch by
batch for batches), so a busy moment of the machine falls on all of them;
requests/s is the requests of a side over the time spent on that side.

Usage:
    .venv/bin/python benchmarks/serving.py [--requests 2000] [--clients 8] [--batches 20] [--rounds 10]
                                           [--skip-mlflow] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

TARGETS = {
    "router_overhead_ms": 0.1,
    "single_row_p99_ms_1_client": 5.0,
    "throughput_vs_mlflow": 10.0,
    "batch_vs_in_process": 0.5,
    "throughput_vs_mlserver": 2.0,
}
DEFAULT_MLSERVER_PYTHON = ROOT / "benchmarks" / ".work" / "mlserver-venv" / "bin" / "python"
#: MLflow's figures quoted in the issue (same kind of machine, same model), used when MLflow cannot run here.
MLFLOW_QUOTED = {
    "rps_1": 82.0,
    "p50_ms_1": 12.0,
    "rps_8": 102.0,
    "p99_ms_8": 154.0,
    "batch_rows_per_s": 39_000.0,
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 120.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the server at {url} exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise RuntimeError(f"no answer from {url} within {timeout} s")


def percentiles(samples: list[float]) -> dict[str, float]:
    arr = np.asarray(samples) * 1000
    return {"p50_ms": float(np.percentile(arr, 50)), "p99_ms": float(np.percentile(arr, 99))}


def run_clients(
    send: Callable[[Any], None], make_client: Callable[[], Any], clients: int, total: int
) -> dict[str, Any]:
    """``total`` requests split over ``clients`` threads; latency percentiles and requests/s."""
    per = total // clients
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(clients + 1)

    def worker(i: int) -> None:
        client = make_client()
        try:
            for _ in range(20):  # warm the connection
                send(client)
            barrier.wait()
            out = latencies[i]
            for _ in range(per):
                t = time.perf_counter()
                send(client)
                out.append(time.perf_counter() - t)
        except BaseException as exc:  # reported below
            errors.append(exc)
            with_barrier = barrier.n_waiting
            if with_barrier:
                barrier.abort()
        finally:
            client.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    if errors:
        raise RuntimeError(f"client failed: {errors[0]!r}")
    flat = [x for part in latencies for x in part]
    return {"latencies": flat, "wall_s": wall}


# ------------------------------------------------------------------ the model
def build(home: Path, train_rows: int) -> dict[str, Any]:
    """Train the 100-tree model, register its ONNX export, save it for MLflow."""
    from serving.testing import demo_files, demo_frame, demo_pipeline, demo_target
    from storage.registry.core import Registry
    from storage.registry.model_format import signature_for

    registry = Registry.open(f"sqlite:///{home}/mlops.db", str(home / "artifacts"), actor="bench")
    frame = demo_frame(train_rows)
    registry.create_model("fraud")
    files = demo_files("onnx", rows=train_rows, n_estimators=100)
    registry.create_version(
        "fraud",
        framework="onnx",
        artifacts=files,
        signature=signature_for(frame.head(), "classification", [0, 1]),
    )
    registry.set_alias("fraud", "champion", 1)
    from storage.endpoints.store import EndpointStore, VariantSpec

    EndpointStore(registry.db).create(
        "fraud-ab", [VariantSpec("a", "fraud", "1", 50), VariantSpec("b", "fraud", "1", 50)], policy="ab"
    )
    pipeline = demo_pipeline(frame, demo_target(frame), n_estimators=100)
    return {"registry": registry, "onnx": files["model.onnx"], "pipeline": pipeline}


def oip_body(frame: Any) -> bytes:
    n = len(frame)
    body = {
        "inputs": [
            {"name": "amount", "shape": [n, 1], "datatype": "FP64", "data": frame["amount"].tolist()},
            {"name": "age", "shape": [n, 1], "datatype": "INT64", "data": frame["age"].tolist()},
            {"name": "country", "shape": [n, 1], "datatype": "BYTES", "data": frame["country"].tolist()},
        ]
    }
    return json.dumps(body).encode()


def mlflow_body(frame: Any) -> bytes:
    return json.dumps({"dataframe_split": frame.to_dict(orient="split", index=False)}).encode()


# ------------------------------------------------------------------ measurements
class Side:
    """One way of answering: an HTTP server (path, bodies) or ONNX Runtime in process."""

    def __init__(self, name: str, single: Callable[[Any], None], batch: Callable[[Any], None],
                 make: Callable[[], Any]) -> None:  # fmt: skip
        self.name, self.single, self.batch, self.make = name, single, batch, make


def http(
    name: str, url: str, path: str, single: bytes, batch: bytes, headers: dict[str, str] | None = None
) -> Side:
    """A server side, called through one keep-alive ``http.client`` connection per client thread.

    The standard library's client costs far less per request than httpx, so the
    figures are the servers', not the client's (all sides use the same client).
    """
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    hdrs = {"Content-Type": "application/json", **(headers or {})}

    def post(body: bytes) -> Callable[[http.client.HTTPConnection], None]:
        def go(conn: http.client.HTTPConnection) -> None:
            conn.request("POST", path, body=body, headers=hdrs)
            response = conn.getresponse()
            data = response.read()
            if response.status != 200:
                raise RuntimeError(f"{name} {path}: {response.status} {data[:200]!r}")

        return go

    def connect() -> http.client.HTTPConnection:
        return http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=300)

    return Side(name, post(single), post(batch), connect)


def in_process(onnx: bytes, single: Any, batch: Any) -> Side:
    """ONNX Runtime's ``session.run`` on prepared arrays (default session options): the limit."""
    import onnxruntime as ort

    session = ort.InferenceSession(onnx, providers=["CPUExecutionProvider"])

    def feeds(frame: Any) -> dict[str, np.ndarray]:
        return {
            "amount": frame[["amount"]].to_numpy(dtype=np.float32),
            "age": frame[["age"]].to_numpy(dtype=np.int64),
            "country": frame[["country"]].to_numpy(dtype=object),
        }

    one, many = feeds(single), feeds(batch)

    class Nothing:
        def close(self) -> None:
            pass

    return Side("in_process", lambda _: session.run(None, one), lambda _: session.run(None, many), Nothing)


def interleaved_single(sides: list[Side], clients: int, total: int, rounds: int) -> dict[str, dict[str, Any]]:
    """Single-row requests, the sides taking turns in ``rounds`` rounds so they share the machine's noise.

    Requests/s is requests over the time spent on that side.
    """
    per_round = max(clients, total // rounds)
    found: dict[str, list[dict[str, Any]]] = {s.name: [] for s in sides}
    for _ in range(rounds):
        for side in sides:
            found[side.name].append(run_clients(side.single, side.make, clients, per_round))
    out = {}
    for name, parts in found.items():
        lat = [x for part in parts for x in part["latencies"]]
        wall = sum(part["wall_s"] for part in parts)
        out[name] = {
            **percentiles(lat),
            "requests_per_s": len(lat) / wall,
            "requests": len(lat),
            "clients": clients,
        }
    return out


def interleaved_batches(sides: list[Side], batches: int, rows: int) -> dict[str, float]:
    """Rows/s of ``batches`` batches per side, the sides taking turns batch by batch."""
    clients = {s.name: s.make() for s in sides}
    spent = dict.fromkeys(clients, 0.0)
    try:
        for side in sides:
            side.batch(clients[side.name])  # warm
        for _ in range(batches):
            for side in sides:
                t = time.perf_counter()
                side.batch(clients[side.name])
                spent[side.name] += time.perf_counter() - t
    finally:
        for c in clients.values():
            c.close()
    return {name: batches * rows / seconds for name, seconds in spent.items()}


def router_overhead(registry: Any, calls: int = 100_000) -> dict[str, float]:
    from serving.traffic import TrafficRouter

    router = TrafficRouter(registry.db, refresh_s=1.0)
    try:
        keys = [f"user-{i}" for i in range(1000)]
        for k in keys:
            router.route("fraud-ab", k)
        start = time.perf_counter()
        for i in range(calls):
            route = router.route("fraud-ab", keys[i % 1000])
            router.observe(route.endpoint, route.variant, route.target, 1.0, True)  # type: ignore[union-attr]
        per = (time.perf_counter() - start) / calls * 1000
    finally:
        router.close()
    return {"route_and_observe_ms": per}


# ------------------------------------------------------------------ servers
def start_ours(home: Path, port: int, grpc_port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "MLOPS_HOME": str(home), "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "mlops.cli", "serve", "--port", str(port), "--model", "fraud",
               "--grpc-port", str(grpc_port)]  # fmt: skip
    return subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def start_mlflow(pipeline: Any, sample: Any, work: Path, port: int) -> subprocess.Popen[bytes]:
    import mlflow.sklearn

    path = work / "mlflow-model"
    mlflow.sklearn.save_model(pipeline, str(path), input_example=sample, serialization_format="cloudpickle")
    mlflow_bin = Path(sys.executable).with_name("mlflow")
    command = [str(mlflow_bin), "models", "serve", "-m", str(path), "-h", "127.0.0.1", "-p", str(port),
               "--env-manager", "local"]  # fmt: skip
    env = {**os.environ, "PATH": f"{mlflow_bin.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def start_mlserver(
    pipeline: Any, work: Path, python: Path, port: int, grpc_port: int
) -> subprocess.Popen[bytes]:
    """MLServer (its own virtualenv) serving the same pipeline with its scikit-learn runtime."""
    import joblib

    folder = work / "mlserver"
    model = folder / "fraud"
    model.mkdir(parents=True)
    joblib.dump(pipeline, model / "model.joblib")
    (model / "model-settings.json").write_text(json.dumps({
        "name": "fraud", "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": "./model.joblib"},
    }))  # fmt: skip
    (folder / "settings.json").write_text(json.dumps({
        "http_port": port, "grpc_port": grpc_port, "metrics_endpoint": None, "host": "127.0.0.1",
        "parallel_workers": 0,
    }))  # fmt: skip
    command = [str(python.with_name("mlserver")), "start", str(folder)]
    env = {**os.environ, "PATH": f"{python.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def mlserver_body(frame: Any) -> bytes:
    """An OIP request MLServer's scikit-learn runtime decodes into a DataFrame (its ``pd`` codec)."""
    n = len(frame)
    body = {
        "parameters": {"content_type": "pd"},
        "inputs": [
            {"name": "amount", "shape": [n], "datatype": "FP64", "data": frame["amount"].tolist()},
            {"name": "age", "shape": [n], "datatype": "INT64", "data": frame["age"].tolist()},
            {"name": "country", "shape": [n], "datatype": "BYTES", "data": frame["country"].tolist(),
             "parameters": {"content_type": "str"}},
        ],
    }  # fmt: skip
    return json.dumps(body).encode()


def grpc_side(name: str, port: int, single: Any, batch: Any) -> Side:
    """Our server over gRPC: tritonclient's grpc client, raw tensors, one channel per client thread."""
    import tritonclient.grpc as grpcclient

    def tensors(frame: Any) -> list[Any]:
        n = len(frame)
        out = []
        for col, dtype, np_dtype in (("amount", "FP64", np.float64), ("age", "INT64", np.int64),
                                     ("country", "BYTES", object)):  # fmt: skip
            t = grpcclient.InferInput(col, [n, 1], dtype)
            t.set_data_from_numpy(frame[[col]].to_numpy(dtype=np_dtype))
            out.append(t)
        return out

    one, many = tensors(single), tensors(batch)
    return Side(
        name,
        lambda client: client.infer("fraud", one),
        lambda client: client.infer("fraud", many),
        lambda: grpcclient.InferenceServerClient(f"127.0.0.1:{port}"),
    )


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--batch-rows", type=int, default=10_000)
    parser.add_argument("--train-rows", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=10, help="turns each side takes per measurement")
    parser.add_argument("--skip-mlflow", action="store_true")
    parser.add_argument("--mlserver-python", type=Path, default=DEFAULT_MLSERVER_PYTHON)
    parser.add_argument("--only", default="", help="comma-separated sides to run (default: all)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    from serving.testing import demo_frame

    work = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    home = work / "home"
    home.mkdir()
    os.environ["MLOPS_HOME"] = str(home)
    results: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "load_average_1m_at_start": os.getloadavg()[0],
        }
    }
    procs: list[subprocess.Popen[bytes]] = []
    try:
        built = build(home, args.train_rows)
        single, batch = demo_frame(1, seed=42), demo_frame(args.batch_rows, seed=43)
        results["router"] = router_overhead(built["registry"])
        port, gport = free_port(), free_port()
        procs.append(start_ours(home, port, gport))
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/v2/health/ready", proc=procs[-1])
        sides = [
            in_process(built["onnx"], single, batch),
            http("ours", url, "/v2/models/fraud/infer", oip_body(single), oip_body(batch)),
            grpc_side("ours_grpc", gport, single, batch),
            http("ours_via_endpoint", url, "/v2/models/fraud-ab/infer", oip_body(single), oip_body(batch),
                 {"X-Request-Key": "user-1"}),
        ]  # fmt: skip
        if args.mlserver_python.exists():
            sport, sgport = free_port(), free_port()
            procs.append(start_mlserver(built["pipeline"], work, args.mlserver_python, sport, sgport))
            surl = f"http://127.0.0.1:{sport}"
            wait_http(f"{surl}/v2/models/fraud/ready", timeout=180, proc=procs[-1])
            sides.append(http("mlserver", surl, "/v2/models/fraud/infer", mlserver_body(single),
                              mlserver_body(batch)))  # fmt: skip
        else:
            results["mlserver_skipped"] = f"no interpreter at {args.mlserver_python}"
        if args.skip_mlflow:
            results["mlflow_skipped"] = "--skip-mlflow"
        else:
            try:
                mport = free_port()
                procs.append(start_mlflow(built["pipeline"], single, work, mport))
                murl = f"http://127.0.0.1:{mport}"
                wait_http(f"{murl}/ping", timeout=180, proc=procs[-1])
                sides.append(http("mlflow", murl, "/invocations", mlflow_body(single), mlflow_body(batch)))
            except ImportError as exc:
                results["mlflow_skipped"] = f"mlflow not installed: {exc}"
        if args.only:
            keep = {*args.only.split(","), "ours", "in_process"}
            sides = [side for side in sides if side.name in keep]
        rounds = args.rounds
        results["single_1"] = interleaved_single(sides, 1, args.requests, rounds)
        results[f"single_{args.clients}"] = interleaved_single(
            [s for s in sides if s.name != "in_process"], args.clients, args.requests, rounds
        )
        results["batch_rows_per_s"] = interleaved_batches(
            [s for s in sides if s.name != "ours_via_endpoint"], args.batches, len(batch)
        )
    finally:
        for proc in procs:
            stop(proc)
        shutil.rmtree(work, ignore_errors=True)

    one, many, rows = results["single_1"], results[f"single_{args.clients}"], results["batch_rows_per_s"]
    if "mlserver" in one:
        results["vs_mlserver"] = {
            "target": TARGETS["throughput_vs_mlserver"],
            "rest_1_client": one["ours"]["requests_per_s"] / one["mlserver"]["requests_per_s"],
            f"rest_{args.clients}_clients": many["ours"]["requests_per_s"]
            / many["mlserver"]["requests_per_s"],
            "grpc_1_client": one["ours_grpc"]["requests_per_s"] / one["mlserver"]["requests_per_s"],
            f"grpc_{args.clients}_clients": many["ours_grpc"]["requests_per_s"]
            / many["mlserver"]["requests_per_s"],
        }
    measured = "mlflow" in one
    rps1 = one["mlflow"]["requests_per_s"] if measured else MLFLOW_QUOTED["rps_1"]
    rps8 = many["mlflow"]["requests_per_s"] if measured else MLFLOW_QUOTED["rps_8"]
    checks = {
        "router_overhead_ms": results["router"]["route_and_observe_ms"],
        "router_overhead_end_to_end_p50_ms": one.get("ours_via_endpoint", one["ours"])["p50_ms"]
        - one["ours"]["p50_ms"],
        "single_row_p99_ms_1_client": one["ours"]["p99_ms"],
        "throughput_vs_mlflow_1_client": one["ours"]["requests_per_s"] / rps1,
        f"throughput_vs_mlflow_{args.clients}_clients": many["ours"]["requests_per_s"] / rps8,
        "batch_vs_in_process": rows["ours"] / rows["in_process"],
        "mlflow_baseline": "measured" if measured else "quoted in the issue",
    }
    results["checks"] = checks
    results["machine"]["load_average_1m_at_end"] = os.getloadavg()[0]
    print(json.dumps(results, indent=1, default=str))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))
    return results


if __name__ == "__main__":
    main()
