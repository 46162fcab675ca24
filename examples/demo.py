"""``make demo``: the platform's seed use cases and the shared service, end to end, on embedded defaults.

1. fraud detection (``examples.fraud_detection``),
2. recommendations with an A/B test (``examples.recommendations``),
3. healthcare diagnosis (``examples.healthcare``),
4. a team sharing the platform service (``examples.team_platform``).

Each use case gets its own folder under ``MLOPS_HOME`` (default ``./.mlops``),
emptied first, so the demo can run again; every result's path is printed. A
failing step stops the demo with a non-zero exit code.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console

from examples import fraud_detection, healthcare, recommendations, team_platform

STEPS: list[tuple[str, str, Callable[[], Any]]] = [
    (
        "fraud",
        "fraud detection: features, XGBoost tuned on Dask, two approvals, canary, drift, bias, GDPR",
        fraud_detection.main,
    ),
    (
        "recommendations",
        "recommendations: RandomForest vs XGBoost behind a 90/10 A/B test, winner promoted",
        recommendations.main,
    ),
    (
        "healthcare",
        "healthcare diagnosis: 10-fold CV bar, approvals, explained predictions, drift, HIPAA + AI Act",
        healthcare.main,
    ),
    (
        "team",
        "a team shares the platform: mlops server, keys, remote registration, two reviewers, console",
        team_platform.main,
    ),
]


def run_step(home: Path, folder: str, step: Callable[[], Any]) -> Any:
    """Run one use case with ``MLOPS_HOME`` set to its own, emptied, folder."""
    target = home / folder
    shutil.rmtree(target, ignore_errors=True)
    previous = os.environ.get("MLOPS_HOME")
    os.environ["MLOPS_HOME"] = str(target)
    try:
        return step()
    finally:
        if previous is None:
            os.environ.pop("MLOPS_HOME", None)
        else:
            os.environ["MLOPS_HOME"] = previous


def main() -> int:
    """Run every use case, showing progress; return the exit code."""
    console = Console()
    home = Path(os.environ.get("MLOPS_HOME", ".mlops")).resolve()
    started_all = time.perf_counter()
    for index, (folder, title, step) in enumerate(STEPS, start=1):
        console.rule(f"[bold]use case {index}/{len(STEPS)}: {title}")
        started = time.perf_counter()
        try:
            run_step(home, folder, step)
        except (Exception, SystemExit) as exc:
            console.print(f"[red]use case {index} failed: {exc}")
            return 1
        took = time.perf_counter() - started
        console.print(f"[green]use case {index} done in {took:.0f} s; its state: {home / folder}")
    console.print(
        f"[bold green]all {len(STEPS)} use cases passed in {time.perf_counter() - started_all:.0f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
