"""Artifacts link to the console when ``MLOPS_CONSOLE_URL`` is set, and stay unchanged when it is not."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from blocks.settings import MlopsSettings
from storage.registry.approvals import ApprovalRequest, GateOutcome
from tasks.console_links import console_line, console_link
from tasks.monitoring.report import report_markdown
from tasks.registry.promotion import promotion_markdown
from tasks.rollout.steps import rollout_markdown

SITE = "https://mlops.example.com"


@pytest.fixture
def console(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("MLOPS_CONSOLE_URL", SITE + "/")
    return SITE


def test_links_per_kind() -> None:
    site = MlopsSettings(console_url=SITE)
    assert console_link("model", "fraud", settings=site) == f"{SITE}/models/fraud"
    assert console_link("version", "fraud", 2, settings=site) == f"{SITE}/models/fraud/versions/2"
    assert console_link("version", "fraud", settings=site) == f"{SITE}/models/fraud"
    assert console_link("approvals", "fraud", settings=site) == f"{SITE}/approvals?model=fraud"
    assert console_link("endpoint", "fraud-live", settings=site) == f"{SITE}/endpoints/fraud-live"
    assert console_link("monitoring", "a/b", settings=site) == f"{SITE}/monitoring?model=a%2Fb"
    with pytest.raises(ValueError, match="not one of"):
        console_link("nowhere", "fraud", settings=site)


def test_no_link_without_a_console_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLOPS_CONSOLE_URL", raising=False)
    assert console_link("model", "fraud") is None
    assert console_line("model", "fraud") == ""
    assert console_link("model", "fraud", settings=MlopsSettings(console_url="  ")) is None


def _request() -> ApprovalRequest:
    now = datetime.now(UTC)
    return ApprovalRequest(
        id=7,
        model="fraud",
        version=3,
        target_stage="production",
        requested_by="ana",
        reason="better",
        required_approvals=2,
        allowed_roles=[],
        allow_self_approval=False,
        alias="champion",
        status="pending",
        outcome="",
        flow_run_id=None,
        created_at=now,
        expires_at=None,
        decided_at=None,
        gates=[GateOutcome("metric", True, "auc 0.95 >= 0.9")],
        decisions=[],
    )


MONITORING: dict[str, Any] = {
    "model": "fraud",
    "version": 3,
    "health": 95.0,
    "drift": None,
    "performance": None,
    "alerts": [],
    "global_importance": {},
}


def test_markdown_artifacts_link_to_the_console(console: str) -> None:
    link = f"Open in the console: <{console}/approvals?model=fraud>"
    assert promotion_markdown(_request()).splitlines()[-1] == link
    history = [{"phase": "start", "weights": {"stable": 95.0, "canary": 5.0}, "decision": "", "reason": ""}]
    assert rollout_markdown("fraud-live", history).splitlines()[-1] == (
        f"Open in the console: <{console}/endpoints/fraud-live>"
    )
    assert report_markdown(MONITORING).splitlines()[-1] == (
        f"Open in the console: <{console}/monitoring?model=fraud>"
    )


def test_markdown_artifacts_unchanged_without_a_console_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLOPS_CONSOLE_URL", raising=False)
    assert "console" not in promotion_markdown(_request())
    assert "console" not in rollout_markdown("fraud-live", [])
    assert "console" not in report_markdown(MONITORING)


def test_governance_artifact_links_to_the_version_page(
    console: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import tasks.governance.report as governance
    from storage.registry.core import Registry

    registry = Registry.from_settings()
    registry.create_model("credit")
    registry.create_version("credit", framework="sklearn", metrics={"auc": 0.9})
    published: list[str] = []
    monkeypatch.setattr(
        governance, "create_markdown_artifact", lambda markdown, **_: published.append(markdown)
    )
    governance.export_governance_report.fn("credit", 1, out_dir=str(tmp_path / "out"), frameworks=[])
    assert published and published[0].rstrip().splitlines()[-1] == (
        f"Open in the console: <{console}/models/credit/versions/1>"
    )
