"""The runnable examples (what ``make demo`` runs) pass, in the demo's order."""

from __future__ import annotations

import pytest

from examples import demo
from storage.audit import AuditLog
from storage.registry import Registry


@pytest.mark.usefixtures("prefect_harness")
def test_demo_steps_run_in_order(capsys: pytest.CaptureFixture[str]) -> None:
    for _title, step in demo.STEPS:
        step()
    out = capsys.readouterr().out
    assert "point-in-time training set: 4 rows" in out
    assert "request 1: promoted with 2 approvals" in out
    assert "EU AI Act risk level: high" in out and "verified: True" in out
    assert "drifted ['mean radius']" in out
    registry = Registry.from_settings()
    champion = registry.get_version("breast-cancer", "@champion")
    assert champion.stage == "production" and champion.metrics["auc_roc"] > 0.95
    assert AuditLog(registry.db).verify().ok
