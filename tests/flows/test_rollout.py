"""canary-rollout and blue-green-switch flows against a real model server over HTTP."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from flows.rollout import blue_green_switch, canary_rollout
from serving.testing import register_demo
from tasks.rollout.steps import rollout_markdown
from tests.serving.canary_models import ADMIN, ADMIN_KEY, Traffic, served_registry

pytestmark = pytest.mark.usefixtures("prefect_harness")
#: Holds a canary step may take waiting for min_requests (2.5 s each: up to 100 s on a stalled machine).
HOLDS = 40


def _endpoint(url: str, body: dict) -> None:
    response = httpx.post(f"{url}/admin/endpoints", json=body, headers=ADMIN)
    assert response.status_code == 201, response.text


@pytest.mark.slow
def test_failing_canary_is_rolled_back_and_a_good_one_completes(tmp_path: Path) -> None:
    with served_registry(tmp_path) as (url, reg):
        register_demo(reg, "fraud", "sklearn", n_estimators=7, seed=3)  # v3: a good version
        _endpoint(
            url, {"name": "fraud-live", "variants": [{"name": "main", "model": "fraud", "version": "1"}]}
        )
        traffic = Traffic(url, "fraud-live").start()
        try:
            # A step is judged once it has min_requests; until then it holds and runs again. On a
            # loaded machine the traffic thread is slow, so the holds allowed are generous (a step
            # that has its requests moves on at once): the test waits for traffic, not for a clock.
            bad = canary_rollout(
                "fraud-live", "fraud", "2", steps=[25, 100], step_seconds=2.5, poll_seconds=0.5,
                server_url=url, admin_key=ADMIN_KEY, min_requests=5, max_holds=HOLDS,
            )  # fmt: skip
            good = canary_rollout(
                "fraud-live", "fraud", "3", steps=[50, 100], step_seconds=2.5, poll_seconds=0.5,
                server_url=url, admin_key=ADMIN_KEY, min_requests=5, max_holds=HOLDS,
                max_p99_ratio=20.0,  # a few requests make a noisy p99 on a shared CI machine
            )  # fmt: skip
        finally:
            answers = traffic.finish()
        state = httpx.get(f"{url}/admin/endpoints/fraud-live", headers=ADMIN).json()
        events = httpx.get(f"{url}/admin/endpoints/fraud-live/events", headers=ADMIN).json()
    assert bad["status"] == "rolled_back"
    assert bad["history"][-1]["decision"] == "rollback" and "error" in bad["history"][-1]["reason"]
    assert good["status"] == "completed", [(h["decision"], h["reason"]) for h in good["history"]]
    assert [(v["name"], v["version"], v["weight"]) for v in state["variants"]] == [("stable", "3", 100.0)]
    kinds = [e["kind"] for e in events]
    assert kinds.count("canary.start") == 2 and "canary.rollback" in kinds and kinds[-1] == "canary.complete"
    assert all(a[1] == 200 for a in answers if a[2] == "stable")  # the stable variant never failed


@pytest.mark.slow
def test_blue_green_switch_flow_and_missing_endpoint(tmp_path: Path) -> None:
    with served_registry(tmp_path) as (url, reg):
        register_demo(reg, "fraud", "sklearn", n_estimators=7, seed=3)
        _endpoint(
            url,
            {
                "name": "bg",
                "policy": "blue_green",
                "variants": [
                    {"name": "blue", "model": "fraud", "version": "1", "weight": 100},
                    {"name": "green", "model": "fraud", "version": "1", "weight": 0},
                ],
            },
        )
        traffic = Traffic(url, "bg").start()
        try:
            broken = blue_green_switch(
                "bg", "fraud", "2", verify_seconds=2.5, server_url=url, admin_key=ADMIN_KEY
            )
            fine = blue_green_switch(
                "bg", "fraud", "3", verify_seconds=2.5, server_url=url, admin_key=ADMIN_KEY
            )
        finally:
            traffic.finish()
        state = httpx.get(f"{url}/admin/endpoints/bg", headers=ADMIN).json()
        created = canary_rollout("new-ep", "fraud", "3", server_url=url, admin_key=ADMIN_KEY)
    assert broken["status"] == "switched_back" and fine["status"] == "switched"
    assert state["settings"]["live"] == "green" and state["weights"] == {"blue": 0.0, "green": 100.0}
    assert next(v for v in state["variants"] if v["name"] == "green")["version"] == "3"
    assert created["status"] == "created"


def test_markdown_report() -> None:
    text = rollout_markdown("ep", [{"phase": "analyze", "weights": {"stable": 75.0, "canary": 25.0},
                                    "decision": "advance", "reason": "a | b"}])  # fmt: skip
    assert "| 1 | analyze | stable 75%, canary 25% | advance | a \\| b |" in text
