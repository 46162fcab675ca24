"""Bias detection benchmark: ``tasks.governance.bias.detect_bias`` against fairlearn on the same input.

Generates ``--rows`` rows with two protected attributes held as strings in a
DataFrame (``sex``: 2 groups, ``race``: 5 groups, so 10 intersectional
groups), binary labels, and predictions whose selection rate depends on both.
Then, in one process:

* ours: one ``detect_bias`` call with ``n_resamples=0`` computes all five
  metrics (parity difference and ratio, disparate impact, equal opportunity,
  equalized odds) for ``sex``, ``race`` and ``sex & race``; best of ``--repeats``;
* ours with the bootstrap: the same call with ``n_resamples=--resamples``;
* fairlearn 0.15, each call once: ``MetricFrame`` (selection rate, TPR, FPR)
  per grouping, and ``demographic_parity_difference``,
  ``demographic_parity_ratio``, ``equal_opportunity_difference`` and
  ``equalized_odds_difference`` over the intersection.

Every fairlearn value is checked against ours (to 1e-9) before the table is
printed. Ratios are fairlearn's time over ours: each fairlearn call computes
one thing, while ours is always the full report, so the ratios understate ours.

Usage:
    .venv/bin/python benchmarks/bias.py [--rows 1000000] [--resamples 1000] [--repeats 3] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TARGET_POINT = 20.0  # fairlearn time / ours, point estimates
TOL = 1e-9


def generate(rows: int, seed: int = 7) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """Labels, predictions and a frame of the two protected attributes (object strings)."""
    rng = np.random.default_rng(seed)
    sex = rng.choice(np.array(["female", "male"], dtype=object), rows, p=[0.45, 0.55])
    race = rng.choice(
        np.array(["a", "b", "c", "d", "e"], dtype=object), rows, p=[0.4, 0.25, 0.15, 0.12, 0.08]
    )
    y_true = (rng.random(rows) < 0.4).astype(np.int64)
    lift = (
        np.where(sex == "male", 0.08, 0.0)
        + pd.Series(race).map({"a": 0.05, "b": 0.0, "c": -0.05}).fillna(-0.1).to_numpy()
    )
    y_pred = (rng.random(rows) < np.clip(0.2 + 0.5 * y_true + lift, 0, 1)).astype(np.int64)
    return y_true, y_pred, pd.DataFrame({"sex": sex, "race": race})


def timed(fn: Callable[[], Any], repeats: int = 1) -> tuple[float, Any]:
    """Best wall time of ``repeats`` calls, and the last result."""
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3, help="best of N for our calls")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    import fairlearn
    from fairlearn import metrics as fm

    from tasks.governance.bias import detect_bias

    y_true, y_pred, frame = generate(args.rows)
    groupings = [("sex",), ("race",), ("sex", "race")]

    def ours_point() -> Any:
        return detect_bias(y_true, y_pred, protected=frame, n_resamples=0)

    def ours_boot() -> Any:
        return detect_bias(y_true, y_pred, protected=frame, n_resamples=args.resamples, seed=0)

    ours_point()  # warm-up (imports, first allocations)
    t_point, report = timed(ours_point, args.repeats)
    t_boot, boot_report = timed(ours_boot, args.repeats)

    fl: dict[str, float] = {}
    frames = {}
    for attrs in groupings:
        name = " & ".join(attrs)
        fl[f"MetricFrame {name}"], frames[attrs] = timed(
            lambda attrs=attrs: fm.MetricFrame(
                metrics={
                    "sr": fm.selection_rate,
                    "tpr": fm.true_positive_rate,
                    "fpr": fm.false_positive_rate,
                },
                y_true=y_true,
                y_pred=y_pred,
                sensitive_features=frame[list(attrs)],
            )
        )
    inter = frame[["sex", "race"]]
    functions = {
        "statistical_parity_difference": ("demographic_parity_difference", fm.demographic_parity_difference),
        "statistical_parity_ratio": ("demographic_parity_ratio", fm.demographic_parity_ratio),
        "equal_opportunity_difference": ("equal_opportunity_difference", fm.equal_opportunity_difference),
        "equalized_odds_difference": ("equalized_odds_difference", fm.equalized_odds_difference),
    }
    fn_values = {}
    for metric, (fname, fn) in functions.items():
        fl[fname], fn_values[metric] = timed(lambda fn=fn: fn(y_true, y_pred, sensitive_features=inter))

    # the same numbers on both sides
    for attrs, mf in frames.items():
        ours = report.get(*attrs)
        diff, ratio = mf.difference(), mf.ratio()
        expected = {
            "statistical_parity_difference": diff["sr"],
            "statistical_parity_ratio": ratio["sr"],
            "disparate_impact": ratio["sr"],
            "equal_opportunity_difference": diff["tpr"],
            "equalized_odds_difference": max(diff["tpr"], diff["fpr"]),
        }
        for metric, value in expected.items():
            assert abs(ours.metric(metric).value - value) <= TOL, (
                attrs,
                metric,
                ours.metric(metric).value,
                value,
            )
    for metric, value in fn_values.items():
        assert abs(report.get("sex", "race").metric(metric).value - value) <= TOL, (metric, value)
    assert boot_report.get("sex", "race").metric("disparate_impact").interval is not None

    mf_inter = fl["MetricFrame sex & race"]
    all_frames = sum(v for k, v in fl.items() if k.startswith("MetricFrame"))
    rows = [
        ("all 5 metrics x 3 groupings (3 MetricFrames)", all_frames, t_point, TARGET_POINT),
        ("MetricFrame sr+TPR+FPR, 2x5 intersection", mf_inter, t_point, TARGET_POINT),
    ]
    rows += [(f"{fname}, intersection", fl[fname], t_point, TARGET_POINT) for fname, _ in functions.values()]
    rows.append((f"bootstrap {args.resamples} resamples (vs one MetricFrame)", mf_inter, t_boot, 1.0))

    print(f"rows={args.rows:,} resamples={args.resamples} fairlearn={fairlearn.__version__}")
    print(f"machine: {platform.processor() or platform.machine()}, Python {platform.python_version()}")
    print("| what | fairlearn | ours | ratio | target |")
    print("|---|---|---|---|---|")
    out = []
    for what, theirs, ours_s, target in rows:
        ratio = theirs / ours_s
        ok = "✔" if ratio >= target else "✘"
        print(f"| {what} | {theirs:.2f} s | {ours_s * 1000:.0f} ms | {ratio:.0f}x | ≥ {target:g}x {ok} |")
        out.append({"what": what, "fairlearn_s": theirs, "ours_s": ours_s, "ratio": ratio, "target": target})
    boot_ms, point_ms = t_boot * 1000, t_point * 1000
    print(f"ours, full report: {boot_ms:.0f} ms with {args.resamples} resamples, {point_ms:.0f} ms without")
    if args.json:
        args.json.write_text(
            json.dumps({"rows": args.rows, "resamples": args.resamples, "results": out}, indent=2)
        )


if __name__ == "__main__":
    main()
