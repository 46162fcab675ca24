"""Platform service benchmark: the registry over HTTP against MLflow 3's tracking server.

Both sides hold the same registry (``--versions`` versions round-robin over
``--models`` models; each version with two tags, three metrics and its
lineage: training data set, run and code version), and both run as their own
server process on 127.0.0.1 with SQLite: ours is ``service.server.serve``
(the platform service, API keys on), MLflow's is ``mlflow server`` (uvicorn,
one worker, proxied artifacts). One keep-alive ``http.client`` connection per
side sends the requests and times them:

* create a version with a small artifact (upload the bytes, then register);
* get a version by alias;
* search versions by tag (one page of 100);
* a page of 100 of one model's versions, newest first;
* the lineage of one version of a model with ``--versions / --models``
  siblings (MLflow: the version, then its run with the run's data sets).

Ours is seeded through ``storage.registry.core.Registry`` directly; MLflow
through its Python client on the SQLite file before its server starts, in a
subprocess under MLflow's own interpreter (``--mlflow-python``), so its pins
never meet ours (``benchmarks/api_mlflow.py``). The two seeds run at the same
time. Reads are timed in alternating blocks so both sides see the same
machine noise; ratios are MLflow's p50 over ours.

Usage:
    .venv/bin/python benchmarks/api.py [--versions 10000] [--models 10] [--repeats 200] [--creates 200]
                                       [--mlflow-cache DIR] [--skip-mlflow] [--json OUT]
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import http.client
import json
import os
import platform
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MLFLOW_PYTHON = ROOT / "benchmarks" / ".work" / "mlflow-venv" / "bin" / "python"
TEAMS = ("fraud", "risk", "growth", "search", "ads")
BLOCK = 10  # calls per side before the other side takes its turn
WARMUP = 5
TARGET_RATIO = 5.0
TARGET_LINEAGE_P95_MS = 50.0
ARTIFACT_BYTES = 4096
ALIASES = ("champion", "challenger")


# ----------------------------------------------------------------------------- data
def model_name(k: int) -> str:
    return f"bench-model-{k:02d}"


def spec(i: int, models: int) -> dict[str, Any]:
    """Version ``i`` (0-based creation order), the same on both sides."""
    rng = random.Random(i)
    model, number = model_name(i % models), i // models + 1
    data = f"{model}/train-{number // 100:03d}"
    return {
        "model": model,
        "number": number,
        "tags": {"team": TEAMS[(i // models) % len(TEAMS)], "run": str(i)},
        "metrics": {
            "auc": round(rng.uniform(0.6, 0.99), 4),
            "f1": round(rng.uniform(0.4, 0.95), 4),
            "latency_ms": round(rng.uniform(1.0, 50.0), 3),
        },
        "dataset_uri": f"s3://bench-data/{data}.parquet",
        "dataset_hash": hashlib.sha256(data.encode()).hexdigest(),
        "code_version": hashlib.sha1(f"commit-{number // 10}".encode()).hexdigest(),
        "flow_run_id": str(uuid.UUID(int=i + 1)),
    }


def aliases(per_model: int) -> dict[str, int]:
    return {"champion": max(1, per_model // 2), "challenger": per_model}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    pos = (len(ordered) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def summary(samples: list[float]) -> dict[str, float]:
    ms = [s * 1000.0 for s in samples]
    return {
        "p50_ms": percentile(ms, 50),
        "p95_ms": percentile(ms, 95),
        "p99_ms": percentile(ms, 99),
        "n": len(ms),
    }


# --------------------------------------------------------------------------- seeding
def seed_ours(home: Path, versions: int, models: int) -> tuple[str, float]:
    """Our registry in ``home`` (the layout ``MLOPS_HOME`` names); returns a contributor key and seconds."""
    from storage.keys import ApiKeyStore
    from storage.registry.core import Registry

    started = time.perf_counter()
    reg = Registry.open(f"sqlite:///{home}/mlops.db", str(home / "artifacts"), actor="bench")
    for k in range(models):
        reg.create_model(model_name(k))
    for i in range(versions):
        s = spec(i, models)
        reg.create_version(
            s["model"],
            framework="sklearn",
            metrics=s["metrics"],
            tags=s["tags"],
            dataset_uri=s["dataset_uri"],
            dataset_hash=s["dataset_hash"],
            code_version=s["code_version"],
            flow_run_id=s["flow_run_id"],
            parent_version=s["number"] - 1 if s["number"] > 1 else None,
        )
    for k in range(models):
        for alias, number in aliases(versions // models).items():
            reg.set_alias(model_name(k), alias, number)
    secret, _ = ApiKeyStore(reg.db).create("bench", "contributor", actor="bench")
    reg.db.dispose()
    return secret, time.perf_counter() - started


# ---------------------------------------------------------------------------- servers
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


SERVE_OURS = (
    "import sys; from service.config import ServiceSettings; from service.server import serve; "
    "serve(ServiceSettings(host='127.0.0.1', port=int(sys.argv[1])))"
)


def start_ours(home: Path, port: int) -> subprocess.Popen[bytes]:
    """``service.server.serve`` in its own process over the state in ``home``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLOPS_")}
    env.update({"MLOPS_HOME": str(home), "PYTHONPATH": str(ROOT), "MLOPS_USER": "bench"})
    command = [sys.executable, "-c", SERVE_OURS, str(port)]
    return subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop a server and every process it started (MLflow's runs in its own session)."""
    try:
        if os.getpgid(proc.pid) == proc.pid:
            os.killpg(proc.pid, signal.SIGTERM)
        else:
            proc.terminate()
        proc.wait(20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        proc.kill()
        proc.wait()


def wait_http(port: int, path: str, proc: subprocess.Popen[bytes], timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server on port {port} exited with {proc.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", path)
            if conn.getresponse().status == 200:
                conn.close()
                return
        except OSError:
            pass
        time.sleep(0.25)
    raise RuntimeError(f"no answer on port {port} within {timeout} s")


class Http:
    """One keep-alive connection; every call reads the whole answer and checks its status.

    Both servers close a connection idle for 5 s (uvicorn's keep-alive timeout),
    which happens while the other side takes a slow turn: :meth:`fresh` opens a
    new one, untimed, before a side's block when it has been idle for 2 s.
    """

    def __init__(self, port: int, headers: dict[str, str] | None = None) -> None:
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        self.headers = headers or {}
        self.used = time.monotonic()

    def fresh(self) -> None:
        if time.monotonic() - self.used > 2.0:
            self.conn.close()
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
            self.conn.connect()

    def call(self, method: str, path: str, body: bytes | None = None, content_type: str = "") -> bytes:
        headers = dict(self.headers)
        if content_type:
            headers["Content-Type"] = content_type
        self.conn.request(method, path, body=body, headers=headers)
        response = self.conn.getresponse()
        data = response.read()
        self.used = time.monotonic()
        if response.status >= 300:
            raise RuntimeError(f"{method} {path} answered {response.status}: {data[:300]!r}")
        return data

    def get(self, path: str, **params: Any) -> Any:
        return json.loads(self.call("GET", f"{path}?{urlencode(params)}" if params else path))

    def post(self, path: str, body: Any) -> Any:
        return json.loads(self.call("POST", path, json.dumps(body).encode(), "application/json") or b"{}")

    def close(self) -> None:
        self.conn.close()


# ------------------------------------------------------------------------- operations
class Side:
    """The five operations on one server; each returns something comparable across sides."""

    name = ""

    def __init__(self, http_: Http, per_model: int, models: int) -> None:
        self.http, self.per_model, self.models = http_, per_model, models

    def create(self, j: int, payload: bytes) -> int:
        raise NotImplementedError

    def by_alias(self, model: str, alias: str) -> int:
        raise NotImplementedError

    def by_tag(self, team: str) -> int:
        raise NotImplementedError

    def page(self, model: str) -> list[int]:
        raise NotImplementedError

    def lineage(self, model: str, number: int) -> str:
        raise NotImplementedError


class Ours(Side):
    name = "ours"
    api = "/api/v1"

    def create(self, j: int, payload: bytes) -> int:
        s = spec(self.per_model * self.models + j, self.models)
        sha = hashlib.sha256(payload).hexdigest()
        self.http.call("PUT", f"{self.api}/artifacts/{sha}", payload, "application/octet-stream")
        body = {
            "framework": "sklearn",
            "metrics": s["metrics"],
            "tags": s["tags"],
            "artifacts": {"model.bin": {"sha256": sha, "size": len(payload)}},
            **{k: s[k] for k in ("dataset_uri", "dataset_hash", "code_version", "flow_run_id")},
        }
        return int(self.http.post(f"{self.api}/models/{quote(s['model'])}/versions", body)["number"])

    def by_alias(self, model: str, alias: str) -> int:
        return int(self.http.get(f"{self.api}/models/{model}/versions/{alias}")["number"])

    def by_tag(self, team: str) -> int:
        return len(self.http.get(f"{self.api}/versions", tag=f"team={team}", page_size=100)["items"])

    def page(self, model: str) -> list[int]:
        items = self.http.get(f"{self.api}/models/{model}/versions", page_size=100)["items"]
        return [int(v["number"]) for v in items]

    def lineage(self, model: str, number: int) -> str:
        found = self.http.get(f"{self.api}/models/{model}/versions/{number}/lineage")
        return str(found["versions"][0]["dataset"]["uri"])


def operations(per_model: int) -> dict[str, tuple[str, Callable[[Side, int], Any]]]:
    """Operation key -> (label, call j of it on a side)."""
    lineage_model = model_name(0)
    return {
        "get_by_alias": ("get by alias", lambda s, j: s.by_alias(model_name(j % s.models), ALIASES[j % 2])),
        "search_by_tag": ("search by tag (page of 100)", lambda s, j: s.by_tag(TEAMS[j % len(TEAMS)])),
        "page_100": ("a model's versions, page of 100", lambda s, j: s.page(model_name(j % s.models))),
        "lineage": (
            f"lineage of one version ({per_model:,} siblings)",
            lambda s, j: s.lineage(lineage_model, 1 + (j * 37) % per_model),
        ),
    }


def interleave(sides: list[Side], repeats: int, call: Callable[[Side, int], Any]) -> dict[str, list[float]]:
    """``repeats`` timed calls per side in alternating blocks.

    WARMUP untimed calls (``j`` past the timed ones) come first, and their answers must agree.
    """
    samples: dict[str, list[float]] = {s.name: [] for s in sides}
    for j in range(repeats, repeats + WARMUP):
        answers = {s.name: call(s, j) for s in sides}
        if len({json.dumps(a) for a in answers.values()}) > 1:
            raise AssertionError(f"the sides disagree on call {j}: {answers}")
    gc.collect()
    done = 0
    while done < repeats:
        n = min(BLOCK, repeats - done)
        order = sides if (done // BLOCK) % 2 == 0 else list(reversed(sides))
        for side in order:
            side.http.fresh()
            for j in range(done, done + n):
                started = time.perf_counter()
                call(side, j)
                samples[side.name].append(time.perf_counter() - started)
        done += n
    return samples


def run_benchmark(args: argparse.Namespace, work: Path, log: Callable[[str], None]) -> dict[str, Any]:
    home = work / "ours"
    home.mkdir()
    per_model = args.versions // args.models
    finish_mlflow: Callable[[], dict[str, Any]] | None = None
    with_mlflow = not args.skip_mlflow and args.mlflow_python.exists()
    if with_mlflow:
        import api_mlflow

        finish_mlflow = api_mlflow.begin_seed(args.mlflow_python, work, args.versions, args.models,
                                              args.mlflow_cache, log)  # fmt: skip
    key, ours_seed_s = seed_ours(home, args.versions, args.models)
    log(f"seeded ours: {args.versions} versions in {ours_seed_s:.1f} s")
    result: dict[str, Any] = {"seed_s": {"ours": ours_seed_s}}
    run_ids: dict[str, str] = {}
    if finish_mlflow is not None:
        seeded = finish_mlflow()
        result["seed_s"]["mlflow"] = seeded["seconds"]
        result["mlflow_seed_from_cache"] = seeded.get("from_cache", False)
        run_ids = seeded["run_ids"]
    procs: list[subprocess.Popen[bytes]] = []
    clients: list[Http] = []
    try:
        port = free_port()
        procs.append(start_ours(home, port))
        wait_http(port, "/api/v1/health", procs[-1])
        clients.append(Http(port, {"Authorization": f"Bearer {key}"}))
        sides: list[Side] = [Ours(clients[-1], per_model, args.models)]
        if with_mlflow:
            mport = free_port()
            procs.append(api_mlflow.start_server(args.mlflow_python, work, mport))
            wait_http(mport, "/health", procs[-1])
            clients.append(Http(mport))
            sides.append(api_mlflow.MLflow(clients[-1], per_model, args.models, run_ids))
        gc.freeze()
        ops: dict[str, dict[str, Any]] = {}
        for key_, (label, call) in operations(per_model).items():
            log(f"timing {label}")
            samples = interleave(sides, args.repeats, call)
            ops[key_] = {"label": label, **{n: summary(v) for n, v in samples.items()}}
        log(f"timing {args.creates} creates per side")
        payloads = [random.Random(j).randbytes(ARTIFACT_BYTES) for j in range(args.creates + WARMUP)]
        samples = interleave(sides, args.creates, lambda s, j: s.create(j, payloads[j]))
        ops["create_version"] = {
            "label": f"create version ({ARTIFACT_BYTES} B artifact: upload + register)",
            **{n: summary(v) for n, v in samples.items()},
        }
        result["operations"] = ops
    finally:
        for c in clients:
            c.close()
        for p in procs:
            stop(p)
    return result


def table(ops: dict[str, dict[str, Any]]) -> str:
    lines = [
        "| operation | ours p50 | ours p95 | MLflow p50 | MLflow p95 | MLflow/ours p50 | ≥ 5x? |",
        "|---|---:|---:|---:|---:|---:|:---:|",
    ]
    for key in ("create_version", "get_by_alias", "search_by_tag", "page_100", "lineage"):
        op = ops[key]
        ours, theirs = op["ours"], op.get("mlflow")
        if theirs:
            ratio = theirs["p50_ms"] / ours["p50_ms"]
            met = "yes" if ratio >= TARGET_RATIO else "no"
            cells = f"{theirs['p50_ms']:.2f} | {theirs['p95_ms']:.2f} | {ratio:.1f}x | {met}"
        else:
            cells = "– | – | – | –"
        lines.append(f"| {op['label']} | {ours['p50_ms']:.2f} | {ours['p95_ms']:.2f} | {cells} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--versions", type=int, default=10_000)
    parser.add_argument("--models", type=int, default=10)
    parser.add_argument(
        "--mlflow-cache", type=Path, help="keep MLflow's seeded database here and reuse it (it seeds slowly)"
    )
    parser.add_argument("--repeats", type=int, default=200, help="timed calls per side and read")
    parser.add_argument("--creates", type=int, default=200, help="timed creates per side")
    parser.add_argument("--mlflow-python", type=Path, default=DEFAULT_MLFLOW_PYTHON)
    parser.add_argument("--skip-mlflow", action="store_true")
    parser.add_argument("--workdir", type=Path, help="keep the state here (default: a temporary folder)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="mlops-api-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - started:7.1f}s] {message}", file=sys.stderr, flush=True)

    result: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "load_average_1m_at_start": os.getloadavg()[0],
        },
        "args": {k: str(v) for k, v in vars(args).items()},
    }
    try:
        result.update(run_benchmark(args, work, log))
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    result["machine"]["load_average_1m_at_end"] = os.getloadavg()[0]
    lineage_p95 = result["operations"]["lineage"]["ours"]["p95_ms"]
    result["checks"] = {
        "lineage_p95_ms": lineage_p95,
        "lineage_under_50ms": lineage_p95 < TARGET_LINEAGE_P95_MS,
    }
    print(table(result["operations"]))
    print(json.dumps(result["checks"]))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
