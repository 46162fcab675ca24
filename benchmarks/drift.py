"""Drift benchmark: this project's drift engine against Evidently's ``DataDriftPreset`` and a scipy loop.

For each size in ``--rows``, generates a reference and a current frame of
``--columns`` standard-normal columns ``c0…`` and ``--categorical`` string
columns ``g0…`` (4, 6, 8, 10, 12, … categories with fixed uneven
frequencies), with the same seed for every tool. In the current frame the first
``--shifted`` numeric columns move by ``--shift`` σ and ``g0`` moves
``--cat-shift`` of its probability mass from its most to its least frequent
category. Both frames are written once to Parquet in a temporary folder; then
each tool runs in its own fresh subprocess (this script with ``--side``), on
the same files:

* **ours**: ``build_profile(reference)`` (timed separately; it is computed once
  per model version) and ``detect_drift(profile, current)``, first with
  ``workers=1`` then with the default (``os.cpu_count()`` threads); the script
  checks the two results are identical;
* **scipy loop**: per numeric column ``scipy.stats.ks_2samp(ref[c], cur[c])``
  (default method), per categorical column ``scipy.stats.chi2_contingency`` on
  the 2 × k table of counts (``value_counts`` of each side); drift when p < 0.05
  (no multiple-testing correction);
* **Evidently**: ``Report([DataDriftPreset()]).run(current, reference)``, drift
  as Evidently reports it per column (run once per size).

Peak memory, per tool: the subprocess reads ``resource.getrusage(RUSAGE_SELF).ru_maxrss``
(the high-water mark of its resident set) once after loading both frames from
Parquet and importing the tool, and once after the tool has run; the table shows
the difference, i.e. how far the tool pushed the process's peak above the
loaded data. (A tool whose working set stays under the loading peak shows
about 0; the absolute peaks are in the JSON.)

``hits`` is how many of the shifted columns were flagged, ``false`` how many
unshifted ones were. ``--power-seeds N`` also repeats our detection N times at
the smallest size with fresh data (a reference of ``--power-reference-rows``,
default the same size), in this process, and reports how often each shifted
column was found and how often any unshifted one was flagged.

Usage:
    .venv/bin/python benchmarks/drift.py [--rows 10000 1000000] [--columns 20] [--categorical 5]
        [--shifted 5] [--shift 0.05] [--cat-shift 0.03] [--power-seeds 0]
        [--power-reference-rows N] [--skip-evidently] [--evidently-max-rows N] [--json OUT]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tasks.monitoring.drift import detect_drift
from tasks.monitoring.profiles import build_profile


def _category_probs(k: int) -> np.ndarray:
    """Fixed uneven frequencies for ``k`` categories (proportional to 1, 2, …, k, largest first)."""
    w = np.arange(k, 0, -1, dtype=float)
    return w / w.sum()


def make_data(
    rows: int,
    columns: int,
    shifted: int,
    shift: float,
    seed: int,
    ref_rows: int | None = None,
    categorical: int = 0,
    cat_shift: float = 0.0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Reference and current frames.

    The current's first ``shifted`` numeric columns move by ``shift`` σ; its
    ``g0`` moves ``cat_shift`` of the probability mass from its most to its least
    frequent category.
    """
    rng = np.random.default_rng(seed)
    n_ref = ref_rows or rows
    ref: dict[str, Any] = {f"c{i}": rng.normal(size=n_ref) for i in range(columns)}
    cur: dict[str, Any] = {
        f"c{i}": rng.normal(shift if i < shifted else 0.0, 1.0, rows) for i in range(columns)
    }
    for j in range(categorical):
        k = 4 + 2 * j
        names = np.array([f"g{j}_{v}" for v in range(k)], dtype=object)
        p = _category_probs(k)
        q = p.copy()
        if j == 0:
            q[0] -= cat_shift
            q[-1] += cat_shift
        ref[f"g{j}"] = names[rng.choice(k, n_ref, p=p)]
        cur[f"g{j}"] = names[rng.choice(k, rows, p=q)]
    return pd.DataFrame(ref), pd.DataFrame(cur)


