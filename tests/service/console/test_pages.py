"""The console without a browser: sign-in everywhere, form tokens, escaping, labels, each page's actions."""

from __future__ import annotations

import re
import subprocess
import sys
from html.parser import HTMLParser

import pytest
from fastapi.routing import APIRoute

from service.console.setup import ROUTERS
from storage.audit import AuditLog
from storage.endpoints.store import EndpointStore
from storage.monitoring.alerts import AlertStore
from storage.registry.approvals import ApprovalStore
from tests.service.console.conftest import Console
from tests.service.console.seed import SCRIPT_DESCRIPTION

MAIN_PAGES = (
    "/models",
    "/models/fraud",
    "/models/fraud?compare=1&compare=3",
    "/models/fraud/versions/1",
    "/approvals",
    "/endpoints",
    "/endpoints/fraud-ab",
    "/endpoints/fraud-canary",
    "/endpoints/churn-bg",
    "/monitoring",
    "/features",
    "/audit",
)
SAMPLE = {"name": "fraud", "ref": "1", "request_id": "1", "alert_id": "1"}


def console_routes(console: Console, method: str) -> list[str]:
    """Paths of the console's routes for ``method``, path parameters filled with sample values."""
    paths = []
    for router in ROUTERS:
        for route in router.routes:
            path = getattr(route, "path", "")
            if path.startswith("/login") or method not in getattr(route, "methods", set()):
                continue
            paths.append(re.sub(r"\{(\w+)\}", lambda m: SAMPLE.get(m.group(1), "x"), path))
    return paths


def test_no_page_without_a_key(console: Console) -> None:
    client = console.client()
    paths = console_routes(console, "GET")
    assert {
        "/models",
        "/approvals",
        "/endpoints",
        "/endpoints/fraud/live",
        "/monitoring",
        "/features",
        "/audit",
    } <= set(paths)
    for path in paths:
        first = client.get(path)
        assert first.status_code == 303, path
        final = client.get(path, follow_redirects=True)
        assert final.url.path == "/login", path
        assert 'name="key"' in final.text
    assert client.get("/approvals?model=x").headers["location"] == "/login?next=%2Fapprovals%3Fmodel%3Dx"


def test_an_unknown_key_is_refused(console: Console) -> None:
    client = console.client()
    answer = client.post("/login", data={"key": "mlops_not-a-key", "next": "/models"})
    assert answer.status_code == 401
    assert "not valid" in answer.text


def test_every_post_needs_the_session_token(console: Console) -> None:
    client = console.client("admin")
    paths = [p for p in console_routes(console, "POST") if p != "/logout"] + ["/logout"]
    assert len(paths) >= 6
    for path in paths:
        for token in (None, "wrong-token"):
            data = {"decision": "approve", "comment": "x"} | ({"csrf_token": token} if token else {})
            answer = client.post(path, data=data)
            assert answer.status_code == 403, (path, token, answer.text[:200])
            assert "token does not match" in answer.text
    signed_out = console.client()
    assert signed_out.post("/audit/verify", data={"csrf_token": "x"}).status_code == 303


def test_a_description_with_a_script_is_text(console: Console) -> None:
    page = console.client("reader").get("/models/fraud").text
    assert "<script>alert(" not in page
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in page
    assert SCRIPT_DESCRIPTION.split("<")[0] in page


class _Controls(HTMLParser):
    """Form controls of a page, and the ids labels point at."""

    def __init__(self) -> None:
        super().__init__()
        self.controls: list[dict[str, str | None]] = []
        self.labelled: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "label" and found.get("for"):
            self.labelled.add(str(found["for"]))
        if tag in ("input", "select", "textarea") and found.get("type") not in ("hidden", "submit", "button"):
            self.controls.append(found)


@pytest.mark.parametrize("who", ["admin", "reader"])
def test_every_form_control_has_a_label(console: Console, who: str) -> None:
    client = console.client(who)
    for path in (*MAIN_PAGES, "/login"):
        parser = _Controls()
        parser.feed(client.get(path).text)
        for control in parser.controls:
            named = control.get("aria-label") or (control.get("id") in parser.labelled)
            assert named, (path, control)


