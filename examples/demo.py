"""``make demo``: every capability of the platform that works today, in order.

Each lifecycle step is a function; a failing step stops the demo with a
non-zero exit code.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

from rich.console import Console

from examples import (
    features_walkthrough,
    governance_walkthrough,
    monitoring_walkthrough,
    promotion_walkthrough,
    registry_walkthrough,
)

STEPS: list[tuple[str, Callable[[], Any]]] = [
    ("feature store: define, ingest, point-in-time training set, online reads", features_walkthrough.main),
    ("model registry: train, register, compare, stage, verify", registry_walkthrough.main),
    ("promotion: evidence gate, two reviewers, production + champion", promotion_walkthrough.main),
    ("governance: lineage, bias, AI Act risk, compliance, model card, erasure", governance_walkthrough.main),
    ("monitoring: reference profile, live traffic, drift check, alerts, health", monitoring_walkthrough.main),
]


def main() -> int:
    """Run every step, showing progress; return the exit code."""
    console = Console()
    for index, (title, step) in enumerate(STEPS, start=1):
        console.rule(f"[bold]step {index}/{len(STEPS)}: {title}")
        started = time.perf_counter()
        try:
            step()
        except (Exception, SystemExit) as exc:
            console.print(f"[red]step {index} failed: {exc}")
            return 1
        console.print(f"[green]step {index} done in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
