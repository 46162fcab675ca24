"""Registry benchmark: this project's registry against MLflow 3's, both on SQLite.

Builds the same registry on both sides (``--versions`` versions spread
round-robin over ``--models`` models, each version with two tags, three
metrics and optionally one artifact), then measures per-call latency of:

* create a version (every create of the build is timed),
* get a version by alias,
* search by stage (one page of 100),
* search by tag (one page of 100), and by a tag only one version carries,
* one model's versions, page size 100: the first page and a later page
  reached through a page token,
* one model's versions in one page of 1,000 (MLflow: "search by name").

Each read is called ``--repeats`` times per side, ours and MLflow's in
alternating blocks so both see the same machine noise. The creates of the two
sides are interleaved one by one for the same reason. Ratios are MLflow's
latency over ours (so 5.0 means ours is five times faster).

MLflow is optional (the ``bench`` extra); without it, or with
``--skip-mlflow``, only our side runs.

Usage:
    .venv/bin/python benchmarks/registry.py [--versions 10000] [--models 10] [--repeats 200]
                                            [--skip-mlflow] [--json OUT]
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import platform
import random
import shutil
import sqlite3
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

TEAMS = ("fraud", "risk", "growth", "search", "ads")
STAGING_EVERY = 10  # version numbers divisible by this go to staging ...
PRODUCTION_EVERY = 50  # ... and those divisible by this on to production
ALIASES = ("champion", "challenger")
BLOCK = 10  # calls per side before switching to the other side
WARMUP = 5  # untimed calls per side and operation
TARGET = 5.0


# --------------------------------------------------------------------------- data
@dataclass(frozen=True)
class VersionSpec:
    """What version ``index`` (0-based, creation order) looks like on both sides."""

    index: int
    model: str
    tags: dict[str, str]
    metrics: dict[str, float]
    payload: bytes


def model_name(k: int) -> str:
    return f"bench-model-{k:02d}"


def version_specs(versions: int, models: int, artifact_bytes: int, seed: int = 42) -> Iterator[VersionSpec]:
    """Versions in creation order: round-robin over the models, deterministic values."""
    rng = random.Random(seed)
    for i in range(versions):
        team = TEAMS[(i // models) % len(TEAMS)]
        metrics = {
            "auc": round(rng.uniform(0.6, 0.99), 4),
            "f1": round(rng.uniform(0.4, 0.95), 4),
            "latency_ms": round(rng.uniform(1.0, 50.0), 3),
        }
        payload = b""
        if artifact_bytes:
            head = f"version {i}\n".encode()
            payload = (head + rng.randbytes(artifact_bytes))[:artifact_bytes]
        yield VersionSpec(i, model_name(i % models), {"team": team, "run": str(i)}, metrics, payload)


def stage_of(number: int) -> str | None:
    """The stage a version number is moved to after the build (None: stays put)."""
    if number % PRODUCTION_EVERY == 0:
        return "production"
    if number % STAGING_EVERY == 0:
        return "staging"
    return None


# --------------------------------------------------------------------- statistics
def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def summary(samples: Sequence[float]) -> dict[str, float]:
    """p50/p99/mean in milliseconds and the sample count."""
    ms = [s * 1000.0 for s in samples]
    return {
        "p50_ms": percentile(ms, 50),
        "p99_ms": percentile(ms, 99),
        "mean_ms": sum(ms) / len(ms) if ms else float("nan"),
        "n": len(ms),
    }


# ----------------------------------------------------------------------- backends
class Backend:
    """One registry under test: the operations the benchmark times."""

    name = ""

    def create_model(self, name: str) -> None:
        raise NotImplementedError

    def create_version(self, spec: VersionSpec) -> int:
        raise NotImplementedError

    def move_stage(self, model: str, number: int, stage: str) -> None:
        raise NotImplementedError

    def set_tag(self, model: str, number: int, key: str, value: str) -> None:
        raise NotImplementedError

    def set_alias(self, model: str, alias: str, number: int) -> None:
        raise NotImplementedError

    def get_by_alias(self, model: str, alias: str) -> int:
        raise NotImplementedError

    def search_stage(self, stage: str, page_size: int) -> tuple[int, str | None]:
        raise NotImplementedError

    def search_tag(self, key: str, value: str, page_size: int) -> tuple[int, str | None]:
        raise NotImplementedError

    def list_versions(self, model: str, page_size: int, token: str | None) -> tuple[list[int], str | None]:
        raise NotImplementedError

    def close(self) -> None:
        pass


class Ours(Backend):
    """This project's registry (storage.registry.core.Registry)."""

    name = "ours"

    def __init__(self, home: Path) -> None:
        from storage.registry.core import Registry

        self.home = home
        self.reg = Registry.open(f"sqlite:///{home}/mlops.db", str(home / "artifacts"), actor="bench")

    def create_model(self, name: str) -> None:
        self.reg.create_model(name)

    def create_version(self, spec: VersionSpec) -> int:
        artifacts = {"model.bin": spec.payload} if spec.payload else None
        mv = self.reg.create_version(
            spec.model, framework="sklearn", metrics=spec.metrics, tags=spec.tags, artifacts=artifacts
        )
        return mv.number

    def move_stage(self, model: str, number: int, stage: str) -> None:
        self.reg.transition_stage(model, number, stage, allow_multiple=True)

    def set_tag(self, model: str, number: int, key: str, value: str) -> None:
        self.reg.set_version_tag(model, number, key, value)

    def set_alias(self, model: str, alias: str, number: int) -> None:
        self.reg.set_alias(model, alias, number)

    def get_by_alias(self, model: str, alias: str) -> int:
        return self.reg.get_version(model, f"@{alias}").number

    def search_stage(self, stage: str, page_size: int) -> tuple[int, str | None]:
        page = self.reg.search_versions(stage=stage, page_size=page_size)
        return len(page.items), page.next_token

    def search_tag(self, key: str, value: str, page_size: int) -> tuple[int, str | None]:
        page = self.reg.search_versions(tags={key: value}, page_size=page_size)
        return len(page.items), page.next_token

    def list_versions(self, model: str, page_size: int, token: str | None) -> tuple[list[int], str | None]:
        page = self.reg.list_versions(model, page_size=page_size, page_token=token)
        return [v.number for v in page.items], page.next_token

    def close(self) -> None:
        self.reg.db.dispose()


