"""``mlops alerts routes add|list|remove|test|log``, resolution notices from ``mlops alerts resolve``,
``mlops monitor operations`` and the health breakdown of ``mlops alerts list``."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from prefect.blocks.notifications import CustomWebhookNotificationBlock

from storage.audit import AuditLog
from storage.monitoring.alerts import AlertStore
from storage.monitoring.prediction_log import PredictionLog
from storage.registry.core import Registry
from tasks.monitoring.notify import notify_alerts
from tests.mlops.test_cli import failed, ok, ok_json
from tests.tasks.monitoring.receivers import HttpReceiver, http_receiver

pytestmark = pytest.mark.usefixtures("prefect_harness")


@pytest.fixture
def receiver() -> Iterator[HttpReceiver]:
    with http_receiver() as found:
        yield found


def test_routes_from_the_command_line(receiver: HttpReceiver) -> None:
    registry = Registry.from_settings()
    registry.create_model("fraud")
    registry.create_version("fraud", framework="sklearn")
    block = f"hook-{uuid.uuid4().hex[:8]}"
    CustomWebhookNotificationBlock(
        name="ops", url=f"{receiver.url}/ops", json_data={"title": "{{subject}}", "text": "{{body}}"}
    ).save(block)
    added = ok(
        "alerts", "routes", "add", "ops", "--block", f"custom-webhook/{block}", "--model", "fraud*",
        "--min-severity", "warning", "--kind", "drift", "--kind", "latency", "--renotify", "4h",
    )  # fmt: skip
    assert f"fraud* warning+ -> custom-webhook/{block}" in added.stdout
    missing = failed("alerts", "routes", "add", "nowhere", "--block", "slack-webhook/never-saved")
    assert "cannot load the Prefect block 'slack-webhook/never-saved'" in missing.stderr
    assert "already exists" in failed("alerts", "routes", "add", "ops", "--block", "x/y", "--no-check").stderr
    (route,) = ok_json("alerts", "routes", "list", "--json")
    assert (route["name"], route["kinds"], route["renotify_seconds"], route["notify_resolved"]) == (
        "ops",
        ["drift", "latency"],
        4 * 3600.0,
        True,
    )
    assert "test notice sent through ops" in ok("alerts", "routes", "test", "ops").stdout
    assert receiver.at("/ops")[0].body["title"] == "[TEST] mlops alert route ops"

    alert = AlertStore(registry).raise_alert(
        "fraud",
        1,
        kind="latency",
        severity="warning",
        subject="fraud:p99",
        message="p99 latency 612.0 ms > 500 ms",
    )
    [f.result() for f in notify_alerts(registry, wait=True)]  # what every check does after raising
    resolved = ok("alerts", "resolve", str(alert.id)).stdout
    assert "resolved notice to ops: sent" in resolved
    titles = [r.body["title"] for r in receiver.at("/ops")]
    assert titles[1:] == ["[WARNING] fraud v1: latency fraud:p99", "[RESOLVED] fraud v1: latency fraud:p99"]
    log = ok_json("alerts", "routes", "log", "--route", "ops", "--json")
    assert [(n["event"], n["status"]) for n in log] == [
        ("resolved", "sent"),
        ("firing", "sent"),
        ("test", "sent"),
    ]
    assert "removed alert route ops" in ok("alerts", "routes", "remove", "ops").stdout
    assert ok_json("alerts", "routes", "list", "--json") == []
    actions = [e.action for e in AuditLog(registry.db).entries() if e.entity_type == "alert_route"]
    assert actions == ["alert_route.add", "alert_route.remove"]


def test_operations_check_and_the_health_breakdown_from_the_command_line() -> None:
    registry = Registry.from_settings()
    registry.create_model("fraud")
    registry.create_version("fraud", framework="sklearn")
    now = datetime.now(UTC)
    rows = [
        {
            "request_id": uuid.uuid4().hex,
            "model": "fraud",
            "version": 1,
            "ts": now - timedelta(minutes=10),
            "features": json.dumps({"amount": 1.0}),
            "prediction": "0",
            "latency_ms": 750.0 if i % 10 == 0 else 20.0,  # 10% of requests are slow: p99 750 ms
            "status": "error" if i % 25 == 0 else "ok",  # 4% errors
            "endpoint": "fraud-live",
            "variant": "stable",
        }
        for i in range(200)
    ]
    PredictionLog.from_settings().append(rows)
    result = ok_json("monitor", "operations", "fraud", "--version", "1", "--window", "1h", "--json")
    (endpoint,) = result["endpoints"]
    assert (endpoint["endpoint"], endpoint["requests"], endpoint["error_rate"]) == ("fraud-live", 200, 0.04)
    assert endpoint["p99_ms"] == pytest.approx(750.0)
    assert sorted((a["kind"], a["severity"], a["subject"]) for a in result["new_alerts"]) == [
        ("error_rate", "warning", "fraud-live"),
        ("latency", "warning", "fraud-live:p99"),
    ]
    listed = ok_json("alerts", "list", "--model", "fraud", "--json")
    deductions = sorted((d["reason"], d["points"]) for d in listed["health_breakdown"]["fraud"])
    # two warnings (-5 each), p99 750/500 = 1.5x (-5), error rate 0.04/0.01 = 4x (-10, the cap)
    assert deductions == [
        ("error rate", 10.0),
        ("latency", 5.0),
        ("warning alert", 5.0),
        ("warning alert", 5.0),
    ]
    assert listed["health"] == {"fraud": 100 - 5 - 5 - 5 - 10}
    text = ok("alerts", "list", "--model", "fraud").stdout
    assert "health fraud: 75" in text and "-5 latency: p99 latency at 1.50x its objective" in text
