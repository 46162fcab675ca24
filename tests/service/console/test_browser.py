"""The console in a real browser (Playwright driving Chromium) against the service running in a thread.

Each main page is photographed under the test's ``tmp_path``; with
``MLOPS_CONSOLE_SCREENSHOTS=<dir>`` the pictures are also copied there (the
documentation's are made with ``MLOPS_CONSOLE_SCREENSHOTS=docs/console``).
The tests skip, with the reason, when Chromium cannot start.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from service.server import running_service
from storage.endpoints.store import EndpointStore
from storage.registry.approvals import ApprovalStore
from storage.registry.core import Registry
from tests.service.console.conftest import Console

pytestmark = pytest.mark.slow
CHROMIUM = "/usr/bin/chromium"
VIEWPORT = {"width": 1280, "height": 800}
WAIT_MS = 15_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium for the module (skips when it cannot start)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:  # pragma: no cover - playwright is a test dependency
        pytest.skip(f"playwright is not installed: {exc}")
    manager = sync_playwright().start()
    try:
        chromium = manager.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
    except Exception as exc:  # no browser on this machine: say why
        manager.stop()
        pytest.skip(f"Chromium does not start ({CHROMIUM}): {type(exc).__name__}: {str(exc)[:200]}")
    try:
        yield chromium
    finally:
        chromium.close()
        manager.stop()


@pytest.fixture
def site(sqlite_console: Console) -> Iterator[str]:
    """The seeded console served on a free port."""
    with running_service(sqlite_console.app) as url:
        yield url


def signed_in(browser: Any, url: str, key: str) -> Any:
    """A page in a fresh browser context (its own cookies), signed in with ``key``."""
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    page.goto(f"{url}/login")
    page.fill("#key", key)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{url}/models")
    return page


def shoot(page: Any, tmp_path: Path, name: str, at: str | None = None) -> Path:
    """A picture of the page (charts drawn, scrolled to ``at``), copied to $MLOPS_CONSOLE_SCREENSHOTS."""
    if page.locator("[data-figure]").count():
        page.wait_for_selector("[data-figure] .main-svg")
    if at is not None:
        page.evaluate("(selector) => document.querySelector(selector).scrollIntoView()", at)
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path))
    target = os.environ.get("MLOPS_CONSOLE_SCREENSHOTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, Path(target) / path.name)
    return path


def test_browse_models_to_a_version_and_compare(
    browser: Any, site: str, sqlite_console: Console, tmp_path: Path
) -> None:
    page = signed_in(browser, site, sqlite_console.seeded.keys["reader"])
    assert page.locator("#models tbody tr").count() == 2
    shoot(page, tmp_path, "models")
    page.get_by_role("link", name="fraud", exact=True).click()
    page.wait_for_url(f"{site}/models/fraud")
    assert "<script>" in page.locator("p.description").inner_text()  # shown as text, never run
    page.get_by_role("link", name="1", exact=True).click()
    page.wait_for_url(f"{site}/models/fraud/versions/1")
    assert page.locator("#stage").inner_text() == "production"
    shoot(page, tmp_path, "version")
    page.go_back()
    page.check("#cmp-1")
    page.check("#cmp-3")
    page.select_option("#primary", "auc_roc")
    page.get_by_role("button", name="Compare selected").click()
    page.wait_for_selector("#comparison-table")
    assert page.locator("p.winner").inner_text().startswith("Winner: version 3")
    shoot(page, tmp_path, "model")


def test_canary_step_shows_on_the_open_page(
    browser: Any, site: str, sqlite_console: Console, tmp_path: Path
) -> None:
    page = signed_in(browser, site, sqlite_console.seeded.keys["admin"])
    page.goto(f"{site}/endpoints")
    shoot(page, tmp_path, "endpoints")
    page.goto(f"{site}/endpoints/fraud-canary")
    step = page.locator("#canary-step")
    assert "Canary step 2 of 4: 25%" in step.inner_text()
    EndpointStore(sqlite_console.registry.db).advance_canary("fraud-canary", actor="canary-analysis")
    page.wait_for_function(
        "() => document.querySelector('#canary-step').textContent.includes('step 3 of 4: 50%')"
    )
    canary_weight = page.locator('#live-traffic tr[data-variant="canary"] .weight-value')
    assert canary_weight.inner_text() == "50%"
    assert "50% (current)" in page.locator("ol.steps li.current").inner_text()
    shoot(page, tmp_path, "endpoint")
    page.once("dialog", lambda dialog: dialog.accept())  # data-confirm asks first
    page.fill("#rollback-reason", "p99 too high")
    page.get_by_role("button", name="Roll back the canary").click()
    page.wait_for_selector("p.flash")
    assert "rolled back" in page.locator("p.flash").inner_text()
    assert EndpointStore(sqlite_console.registry.db).get("fraud-canary").weights()["canary"] == 0.0
    page.goto(f"{site}/endpoints/fraud-ab")
    assert page.locator("#srm").inner_text().startswith("Sample ratio ok")
    shoot(page, tmp_path, "endpoint-ab", at="#ab")


def test_resolve_an_alert(browser: Any, site: str, sqlite_console: Console, tmp_path: Path) -> None:
    alert = sqlite_console.seeded.open_alert
    page = signed_in(browser, site, sqlite_console.seeded.keys["contributor"])
    page.goto(f"{site}/monitoring?model=fraud")
    shoot(page, tmp_path, "monitoring")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name=f"Resolve alert {alert}").click()
    page.wait_for_selector("p.flash")
    assert page.locator("p.flash").inner_text() == f"Alert {alert} resolved."
    assert page.locator(f"#alert-{alert}").count() == 0


def test_features_and_the_audit_chain(
    browser: Any, site: str, sqlite_console: Console, tmp_path: Path
) -> None:
    page = signed_in(browser, site, sqlite_console.seeded.keys["reviewer"])
    page.goto(f"{site}/features")
    assert page.locator("#group-card_activity td").last.inner_text() == "fresh"
    shoot(page, tmp_path, "features")
    page.goto(f"{site}/audit")
    page.get_by_role("button", name="Verify the chain").click()
    page.wait_for_selector("#verify-result")
    assert page.locator("#verify-result").inner_text().startswith("The chain holds")
    shoot(page, tmp_path, "audit")
    page.goto(f"{site}/approvals")
    assert page.get_by_role("button", name="Approve").count() == 1  # a reviewer decides here
    shoot(page, tmp_path, "approvals")


# ------------------------------------------------------------------ approvals with a paused flow run
def _paused_request(
    registry: Registry, model: str, seen: set[UUID], timeout: float = 120
) -> tuple[int, UUID]:
    """The request of the ``promote-model`` run, once the run is paused in a state not seen before."""
    from prefect.client.orchestration import get_client

    store = ApprovalStore(registry)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        requests = store.list(model=model)
        if requests and requests[0].flow_run_id:
            with get_client(sync_client=True) as client:
                state = client.read_flow_run(UUID(requests[0].flow_run_id)).state
            if state is not None and state.is_paused() and state.id not in seen:
                seen.add(state.id)
                return requests[0].id, UUID(requests[0].flow_run_id)
        time.sleep(0.2)
    raise TimeoutError("the promote-model run never paused for review")


def _approve_in_the_browser(browser: Any, url: str, key: str, request_id: int, comment: str) -> str:
    page = signed_in(browser, url, key)
    page.goto(f"{url}/approvals")
    card = page.locator(f"#request-{request_id}")
    card.locator("textarea").fill(comment)
    card.get_by_role("button", name="Approve").click()
    page.wait_for_selector("p.flash", timeout=60_000)
    text = str(page.locator("p.flash").inner_text())
    page.context.close()
    return text


@pytest.mark.usefixtures("prefect_harness")
def test_two_reviewers_approve_in_their_browsers_and_the_paused_run_resumes(
    browser: Any, tmp_path: Path
) -> None:
    from prefect.client.orchestration import get_client

    from blocks.policy import ApprovalPolicy, StagePolicy
    from blocks.settings import MlopsSettings
    from flows.promotion import promote_model
    from service.app import create_app
    from service.config import ServiceSettings

    registry = Registry.from_settings()  # the flow's tasks open the same MLOPS_HOME database
    registry.create_model("fraud")
    for auc in (0.91, 0.95):
        registry.create_version("fraud", framework="sklearn", metrics={"auc_roc": auc})
    registry.transition_stage("fraud", 1, "staging")
    registry.transition_stage("fraud", 1, "production", alias="champion")
    registry.transition_stage("fraud", 2, "staging")
    app = create_app(ServiceSettings(port=0), settings=MlopsSettings(), registry=registry)
    first = app.state.keys.create("bo", "reviewer", actor="setup")[0]
    second = app.state.keys.create("cy", "reviewer", actor="setup")[0]
    policy = ApprovalPolicy(stages={"production": StagePolicy(required_approvals=2, alias="champion")})
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = promote_model(
                "fraud", "2", "production", requested_by="ana", policy=policy, poll_interval_seconds=1
            )
        except BaseException as exc:  # reported below
            outcome["error"] = exc

    flow_thread = threading.Thread(target=run, daemon=True)
    flow_thread.start()
    seen: set[UUID] = set()
    request_id, run_id = _paused_request(registry, "fraud", seen)
    with running_service(app) as url:
        said = _approve_in_the_browser(browser, url, first, request_id, "metrics and bias look fine")
        assert "1 of 2 approvals" in said and "resumed" in said
        _paused_request(registry, "fraud", seen)  # the run woke, re-read the request, paused again
        said = _approve_in_the_browser(browser, url, second, request_id, "agreed")
        assert "2 of 2 approvals" in said
        flow_thread.join(120)
        assert not flow_thread.is_alive(), "the promote-model run did not finish"
        assert "error" not in outcome, outcome.get("error")
        assert outcome["result"]["status"] == "promoted"
        with get_client(sync_client=True) as client:
            state = client.read_flow_run(run_id).state
        assert state is not None and state.is_completed()
        page = signed_in(browser, url, first)
        page.goto(f"{url}/models/fraud/versions/2")
        assert page.locator("#stage").inner_text() == "production"
        assert registry.get_version("fraud", "@champion").number == 2
        page.context.close()