def _quiet_mlflow() -> None:
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
    os.environ.setdefault("MLFLOW_TRACKING_URI", "")  # never a server from the environment
    for noisy in ("mlflow", "alembic", "sqlalchemy"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module=r"mlflow(\..*)?")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)


def mlflow_version() -> str | None:
    """The installed MLflow's version, or None when it is not installed."""
    try:
        from importlib.metadata import PackageNotFoundError, version
    except ImportError:  # pragma: no cover
        return None
    try:
        return version("mlflow")
    except PackageNotFoundError:
        return None


class MLflow(Backend):
    """MLflow 3's model registry through MlflowClient on a SQLite file.

    Model versions carry no metrics of their own in MLflow (metrics belong to
    runs), so the same metric values are stored as version tags
    ``metric.<name>``: the same information travels with every version on both
    sides. ``search_model_versions`` cannot filter by stage in MLflow 3, so
    stage moves are made with ``transition_model_version_stage`` *and*
    recorded in a ``stage`` tag, and the stage search filters on that tag.
    """

    name = "mlflow"

    def __init__(self, home: Path) -> None:
        _quiet_mlflow()
        from mlflow import MlflowClient

        _quiet_mlflow()  # again: importing mlflow configures its own logger
        self.home = home
        uri = f"sqlite:///{home}/mlflow.db"
        self.client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        self.sources = home / "mlflow-artifacts"
        self.sources.mkdir(parents=True, exist_ok=True)
        self._stages = {"staging": "Staging", "production": "Production"}

    def create_model(self, name: str) -> None:
        self.client.create_registered_model(name)

    def create_version(self, spec: VersionSpec) -> int:
        tags = dict(spec.tags)
        tags.update({f"metric.{k}": repr(v) for k, v in spec.metrics.items()})
        source = self.sources / spec.model / f"v{spec.index}"
        if spec.payload:
            # The same bytes our side stores, written where the version points.
            source.mkdir(parents=True, exist_ok=True)
            (source / "model.bin").write_bytes(spec.payload)
        mv = self.client.create_model_version(spec.model, source=str(source), tags=tags)
        return int(mv.version)

    def move_stage(self, model: str, number: int, stage: str) -> None:
        self.client.transition_model_version_stage(model, str(number), self._stages[stage])

    def set_tag(self, model: str, number: int, key: str, value: str) -> None:
        self.client.set_model_version_tag(model, str(number), key, value)

    def set_alias(self, model: str, alias: str, number: int) -> None:
        self.client.set_registered_model_alias(model, alias, str(number))

    def get_by_alias(self, model: str, alias: str) -> int:
        return int(self.client.get_model_version_by_alias(model, alias).version)

    def search_stage(self, stage: str, page_size: int) -> tuple[int, str | None]:
        found = self.client.search_model_versions(f"tags.stage = '{stage}'", max_results=page_size)
        return len(found), found.token

    def search_tag(self, key: str, value: str, page_size: int) -> tuple[int, str | None]:
        found = self.client.search_model_versions(f"tags.{key} = '{value}'", max_results=page_size)
        return len(found), found.token

    def list_versions(self, model: str, page_size: int, token: str | None) -> tuple[list[int], str | None]:
        found = self.client.search_model_versions(
            f"name = '{model}'", max_results=page_size, order_by=["version_number DESC"], page_token=token
        )
        return [int(v.version) for v in found], found.token


