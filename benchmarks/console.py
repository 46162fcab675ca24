"""Console benchmark: the server-side time of each main console page over a large registry.

Seeds ``--models`` models with ``--versions`` versions each through
:class:`storage.registry.core.Registry` (metrics, hyperparameters, a
production version and a ``champion`` alias on every model), then adds what the
other pages show: a pending and a decided approval request on 50 models,
alerts on 100 models, a month of daily drift and performance checks on one,
A/B, canary and blue-green endpoints with traffic counters, a feature group
materialized to the online store with statistics, and the audit log all of
that wrote (about 14,300 entries at the default size).

Each page is then requested in process through FastAPI's ``TestClient``
(the service app with its console, a signed-in session cookie; no network),
timing the whole request with ``time.perf_counter``: ``--warmup`` untimed
calls, then ``--repeats`` timed ones. The target is a p95 under 200 ms for
every page.

Usage:
    .venv/bin/python benchmarks/console.py [--models 1000] [--versions 10] [--repeats 50]
        [--warmup 5] [--json OUT] [--workdir DIR --keep]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TARGET_P95_MS = 200.0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=int, default=1000)
    parser.add_argument("--versions", type=int, default=10, help="versions per model")
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    return parser.parse_args(argv)


def seed_registry(registry: Any, models: int, versions: int, log: Callable[[str], None]) -> float:
    """Models and versions through the Registry; returns seconds spent."""
    start = time.perf_counter()
    for i in range(models):
        name = f"model-{i:04d}"
        registry.create_model(name, description=f"benchmark model {i}", owner=f"team-{i % 7}")
        for v in range(versions):
            registry.create_version(
                name,
                framework="xgboost",
                metrics={"auc_roc": 0.80 + 0.01 * v + (i % 10) / 1000, "f1": 0.5 + 0.01 * v},
                hyperparameters={"max_depth": 3 + v, "eta": 0.1},
            )
        registry.transition_stage(name, versions, "staging")
        registry.transition_stage(name, versions, "production", alias="champion")
        if (i + 1) % 100 == 0:
            log(f"  {i + 1:,} models, {(i + 1) * versions:,} versions, {time.perf_counter() - start:.0f} s")
    return time.perf_counter() - start


def seed_rest(registry: Any, settings: Any, models: int, versions: int) -> None:
    """Approvals, alerts, checks, endpoints and a feature group: the other pages' data."""
    import pandas as pd

    from blocks.policy import StagePolicy
    from storage.endpoints.store import EndpointStore, LatencyHistogram, StatsRow, VariantSpec
    from storage.features.store import FeatureStore
    from storage.governance.reports import ReportStore
    from storage.monitoring.alerts import AlertStore
    from storage.registry.approvals import ApprovalStore, GateOutcome

    approvals, alerts, reports = ApprovalStore(registry), AlertStore(registry), ReportStore(registry)
    gate = [GateOutcome("metric auc_roc >= 0.8", True, "ok")]
    for i in range(0, models, max(1, models // 50)):
        name = f"model-{i:04d}"
        done = approvals.open_request(
            name, versions - 1, "staging", requested_by="ana", policy=StagePolicy(), gates=gate
        )
        approvals.decide(done.id, "bo", "approve", "fine")
        approvals.open_request(
            name,
            versions - 2,
            "staging",
            requested_by="ana",
            policy=StagePolicy(required_approvals=2),
            gates=gate,
        )
    for i in range(0, models, max(1, models // 100)):
        severity = "critical" if i % 3 == 0 else "warning"
        alerts.raise_alert(
            f"model-{i:04d}", versions, kind="drift", severity=severity, subject="amount", message="KS"
        )
    now = datetime.now(UTC)
    for day in range(30, 0, -1):
        payload = {
            "drift_share": (day % 5) / 10,
            "drifted_columns": ["amount"] * (day % 2),
            "current_rows": 5000,
        }
        reports.save(
            "drift_check",
            "model-0000",
            versions,
            passed=day % 5 < 3,
            summary="drift",
            payload=payload,
            created_at=now - timedelta(days=day),
        )
        reports.save(
            "performance_check",
            "model-0000",
            versions,
            passed=True,
            summary="ok",
            payload={"labelled_rows": 900, "findings": []},
            created_at=now - timedelta(days=day),
        )
    endpoints = EndpointStore(registry.db, actor="bench")
    endpoints.create(
        "ab", [VariantSpec("a", "model-0000", "1", 50), VariantSpec("b", "model-0000", "2", 50)], policy="ab"
    )
    endpoints.record_outcomes("ab", [(f"r{i}", "ab"[i % 2], float(i % 7 == 0)) for i in range(2000)])
    endpoints.create("canary", [VariantSpec("main", "model-0001", "1", 100)])
    endpoints.start_canary("canary", "model-0001", "2")
    endpoints.create(
        "bg",
        [VariantSpec("blue", "model-0002", "1", 100), VariantSpec("green", "model-0002", "2", 0)],
        policy="blue_green",
    )
    for minute in range(60):
        hist = LatencyHistogram({100 + minute % 5: 100})
        rows = [
            StatsRow(e, v, f"r{minute}", 100, 1, 300.0, hist.counts, now - timedelta(minutes=minute))
            for e, vs in (("ab", "ab"), ("canary", ("stable", "canary")))
            for v in vs
        ]
        endpoints.flush_stats(rows)
    features = FeatureStore(
        registry.db, settings.resolved_feature_root(), settings.resolved_online_store_url()
    )
    features.definitions.create_entity("card", join_keys=["card_id"])
    features.definitions.create_group("activity", entity="card", event_time_column="ts", ttl_seconds=86400)
    for column in ("spend", "count"):
        features.definitions.register_feature("activity", column, "float")
    stamp = pd.Timestamp.now(tz="UTC").floor("s")
    frame = pd.DataFrame(
        {
            "card_id": range(10_000),
            "ts": [stamp - pd.Timedelta(seconds=s) for s in range(10_000)],
            "spend": [float(s % 97) for s in range(10_000)],
            "count": [float(s % 13) for s in range(10_000)],
        }
    )
    features.ingest("activity", frame)
    features.materialize("activity", end=(stamp + pd.Timedelta(seconds=1)).to_pydatetime())
    features.compute_statistics("activity", reference=True)
    features.online.close()


def pages(models: int, versions: int) -> list[tuple[str, str]]:
    """The timed pages: label and path (a model from the middle of the list)."""
    middle = f"model-{models // 2:04d}"
    return [
        ("models", "/models"),
        ("models sorted by last change", "/models?sort=-changed"),
        ("models search", "/models?q=model-09"),
        ("models, a later page", f"/models?page={max(1, models // 100)}"),
        ("model", f"/models/{middle}"),
        ("model compare", f"/models/{middle}?compare=1&compare={versions}"),
        ("version", f"/models/{middle}/versions/{versions}"),
        ("approvals", "/approvals"),
        ("endpoints", "/endpoints"),
        ("endpoint (A/B)", "/endpoints/ab"),
        ("endpoint (canary)", "/endpoints/canary"),
        ("endpoint live panel", "/endpoints/canary/live"),
        ("monitoring", "/monitoring?model=model-0000"),
        ("features", "/features"),
        ("audit", "/audit"),
        ("audit filtered", "/audit?action=alert.raise"),
    ]


def _pct(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def time_pages(client: Any, paths: list[tuple[str, str]], repeats: int, warmup: int) -> list[dict[str, Any]]:
    """p50/p95 of each page in milliseconds, timed around the whole in-process request."""
    results = []
    for label, path in paths:
        for _ in range(warmup):
            assert client.get(path).status_code == 200, path
        samples = []
        for _ in range(repeats):
            start = time.perf_counter()
            answer = client.get(path)
            samples.append((time.perf_counter() - start) * 1000)
            assert answer.status_code == 200, (path, answer.text[:300])
        results.append(
            {
                "page": label,
                "path": path,
                "p50_ms": round(statistics.median(samples), 1),
                "p95_ms": round(_pct(samples, 95), 1),
                "max_ms": round(max(samples), 1),
                "bytes": len(answer.content),
                "ok": _pct(samples, 95) < TARGET_P95_MS,
            }
        )
    return results


def machine() -> dict[str, Any]:
    import sqlite3

    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "platform": platform.platform(),
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    from fastapi.testclient import TestClient

    from blocks.settings import MlopsSettings
    from service.app import create_app
    from service.config import ServiceSettings
    from storage.registry.core import Registry

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    home = (args.workdir or Path(tempfile.mkdtemp(prefix="console-bench-"))).absolute()
    home.mkdir(parents=True, exist_ok=True)
    try:
        settings = MlopsSettings(home=home)
        registry = Registry.from_settings(settings)
        log(f"seeding {args.models:,} models x {args.versions} versions in {home}")
        seed_s = seed_registry(registry, args.models, args.versions, log)
        seed_rest(registry, settings, args.models, args.versions)
        app = create_app(ServiceSettings(port=0), settings=settings, registry=registry)
        key = app.state.keys.create("bench", "admin", actor="bench")[0]
        client = TestClient(app)
        assert client.post("/login", data={"key": key}, follow_redirects=False).status_code == 303
        paths = pages(args.models, args.versions)
        log(f"timing {len(paths)} pages ({args.warmup} warm-up, {args.repeats} timed calls each)")
        results = time_pages(client, paths, args.repeats, args.warmup)
        report = {
            "machine": machine(),
            "config": {"models": args.models, "versions_per_model": args.versions, "repeats": args.repeats},
            "seed_seconds": round(seed_s, 1),
            "target_p95_ms": TARGET_P95_MS,
            "pages": results,
        }
        width = max(len(r["page"]) for r in results)
        print(f"{'page':<{width}}  {'p50 ms':>8}  {'p95 ms':>8}  target")
        for r in results:
            verdict = "ok" if r["ok"] else "MISSED"
            print(f"{r['page']:<{width}}  {r['p50_ms']:>8.1f}  {r['p95_ms']:>8.1f}  {verdict}")
        if args.json:
            args.json.write_text(json.dumps(report, indent=2))
        registry.db.dispose()
        return 0 if all(r["ok"] for r in results) else 1
    finally:
        if not args.keep:
            shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
