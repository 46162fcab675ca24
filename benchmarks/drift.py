"""Drift benchmark: this project's drift engine against Evidently's ``DataDriftPreset`` and a scipy loop.

For each size in ``--rows``, generates a reference and a current frame of
``--columns`` standard-normal columns (same seed for every tool); the first
``--shifted`` columns of the current frame are shifted by ``--shift`` σ. Then,
on the same data, in one process:

* **ours**: ``build_profile(reference)`` (timed separately; it is computed once
  per model version) and ``detect_drift(profile, current)``;
* **scipy loop**: ``scipy.stats.ks_2samp(ref[c], cur[c])`` per column, default
  method, drift when p < 0.05 (no multiple-testing correction);
* **Evidently**: ``Report([DataDriftPreset()]).run(current, reference)``, drift
  as Evidently reports it per column.

For each, the time and which columns were flagged: ``hits`` is how many of the
shifted columns were flagged, ``false`` how many unshifted ones were.
``--power-seeds N`` also repeats our detection N times at the smallest size
with fresh data (a reference of ``--power-reference-rows``, default the same
size), and reports how often each shifted column was found and how
often any unshifted one was flagged.

Evidently runs once per size; ``--evidently-max-rows`` skips it above a size
(it took 155 s at 1M × 20 here).

Usage:
    .venv/bin/python benchmarks/drift.py [--rows 10000 1000000] [--columns 20] [--shifted 5]
        [--shift 0.05] [--power-seeds 0] [--power-reference-rows N] [--skip-evidently]
        [--evidently-max-rows N] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tasks.drift import detect_drift
from tasks.profiles import build_profile


def make_data(
    rows: int, columns: int, shifted: int, shift: float, seed: int, ref_rows: int | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Reference and current frames; the current's first ``shifted`` columns move by ``shift`` σ."""
    rng = np.random.default_rng(seed)
    ref = pd.DataFrame({f"c{i}": rng.normal(size=ref_rows or rows) for i in range(columns)})
    cur = pd.DataFrame(
        {f"c{i}": rng.normal(shift if i < shifted else 0.0, 1.0, rows) for i in range(columns)}
    )
    return ref, cur


def _score(flagged: list[str], shifted: set[str]) -> dict[str, Any]:
    return {
        "flagged": flagged,
        "hits": len(shifted & set(flagged)),
        "false": len(set(flagged) - shifted),
    }


def run_ours(ref: pd.DataFrame, cur: pd.DataFrame) -> dict[str, Any]:
    t0 = time.perf_counter()
    profile = build_profile(ref)
    t1 = time.perf_counter()
    result = detect_drift(profile, cur)
    t2 = time.perf_counter()
    return {"profile_s": t1 - t0, "detect_s": t2 - t1, "flagged": list(result.drifted_columns)}


def run_scipy(ref: pd.DataFrame, cur: pd.DataFrame) -> dict[str, Any]:
    from scipy import stats

    t0 = time.perf_counter()
    flagged = [c for c in ref.columns if stats.ks_2samp(ref[c].to_numpy(), cur[c].to_numpy()).pvalue < 0.05]
    return {"detect_s": time.perf_counter() - t0, "flagged": flagged}


def run_evidently(ref: pd.DataFrame, cur: pd.DataFrame) -> dict[str, Any]:
    from evidently import Report
    from evidently.presets import DataDriftPreset

    t0 = time.perf_counter()
    snapshot = Report([DataDriftPreset()]).run(current_data=cur, reference_data=ref)
    elapsed = time.perf_counter() - t0
    flagged, methods = [], set()
    for metric in snapshot.dict()["metrics"]:
        config = metric.get("config", {})
        if "column" not in config or "method" not in config:
            continue
        method, value, threshold = config["method"], float(metric["value"]), float(config["threshold"])
        methods.add(f"{method} (threshold {threshold})")
        drifted = value < threshold if "p_value" in method.lower() else value >= threshold
        if drifted:
            flagged.append(config["column"])
    return {"detect_s": elapsed, "flagged": flagged, "methods": sorted(methods)}


def power(rows: int, args: argparse.Namespace) -> dict[str, Any]:
    """Detection rate of each shifted column and the share of runs with any false flag."""
    found = np.zeros(args.shifted)
    any_false = 0
    for seed in range(1000, 1000 + args.power_seeds):
        ref, cur = make_data(rows, args.columns, args.shifted, args.shift, seed, args.power_reference_rows)
        flagged = set(detect_drift(build_profile(ref), cur).drifted_columns)
        found += [f"c{i}" in flagged for i in range(args.shifted)]
        any_false += bool(flagged - {f"c{i}" for i in range(args.shifted)})
    return {
        "rows": rows,
        "reference_rows": args.power_reference_rows or rows,
        "seeds": args.power_seeds,
        "detection_rate_per_shifted_column": (found / args.power_seeds).round(3).tolist(),
        "runs_with_a_false_flag": any_false / args.power_seeds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 1_000_000])
    parser.add_argument("--columns", type=int, default=20)
    parser.add_argument("--shifted", type=int, default=5)
    parser.add_argument("--shift", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--power-seeds", type=int, default=0)
    parser.add_argument("--power-reference-rows", type=int, default=None)
    parser.add_argument("--skip-evidently", action="store_true")
    parser.add_argument("--evidently-max-rows", type=int, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    import evidently
    import scipy

    print(
        f"# {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"numpy {np.__version__}, scipy {scipy.__version__}, evidently {evidently.__version__}"
    )
    shifted = {f"c{i}" for i in range(args.shifted)}
    report: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()}, "sizes": []}
    for rows in args.rows:
        ref, cur = make_data(rows, args.columns, args.shifted, args.shift, args.seed)
        entry: dict[str, Any] = {"rows": rows, "ours": run_ours(ref, cur), "scipy": run_scipy(ref, cur)}
        skip = args.skip_evidently or (args.evidently_max_rows is not None and rows > args.evidently_max_rows)
        if not skip:
            entry["evidently"] = run_evidently(ref, cur)
        for tool in ("ours", "scipy", "evidently"):
            if tool in entry:
                entry[tool] |= _score(entry[tool]["flagged"], shifted)
        report["sizes"].append(entry)
        print(json.dumps(entry), flush=True)
    if args.power_seeds:
        report["power"] = power(min(args.rows), args)
        print(json.dumps(report["power"]))

    print(f"\n| rows × cols | tool | time (s) | shifted found (of {args.shifted}) | false flags |")
    print("|---|---|---:|---:|---:|")
    for e in report["sizes"]:
        label = f"{e['rows']:,} × {args.columns}"
        o = e["ours"]
        print(
            f"| {label} | ours: profile + detect | {o['profile_s']:.2f} + {o['detect_s']:.2f} "
            f"| {o['hits']} | {o['false']} |"
        )
        print(
            f"| {label} | scipy ks_2samp loop | {e['scipy']['detect_s']:.2f} | {e['scipy']['hits']} "
            f"| {e['scipy']['false']} |"
        )
        if "evidently" in e:
            ev = e["evidently"]
            row = f"{ev['detect_s']:.2f} | {ev['hits']} | {ev['false']}"
            print(f"| {label} | Evidently DataDriftPreset | {row} |")
            print(f"|  | (Evidently's method: {'; '.join(ev['methods'])}) | | | |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