# ------------------------------------------------------------------------ running
@dataclass
class Op:
    """One measured operation: per-side samples and the result size it returned."""

    key: str
    label: str
    samples: dict[str, list[float]] = field(default_factory=dict)
    items: dict[str, int] = field(default_factory=dict)


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


FREEZE_GC = True


@contextmanager
def _collected() -> Iterator[None]:
    """Start an operation's timing from a clean heap.

    Both registries live in this one process, so a full garbage collection
    triggered by either side would scan both libraries' import-time heaps
    (about 250,000 objects, ~100-200 ms here) and land in whichever call
    triggered it. Freezing what is alive now keeps each side's collections
    to the garbage it makes itself (``--no-gc-freeze`` turns this off).
    """
    gc.collect()
    if FREEZE_GC:
        gc.freeze()
    yield


def measure_reads(
    backends: Sequence[Backend],
    op: Op,
    calls: Callable[[Backend, int], Callable[[], Any]],
    repeats: int,
    size: Callable[[Any], int],
) -> None:
    """Time ``repeats`` calls per backend in alternating blocks of BLOCK calls."""
    for b in backends:
        op.samples[b.name] = []
        for j in range(WARMUP):
            out = calls(b, j)()
        op.items[b.name] = size(out)
    with _collected():
        done = 0
        rnd = 0
        while done < repeats:
            n = min(BLOCK, repeats - done)
            order = backends if rnd % 2 == 0 else list(reversed(backends))
            for b in order:
                for j in range(done, done + n):
                    fn = calls(b, j)
                    elapsed, _ = _timed(fn)
                    op.samples[b.name].append(elapsed)
            done += n
            rnd += 1