def _shifted_columns(args: argparse.Namespace) -> set[str]:
    return {f"c{i}" for i in range(args.shifted)} | ({"g0"} if args.categorical and args.cat_shift else set())


def _score(flagged: list[str], shifted: set[str]) -> dict[str, Any]:
    return {
        "flagged": flagged,
        "hits": len(shifted & set(flagged)),
        "false": len(set(flagged) - shifted),
    }


def run_ours(ref: pd.DataFrame, cur: pd.DataFrame) -> dict[str, Any]:
    """Profile once, then detect single-threaded and with the default thread pool; same result required."""
    t0 = time.perf_counter()
    profile = build_profile(ref)
    t1 = time.perf_counter()
    single = detect_drift(profile, cur, workers=1)
    t2 = time.perf_counter()
    result = detect_drift(profile, cur)
    t3 = time.perf_counter()
    if json.dumps(single.to_dict()) != json.dumps(result.to_dict()):
        raise AssertionError("threaded and single-threaded detect_drift differ")
    return {
        "profile_s": t1 - t0,
        "detect_1_thread_s": t2 - t1,
        "detect_s": t3 - t2,
        "workers": os.cpu_count(),
        "flagged": list(result.drifted_columns),
    }


def run_scipy(ref: pd.DataFrame, cur: pd.DataFrame) -> dict[str, Any]:
    """``ks_2samp`` per numeric column, ``chi2_contingency`` per categorical column, p < 0.05."""
    from scipy import stats

    t0 = time.perf_counter()
    flagged = []
    for c in ref.columns:
        if pd.api.types.is_numeric_dtype(ref[c].dtype):
            p = stats.ks_2samp(ref[c].to_numpy(), cur[c].to_numpy()).pvalue
        else:
            table = pd.concat([ref[c].value_counts(), cur[c].value_counts()], axis=1).fillna(0)
            p = stats.chi2_contingency(table.to_numpy().T).pvalue
        if p < 0.05:
            flagged.append(c)
    return {"detect_s": time.perf_counter() - t0, "flagged": flagged}


def run_evidently(ref: pd.DataFrame, cur: pd.DataFrame) -> dict[str, Any]:
    """Evidently's ``DataDriftPreset`` with its defaults and its own per-column verdicts."""
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


SIDES = {"ours": run_ours, "scipy": run_scipy, "evidently": run_evidently}