def test_every_main_page_answers(console: Console) -> None:
    client = console.client("reader")
    for path in MAIN_PAGES:
        answer = client.get(path)
        assert answer.status_code == 200, (path, answer.text[:500])
        assert "Traceback" not in answer.text


def _form_token(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([0-9a-f]+)"', html)
    assert found, "no form token on the page"
    return found.group(1)


def test_two_reviewers_approve_and_the_version_moves(console: Console) -> None:
    request_id = console.seeded.pending_request
    first = console.client("reviewer")
    page = first.get("/approvals").text
    assert f'id="request-{request_id}"' in page and "0 of 2" in page
    answer = first.post(
        f"/approvals/{request_id}/decide",
        data={"decision": "approve", "comment": "looks good", "csrf_token": _form_token(page)},
    )
    assert answer.status_code == 303
    shown = first.get(answer.headers["location"]).text
    assert "is pending: 1 of 2 approvals" in shown
    second = console.client("reviewer2")
    answer = second.post(
        f"/approvals/{request_id}/decide",
        data={"decision": "approve", "comment": "", "csrf_token": _form_token(second.get("/approvals").text)},
    )
    assert "is promoted: 2 of 2 approvals" in second.get(answer.headers["location"]).text
    version = console.registry.get_version("fraud", 3)
    assert version.stage == "production" and "champion" in version.aliases


def test_self_approval_and_a_wrong_role_are_refused_with_the_reason(console: Console) -> None:
    from blocks.policy import StagePolicy

    own = ApprovalStore(console.registry).open_request(
        "churn", 1, "staging", requested_by="admin-user", policy=StagePolicy(required_approvals=1), gates=[]
    )
    admin = console.client("admin")
    answer = admin.post(
        f"/approvals/{own.id}/decide",
        data={"decision": "approve", "csrf_token": _form_token(admin.get("/approvals").text)},
    )
    assert answer.status_code == 400
    assert "self-approval is not allowed" in answer.text and 'role="alert"' in answer.text
    reader = console.client("reader")
    answer = reader.post(
        f"/approvals/{own.id}/decide",
        data={"decision": "approve", "csrf_token": _form_token(reader.get("/audit").text)},
    )
    assert answer.status_code == 403
    assert "role &#39;reader&#39; of &#39;reader-user&#39; may not approve" in answer.text
    assert "Traceback" not in answer.text
    assert ApprovalStore(console.registry).get(own.id).status == "pending"


def test_admin_actions_change_the_endpoints(console: Console) -> None:
    store = EndpointStore(console.registry.db)
    admin = console.client("admin")
    page = admin.get("/endpoints/fraud-ab").text
    assert 'data-confirm="Send all traffic of fraud-ab' in page and "Sample ratio ok" in page
    assert "7.04e-05" in page  # the two-proportion z-test of the seeded outcomes
    token = _form_token(page)
    answer = admin.post("/endpoints/fraud-ab/promote-winner", data={"csrf_token": token})
    assert answer.status_code == 303
    assert store.get("fraud-ab").weights() == {"a": 0.0, "b": 100.0}
    answer = admin.post(
        "/endpoints/fraud-canary/rollback", data={"csrf_token": token, "reason": "p99 too high"}
    )
    assert answer.status_code == 303
    canary = store.get("fraud-canary")
    assert canary.weights() == {"stable": 100.0, "canary": 0.0} and canary.canary.status == "rolled_back"
    assert store.events("fraud-canary")[-1].actor == "admin-user"
    answer = admin.post("/endpoints/churn-bg/switch-back", data={"csrf_token": token})
    assert answer.status_code == 303 and store.get("churn-bg").live_colour == "blue"
    again = admin.post("/endpoints/fraud-canary/rollback", data={"csrf_token": token})
    assert again.status_code == 400 and "rollback refused" in again.text and "no running canary" in again.text


def test_a_reader_sees_no_admin_buttons_and_is_refused(console: Console) -> None:
    reader = console.client("reader")
    page = reader.get("/endpoints/fraud-ab").text
    assert "promote-winner" not in page
    answer = reader.post("/endpoints/fraud-ab/promote-winner", data={"csrf_token": _form_token(page)})
    assert answer.status_code == 403 and "may not admin" in answer.text
    assert EndpointStore(console.registry.db).get("fraud-ab").weights() == {"a": 50.0, "b": 50.0}


def test_the_live_panel_follows_the_database(console: Console) -> None:
    client = console.client("reader")
    assert "Canary step 2 of 4: 25%" in client.get("/endpoints/fraud-canary/live").text
    EndpointStore(console.registry.db).advance_canary("fraud-canary", actor="test")
    fragment = client.get("/endpoints/fraud-canary/live").text
    assert "Canary step 3 of 4: 50%" in fragment and "<html" not in fragment


def test_resolving_an_alert(console: Console) -> None:
    alert = console.seeded.open_alert
    reviewer = console.client("reviewer")
    page = reviewer.get("/monitoring").text
    assert "Resolve alert" not in page  # reviewers read; contributors and admins resolve
    refused = reviewer.post(f"/monitoring/alerts/{alert}/resolve", data={"csrf_token": _form_token(page)})
    assert refused.status_code == 403
    contributor = console.client("contributor")
    page = contributor.get("/monitoring?model=fraud").text
    assert f'aria-label="Resolve alert {alert}"' in page
    answer = contributor.post(f"/monitoring/alerts/{alert}/resolve", data={"csrf_token": _form_token(page)})
    assert answer.status_code == 303
    assert alert not in {a.id for a in AlertStore(console.registry).open_alerts()}
    assert f"Alert {alert} resolved." in contributor.get(answer.headers["location"]).text


def test_monitoring_history(console: Console) -> None:
    page = console.client("reader").get("/monitoring?model=fraud").text
    assert 'id="health-chart"' in page and 'id="drift-chart"' in page and 'id="performance-chart"' in page
    rows = re.findall(r"<tr><td>(\d{4}-\d\d-\d\d)</td><td>(\d+)</td></tr>", page)
    assert len(rows) == 30
    scores = [int(s) for _, s in rows]
    assert (
        scores[-1] == 80 and 95 in scores and scores[0] == 100
    )  # critical now; the warning 12 to 8 days ago
    assert "2 of 4 columns drifted" in page and "auc_roc: 0.86 vs 0.91" in page


def test_features_page(console: Console) -> None:
    page = console.client("reader").get("/features").text
    assert "card_activity" in page and ">fresh<" in page and ">200<" in page
    assert 'id="hist-spend_24h"' in page and 'id="hist-country"' in page
    assert "draft" in page


def test_audit_filters_paging_and_verification(console: Console) -> None:
    client = console.client("reader")
    page = client.get("/audit?action=alert.raise").text
    assert page.count("<td>alert.raise</td>") == 3
    assert client.get("/audit?actor=nobody").text.count("No entries match these filters") == 1
    first = client.get("/audit").text
    older = re.search(r'href="/audit\?before=(\d+)" id="older"', first)
    assert older, "the log has more than one page"
    assert f"<td>{int(older.group(1)) - 1}</td>" in client.get(f"/audit?before={older.group(1)}").text
    verified = client.post("/audit/verify", data={"csrf_token": _form_token(first)})
    total = AuditLog(console.registry.db).verify().checked
    assert f"The chain holds: {total} entries checked" in verified.text


def test_the_console_does_not_load_the_model_server() -> None:
    code = (
        "import sys, service.app, service.console.operations, service.console.endpoint_view as v; "
        "import serving.abtest, serving.shadow; "
        "bad = [m for m in ('serving.app', 'serving.server', 'serving.traffic', 'serving.admin', "
        "'serving.runtimes', 'serving.models', 'serving.routes') if m in sys.modules]; print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_console_routes_stay_out_of_the_api_document(console: Console) -> None:
    ours = [r for router in ROUTERS for r in router.routes if isinstance(r, APIRoute)]
    assert len(ours) >= 15 and all(not r.include_in_schema for r in ours)


def test_the_version_page_card_runs_no_fresh_compliance_check(console: Console) -> None:
    from tasks.governance.report import governance_report

    assert governance_report(console.registry, "fraud", 1, frameworks=[])["compliance"] == []
    assert governance_report(console.registry, "fraud", 1, frameworks=["GDPR"])["compliance"]
