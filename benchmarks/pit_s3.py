"""Point-in-time join reading the offline store from S3 against reading it from local disk.

Generates the data of ``benchmarks/features.py`` (``--rows`` feature rows over
30 days, ``--entity-rows`` entity rows, ``--features`` float features), ingests
the feature rows in ``--batches`` batches into two offline stores, a local
folder and ``s3://<bucket>/features`` on moto's S3 server (started by this
script in its own process, so the server does not share the join's
interpreter), compacts both, and times the in-memory point-in-time join on
each (best of ``--runs``). Both joins must give the same answer (checksum).

Usage:
    .venv/bin/python benchmarks/pit_s3.py [--rows 1000000] [--entity-rows 1000000] [--entities 200000]
        [--features 5] [--batches 4] [--runs 2] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.features import DAYS, _timed, generate  # noqa: E402

SERVER = (
    "import sys\n"
    "from tests.s3_server import MotoS3\n"
    "s = MotoS3().start()\n"
    "print(s.endpoint, flush=True)\n"
    "sys.stdin.read()\n"
    "s.stop()\n"
)


def start_server() -> tuple[subprocess.Popen[str], str]:
    """moto's S3 server in a child process; returns it and its endpoint."""
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


def run(work: Path, args: argparse.Namespace, endpoint: str) -> dict[str, Any]:
    """Ingest into both stores, compact, join on each; the timings and checksums."""
    import numpy as np
    import pandas as pd

    from storage.features.definitions import Feature, FeatureGroup
    from storage.features.offline import OfflineStore
    from tests.s3_server import MotoS3, aws_environment

    os.environ.update(aws_environment(endpoint))
    server = MotoS3()
    server.endpoint = endpoint
    bucket = server.new_bucket()
    ttl = DAYS * 86400
    group = FeatureGroup("driver_stats", "driver", ("driver_id",), "event_timestamp", ttl_seconds=ttl)
    feats = [Feature("driver_stats", f"f{i}", 1, "float", "active") for i in range(args.features)]
    rows = pd.read_parquet(work / "features.parquet")
    entities = pd.read_parquet(work / "entities.parquet")
    out: dict[str, Any] = {}
    for name, root in (("local", str(work / "offline")), ("s3", f"s3://{bucket}/features")):
        store = OfflineStore(root)
        t0 = time.perf_counter()
        for idx in np.array_split(np.arange(len(rows)), args.batches):
            store.ingest(group, feats, rows.iloc[idx].reset_index(drop=True))
        ingest_s = time.perf_counter() - t0
        compacted = store.compact(group.name)
        join_s, frame = _timed(lambda s=store: s.historical(entities, [(group, feats)]), runs=args.runs)
        out[name] = {
            "ingest_s": round(ingest_s, 2),
            "files_before_compaction": compacted.files_before,
            "files": compacted.files_after,
            "stored_mb": round(compacted.bytes_after / 1e6, 1),
            "join_s": round(join_s, 2),
            "checksum_f0": float(np.nansum(frame["f0"].to_numpy())),
        }
    out["ratio_s3_over_local"] = round(out["s3"]["join_s"] / out["local"]["join_s"], 2)
    out["same_answer"] = out["s3"]["checksum_f0"] == out["local"]["checksum_f0"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--entity-rows", type=int, default=1_000_000)
    parser.add_argument("--entities", type=int, default=200_000)
    parser.add_argument("--features", type=int, default=5)
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--runs", type=int, default=2, help="best of N for each join")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    proc, endpoint = start_server()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            generate(work, args.rows, args.entity_rows, args.entities, args.features)
            result = run(work, args, endpoint)
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=30)
    result["config"] = vars(args) | {"json": str(args.json) if args.json else None}
    result["machine"] = f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text)


if __name__ == "__main__":
    main()