def _maxrss_mib() -> float:
    """This process's peak resident set so far, in MiB (``ru_maxrss`` is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def side(tool: str, data: Path) -> dict[str, Any]:
    """Run one tool on the Parquet frames in ``data``; its time, flags and peak memory."""
    ref = pd.read_parquet(data / "reference.parquet")
    cur = pd.read_parquet(data / "current.parquet")
    if tool == "evidently":  # import outside the measured part, as the others' imports are
        import evidently.presets  # noqa: F401
    else:
        import scipy.stats  # noqa: F401
    gc.collect()
    loaded = _maxrss_mib()
    out = SIDES[tool](ref, cur)
    peak = _maxrss_mib()
    return out | {"maxrss_loaded_mib": loaded, "maxrss_end_mib": peak, "peak_over_loaded_mib": peak - loaded}


def power(rows: int, args: argparse.Namespace) -> dict[str, Any]:
    """Detection rate of each shifted column and the share of runs with any false flag."""
    shifted = sorted(_shifted_columns(args))
    found = np.zeros(len(shifted))
    any_false = 0
    for seed in range(1000, 1000 + args.power_seeds):
        ref, cur = make_data(
            rows,
            args.columns,
            args.shifted,
            args.shift,
            seed,
            args.power_reference_rows,
            args.categorical,
            args.cat_shift,
        )
        flagged = set(detect_drift(build_profile(ref), cur).drifted_columns)
        found += [c in flagged for c in shifted]
        any_false += bool(flagged - set(shifted))
    return {
        "rows": rows,
        "reference_rows": args.power_reference_rows or rows,
        "seeds": args.power_seeds,
        "shifted_columns": shifted,
        "detection_rate_per_shifted_column": (found / args.power_seeds).round(3).tolist(),
        "runs_with_a_false_flag": any_false / args.power_seeds,
    }


def _run_side(tool: str, data: Path) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, __file__, "--side", tool, "--data", str(data)],
        check=True,
        capture_output=True,
        text=True,
    )
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def main() -> None:
    """Parse the flags; either run one side (``--side``) or the whole comparison."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 1_000_000])
    parser.add_argument("--columns", type=int, default=20)
    parser.add_argument("--categorical", type=int, default=5)
    parser.add_argument("--shifted", type=int, default=5)
    parser.add_argument("--shift", type=float, default=0.05)
    parser.add_argument("--cat-shift", type=float, default=0.03)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--power-seeds", type=int, default=0)
    parser.add_argument("--power-reference-rows", type=int, default=None)
    parser.add_argument("--skip-evidently", action="store_true")
    parser.add_argument("--evidently-max-rows", type=int, default=None)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--side", choices=sorted(SIDES), default=None, help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        print(json.dumps(side(args.side, args.data)), flush=True)
        return

    import evidently
    import scipy

    print(
        f"# {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"numpy {np.__version__}, scipy {scipy.__version__}, evidently {evidently.__version__}"
    )
    shifted = _shifted_columns(args)
    report: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()}, "sizes": []}
    for rows in args.rows:
        ref, cur = make_data(
            rows, args.columns, args.shifted, args.shift, args.seed, None, args.categorical, args.cat_shift
        )
        entry: dict[str, Any] = {"rows": rows}
        with tempfile.TemporaryDirectory() as tmp:
            data = Path(tmp)
            ref.to_parquet(data / "reference.parquet")
            cur.to_parquet(data / "current.parquet")
            del ref, cur
            skip = args.skip_evidently or (
                args.evidently_max_rows is not None and rows > args.evidently_max_rows
            )
            for tool in ("ours", "scipy") + (() if skip else ("evidently",)):
                entry[tool] = _run_side(tool, data)
                entry[tool] |= _score(entry[tool]["flagged"], shifted)
        report["sizes"].append(entry)
        print(json.dumps(entry), flush=True)
    if args.power_seeds:
        report["power"] = power(min(args.rows), args)
        print(json.dumps(report["power"]))

    n_shifted = len(shifted)
    print(
        f"\n| rows × (num + cat) | tool | time (s) | peak memory over loaded data (MiB) "
        f"| shifted found (of {n_shifted}) | false flags |"
    )
    print("|---|---|---:|---:|---:|---:|")
    for e in report["sizes"]:
        label = f"{e['rows']:,} × ({args.columns} + {args.categorical})"
        o = e["ours"]
        print(
            f"| {label} | ours: profile + detect ({o['workers']} threads; 1 thread) "
            f"| {o['profile_s']:.2f} + {o['detect_s']:.2f} ({o['detect_1_thread_s']:.2f}) "
            f"| {o['peak_over_loaded_mib']:.0f} | {o['hits']} | {o['false']} |"
        )
        sp = e["scipy"]
        print(
            f"| {label} | scipy loop | {sp['detect_s']:.2f} | {sp['peak_over_loaded_mib']:.0f} "
            f"| {sp['hits']} | {sp['false']} |"
        )
        if "evidently" in e:
            ev = e["evidently"]
            print(
                f"| {label} | Evidently DataDriftPreset | {ev['detect_s']:.2f} "
                f"| {ev['peak_over_loaded_mib']:.0f} | {ev['hits']} | {ev['false']} |"
            )
            print(f"|  | (Evidently's methods: {'; '.join(ev['methods'])}) | | | | |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