def build(
    backends: Sequence[Backend], args: argparse.Namespace, log: Callable[[str], None]
) -> tuple[Op, dict[str, float]]:
    """Create the models and every version, timing each create; returns the create op."""
    op = Op("create", "create version")
    for b in backends:
        op.samples[b.name] = []
    build_s = {b.name: 0.0 for b in backends}
    for k in range(args.models):
        for b in backends:
            b.create_model(model_name(k))
    step = max(1, args.versions // 10)
    started = time.perf_counter()
    with _collected():
        for spec in version_specs(args.versions, args.models, args.artifact_bytes):
            order = backends if spec.index % 2 == 0 else list(reversed(backends))
            numbers = set()
            for b in order:
                elapsed, number = _timed(lambda b=b, spec=spec: b.create_version(spec))
                op.samples[b.name].append(elapsed)
                build_s[b.name] += elapsed
                numbers.add(number)
            expected = spec.index // args.models + 1
            if numbers != {expected}:
                raise AssertionError(f"version {spec.index}: numbers {numbers}, expected {expected}")
            if (spec.index + 1) % step == 0:
                rate = ", ".join(f"{n} {s:.0f}s" for n, s in build_s.items())
                log(
                    f"  built {spec.index + 1}/{args.versions} ({rate}; {time.perf_counter() - started:.0f}s)"
                )
    for b in backends:
        op.items[b.name] = 1
    return op, build_s


def move_stages_and_aliases(backends: Sequence[Backend], args: argparse.Namespace) -> Op:
    """Move every STAGING_EVERY-th version to staging (every PRODUCTION_EVERY-th on to
    production, several per model), tag its stage, and point the aliases."""
    op = Op("transition", "stage transition (info)")
    for b in backends:
        op.samples[b.name] = []
    per_model = args.versions // args.models
    for k in range(args.models):
        model = model_name(k)
        for number in range(1, per_model + 1):
            target = stage_of(number)
            if target is None:
                continue
            path = ["staging"] if target == "staging" else ["staging", "production"]
            for b in backends:
                for stage in path:
                    elapsed, _ = _timed(lambda b=b, m=model, n=number, s=stage: b.move_stage(m, n, s))
                    op.samples[b.name].append(elapsed)
                b.set_tag(model, number, "stage", target)
        champion = max(n for n in range(1, per_model + 1) if stage_of(n) == "production")
        challenger = max(n for n in range(1, per_model + 1) if stage_of(n) == "staging")
        for b in backends:
            b.set_alias(model, "champion", champion)
            b.set_alias(model, "challenger", challenger)
    for b in backends:
        op.items[b.name] = 1
    return op


def run_reads(backends: Sequence[Backend], args: argparse.Namespace) -> list[Op]:
    models = [model_name(k) for k in range(args.models)]
    per_model = args.versions // args.models
    ops: list[Op] = []

    def count(out: Any) -> int:
        first = out[0]
        return len(first) if isinstance(first, list) else int(first)

    op = Op("get_alias", "get by alias")
    measure_reads(
        backends,
        op,
        lambda b, j: lambda: b.get_by_alias(models[j % len(models)], ALIASES[(j // len(models)) % 2]),
        args.repeats,
        lambda out: 1,
    )
    ops.append(op)

    op = Op("search_stage", "search by stage (page 100)")
    measure_reads(backends, op, lambda b, j: lambda: b.search_stage("production", 100), args.repeats, count)
    ops.append(op)

    op = Op("search_tag", "search by tag (page 100)")
    measure_reads(
        backends,
        op,
        lambda b, j: lambda: b.search_tag("team", TEAMS[j % len(TEAMS)], 100),
        args.repeats,
        count,
    )
    ops.append(op)

    # A tag that only one version carries: the version a given run produced.
    rare = random.Random(7).sample(range(args.versions), min(args.versions, 50))
    op = Op("search_tag_rare", "search by tag, 1 match")
    measure_reads(
        backends,
        op,
        lambda b, j: lambda: b.search_tag("run", str(rare[j % len(rare)]), 100),
        args.repeats,
        count,
    )
    ops.append(op)

    op = Op("list_first", "list model versions, 1st page of 100")
    measure_reads(
        backends,
        op,
        lambda b, j: lambda: b.list_versions(models[j % len(models)], 100, None),
        args.repeats,
        count,
    )
    ops.append(op)

    # A later page: walk to page `later` once (untimed) per model and keep its token.
    later = min(5, -(-per_model // 100))
    tokens: dict[str, dict[str, str | None]] = {}
    for b in backends:
        tokens[b.name] = {}
        for m in models:
            token: str | None = None
            for _ in range(later - 1):
                _, token = b.list_versions(m, 100, token)
            tokens[b.name][m] = token
    if later > 1:
        op = Op("list_later", f"list model versions, page {later} of 100 via token")
        measure_reads(
            backends,
            op,
            lambda b, j: (
                lambda: b.list_versions(models[j % len(models)], 100, tokens[b.name][models[j % len(models)]])
            ),
            args.repeats,
            count,
        )
        ops.append(op)

    full = min(per_model, 1000)
    op = Op("list_full", f"list model versions, one page of {full}")
    measure_reads(
        backends,
        op,
        lambda b, j: lambda: b.list_versions(models[j % len(models)], full, None),
        max(20, args.repeats // 4),
        count,
    )
    ops.append(op)
    return ops


def check_agreement(backends: Sequence[Backend], args: argparse.Namespace) -> None:
    """Both sides must hold the same registry before anything is compared."""
    per_model = args.versions // args.models
    for b in backends:
        assert b.get_by_alias(model_name(0), "champion") == max(
            n for n in range(1, per_model + 1) if stage_of(n) == "production"
        ), b.name
        numbers, _ = b.list_versions(model_name(0), 100, None)
        assert numbers == list(range(per_model, max(0, per_model - 100), -1)), (b.name, numbers[:5])
        n, _ = b.search_stage("production", 10_000)
        expected = args.models * (per_model // PRODUCTION_EVERY)
        assert n == expected, (b.name, n, expected)
        n, _ = b.search_tag("team", TEAMS[0], 10_000)
        expected = sum(1 for i in range(args.versions) if (i // args.models) % len(TEAMS) == 0)
        assert n == expected, (b.name, n, expected)
        n, _ = b.search_tag("run", str(args.versions - 1), 100)
        assert n == 1, (b.name, n)


def split_create(op: Op, last: int) -> Op:
    tail = Op("create_last", f"create version, last {last:,}")
    for name, samples in op.samples.items():
        tail.samples[name] = samples[-last:]
        tail.items[name] = 1
    return tail


# ------------------------------------------------------------------------ report
def machine() -> dict[str, Any]:
    return {
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "platform": platform.platform(),
        "processor": _cpu_model(),
        "mlflow": mlflow_version(),
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def results_of(ops: Sequence[Op]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for op in ops:
        row: dict[str, Any] = {"label": op.label, "items": op.items}
        for name, samples in op.samples.items():
            row[name] = summary(samples)
        if "ours" in row and "mlflow" in row:
            row["ratio_p50"] = row["mlflow"]["p50_ms"] / row["ours"]["p50_ms"]
            row["ratio_p99"] = row["mlflow"]["p99_ms"] / row["ours"]["p99_ms"]
            row["meets_target"] = row["ratio_p50"] >= TARGET
        out[op.key] = row
    return out


def table(results: dict[str, Any]) -> str:
    with_mlflow = any("mlflow" in r for r in results.values())
    head = ["operation", "ours p50", "ours p99"]
    if with_mlflow:
        head += ["mlflow p50", "mlflow p99", "x p50", "x p99", f">={TARGET:g}x"]
    rows = [head]
    for r in results.values():
        line = [r["label"], f"{r['ours']['p50_ms']:.2f}", f"{r['ours']['p99_ms']:.2f}"]
        if with_mlflow and "mlflow" in r:
            line += [
                f"{r['mlflow']['p50_ms']:.2f}",
                f"{r['mlflow']['p99_ms']:.2f}",
                f"{r['ratio_p50']:.1f}",
                f"{r['ratio_p99']:.1f}",
                "info" if "(info)" in r["label"] else ("yes" if r["meets_target"] else "NO"),
            ]
        rows.append(line)
    widths = [max(len(row[i]) for row in rows if i < len(row)) for i in range(len(head))]
    lines = []
    for n, row in enumerate(rows):
        cells = [c.ljust(widths[i]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(row)]
        lines.append("| " + " | ".join(cells) + " |")
        if n == 0:
            lines.append(
                "|" + "|".join(("-" * (w + 1)) + ("-" if i == 0 else ":") for i, w in enumerate(widths)) + "|"
            )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--versions", type=int, default=10_000, help="versions in all (default 10000)")
    p.add_argument("--models", type=int, default=10, help="models the versions are spread over (default 10)")
    p.add_argument("--repeats", type=int, default=200, help="timed calls per read and side (default 200)")
    p.add_argument(
        "--artifact-bytes",
        type=int,
        default=0,
        help="bytes of one artifact per version, stored on both sides (default 0: none)",
    )
    p.add_argument("--skip-mlflow", action="store_true", help="measure only our registry")
    p.add_argument("--workdir", default=None, help="where the SQLite files go (default: a new temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the databases afterwards")
    p.add_argument(
        "--no-gc-freeze",
        action="store_true",
        help="do not gc.freeze() the import-time heap before each timed operation",
    )
    p.add_argument("--json", dest="json_out", default=None, help="also write the results as JSON here")
    args = p.parse_args(argv)
    if args.versions < args.models or args.versions % args.models:
        p.error("--versions must be a positive multiple of --models")
    if args.versions // args.models < PRODUCTION_EVERY:
        p.error(f"need at least {PRODUCTION_EVERY} versions per model")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    global FREEZE_GC
    FREEZE_GC = not args.no_gc_freeze

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    use_mlflow = not args.skip_mlflow and mlflow_version() is not None
    if not args.skip_mlflow and not use_mlflow:
        log("mlflow is not installed (pip install '.[bench]'): measuring our registry only")
    home = Path(args.workdir or tempfile.mkdtemp(prefix="registry-bench-")).absolute()
    home.mkdir(parents=True, exist_ok=True)
    backends: list[Backend] = []
    try:
        backends.append(Ours(home / "ours"))
        if use_mlflow:
            backends.append(MLflow(home / "mlflow"))
        log(
            f"building {args.versions:,} versions over {args.models} models in {home} "
            f"({', '.join(b.name for b in backends)})"
        )
        create, build_s = build(backends, args, log)
        log("moving stages, tagging, setting aliases")
        transition = move_stages_and_aliases(backends, args)
        check_agreement(backends, args)
        log(f"timing reads ({args.repeats} calls per side and operation)")
        reads = run_reads(backends, args)
        last = max(1, args.versions // 10)
        ops = [create, split_create(create, last), *reads, transition]
        results = results_of(ops)
        report = {
            "machine": machine(),
            "config": {
                "versions": args.versions,
                "models": args.models,
                "versions_per_model": args.versions // args.models,
                "repeats": args.repeats,
                "artifact_bytes": args.artifact_bytes,
                "tags_per_version": 2,
                "metrics_per_version": 3,
                "staging_every": STAGING_EVERY,
                "production_every": PRODUCTION_EVERY,
                "gc_freeze": FREEZE_GC,
                "mlflow_stage_search": "tags.stage = '<stage>'",
                "mlflow_metrics": "version tags metric.<name>",
                "mlflow_list_order": "version_number DESC",
            },
            "build_seconds": build_s,
            "results": results,
        }
        print(
            f"\n{args.versions:,} versions over {args.models} models; "
            f"{args.repeats} timed calls per read; latencies in ms"
        )
        print(table(results))
        if args.json_out:
            Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json_out).write_text(json.dumps(report, indent=2))
            log(f"wrote {args.json_out}")
    finally:
        for b in backends:
            b.close()
        if not args.keep and args.workdir is None:
            shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
