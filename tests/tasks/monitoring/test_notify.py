"""Alert routing to local destinations: a webhook, a Slack-shaped endpoint, PagerDuty's API, SMTP."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from prefect.blocks.notifications import CustomWebhookNotificationBlock, PagerDutyWebHook, SlackWebhook

from blocks.notifications import SmtpNotificationBlock
from storage.monitoring.alerts import AlertStore
from storage.monitoring.prediction_log import PredictionLog
from storage.monitoring.routes import AlertRouteStore
from storage.registry.core import Registry
from tasks.monitoring import notify
from tasks.monitoring.notify import notify_alerts, send_test
from tasks.monitoring.profiles import build_profile
from tasks.monitoring.steps import run_drift_check, store_reference_profile
from tests.tasks.monitoring.receivers import HttpReceiver, Mailbox, http_receiver, smtp_server

pytestmark = pytest.mark.usefixtures("prefect_harness")


@pytest.fixture
def receiver() -> Iterator[HttpReceiver]:
    with http_receiver() as found:
        yield found


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    with smtp_server() as found:
        yield found


@pytest.fixture
def registry() -> Registry:
    reg = Registry.from_settings()
    reg.create_model("fraud")
    reg.create_version("fraud", framework="sklearn")
    reg.create_model("churn")
    reg.create_version("churn", framework="sklearn")
    return reg


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _webhook(receiver: HttpReceiver, path: str) -> str:
    name = _name("hook")
    CustomWebhookNotificationBlock(
        name="ops", url=f"{receiver.url}{path}", json_data={"title": "{{subject}}", "text": "{{body}}"}
    ).save(name)
    return f"custom-webhook/{name}"


def test_routes_deliver_by_model_severity_and_kind_with_each_destinations_body(
    registry: Registry, receiver: HttpReceiver, mailbox: Mailbox
) -> None:
    slack = _name("slack")
    SlackWebhook(url=f"{receiver.url}/services/T000/B000/XXXX").save(slack)
    mail = _name("mail")
    SmtpNotificationBlock(
        host="127.0.0.1", port=mailbox.port, security="none", from_address="mlops@example.com",
        to_addresses=["oncall@example.com", "data@example.com"], subject_prefix="[mlops] ",
    ).save(mail)  # fmt: skip
    routes = AlertRouteStore(registry)
    routes.add("everything", _webhook(receiver, "/hook"), min_severity="info")
    routes.add("fraud-critical", f"slack-webhook/{slack}", model="fraud*", min_severity="critical")
    routes.add("quality-mail", f"mlops-smtp-email/{mail}", kinds=["data_quality"])
    alerts = AlertStore(registry)
    alerts.raise_alert(
        "fraud", 1, kind="drift", severity="critical", subject="dataset", message="3 of 4 drifted"
    )
    alerts.raise_alert("fraud", 1, kind="drift", severity="warning", subject="amount", message="KS D=0.2")
    alerts.raise_alert("churn", 1, kind="data_quality", severity="critical", subject="age:null_rate",
                       message="null rate 60.00% (reference 0.00%): increase 60.00% > 25.00%")  # fmt: skip
    alerts.raise_alert("churn", 1, kind="drift", severity="info", subject="plan", message="minor")
    done = [f.result() for f in notify_alerts(registry, wait=True)]
    assert sorted(n.status for n in done) == ["sent"] * 6

    hooks = receiver.at("/hook")
    assert sorted(r.body["title"] for r in hooks) == [
        "[CRITICAL] churn v1: data_quality age:null_rate",
        "[CRITICAL] fraud v1: drift dataset",
        "[INFO] churn v1: drift plan",
        "[WARNING] fraud v1: drift amount",
    ]
    amount = next(r.body["text"] for r in hooks if "amount" in r.body["title"])
    assert amount.startswith("KS D=0.2\n") and "mlops alerts resolve" in amount

    (slack_post,) = receiver.at("/services/T000/B000/XXXX")
    body = slack_post.body
    assert body["text"] == "[CRITICAL] fraud v1: drift dataset"
    assert body["blocks"][0] == {
        "type": "header",
        "text": {"type": "plain_text", "text": "[CRITICAL] fraud v1: drift dataset"},
    }
    assert body["blocks"][1]["text"]["text"].startswith("3 of 4 drifted")
    assert {"type": "mrkdwn", "text": "*severity*\ncritical"} in body["blocks"][2]["fields"]
    assert body["attachments"][0]["color"] == "#d40e0d"

    (email,) = mailbox.wait_for(1)
    assert email["Subject"] == "[mlops] [CRITICAL] churn v1: data_quality age:null_rate"
    assert email["To"] == "oncall@example.com, data@example.com"
    assert "null rate 60.00%" in email.get_payload()


def test_repeats_are_deduplicated_renotified_after_the_interval_and_resolution_is_announced(
    registry: Registry, receiver: HttpReceiver
) -> None:
    routes = AlertRouteStore(registry)
    routes.add("hourly", _webhook(receiver, "/hourly"), renotify_seconds=3600)
    routes.add("once", _webhook(receiver, "/once"), notify_resolved=False)
    alerts = AlertStore(registry)
    first = alerts.raise_alert(
        "fraud", 1, kind="latency", severity="warning", subject="fraud:p99", message="p99 612 ms"
    )
    notify_alerts(registry, wait=True)
    for _ in range(3):  # the same alert seen again and again: counted, not re-sent
        alerts.raise_alert(
            "fraud", 1, kind="latency", severity="warning", subject="fraud:p99", message="p99 640 ms"
        )
        assert notify_alerts(registry, wait=True) == []
    assert len(receiver.at("/hourly")) == len(receiver.at("/once")) == 1

    later = datetime.now(UTC) + timedelta(hours=1, seconds=5)
    [f.result() for f in notify_alerts(registry, wait=True, now=later)]
    hourly = receiver.at("/hourly")
    assert [r.body["title"] for r in hourly] == [
        "[WARNING] fraud v1: latency fraud:p99",
        "[WARNING] fraud v1: latency fraud:p99 (still open)",
    ]
    assert "seen 4 time(s)" in hourly[1].body["text"] and "p99 640 ms" in hourly[1].body["text"]
    assert len(receiver.at("/once")) == 1  # no re-notify interval: never again while open
    assert notify_alerts(registry, wait=True, now=later) == []  # the repeat itself is de-duplicated

    alerts.resolve(first.id)
    [f.result() for f in notify_alerts(registry, wait=True)]
    assert receiver.at("/hourly")[-1].body["title"] == "[RESOLVED] fraud v1: latency fraud:p99"
    assert len(receiver.at("/once")) == 1  # that route does not send resolution notices
    assert notify_alerts(registry, wait=True) == []
    log = routes.notifications(route="hourly")
    assert [(n.event, n.status, n.attempts) for n in log] == [
        ("resolved", "sent", 1),
        ("repeat", "sent", 1),
        ("firing", "sent", 1),
    ]


def _drift_setup(registry: Registry) -> None:
    rng = np.random.default_rng(0)
    reference = pd.DataFrame({"amount": rng.normal(0, 1, 5_000)})
    store_reference_profile(registry, "fraud", 1, build_profile(reference))
    PredictionLog.from_settings().append(
        [
            {
                "request_id": uuid.uuid4().hex,
                "model": "fraud",
                "version": 1,
                "ts": datetime.now(UTC) - timedelta(minutes=5),
                "features": json.dumps({"amount": float(v)}),
                "prediction": "0",
                "latency_ms": 1.0,
                "status": "ok",
            }
            for v in rng.normal(0.5, 1, 2_000)
        ]
    )


def test_a_failing_destination_is_retried_with_backoff_and_recorded_without_blocking_the_check(
    registry: Registry, receiver: HttpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(notify, "MAX_ATTEMPTS", 3)
    monkeypatch.setattr(notify, "BACKOFF_SECONDS", 0.2)
    receiver.failing.add("/down")
    receiver.held.add("/down")  # the first attempt hangs until released
    routes = AlertRouteStore(registry)
    routes.add("down", _webhook(receiver, "/down"))
    routes.add("up", _webhook(receiver, "/up"))
    _drift_setup(registry)

    result = run_drift_check.fn("fraud", 1, window_hours=1)
    # The check returned while the failing destination still holds its first attempt.
    assert result["drifted_columns"] == ["amount"]
    assert len(receiver.wait_for("/down", 1)) == 1
    pending = routes.notifications(route="down")
    assert {n.status for n in pending} == {"pending"}

    receiver.held.clear()
    receiver.release.set()
    up = receiver.wait_for("/up", 2)
    assert sorted(r.body["title"] for r in up) == [
        "[CRITICAL] fraud v1: drift dataset",
        "[WARNING] fraud v1: drift amount",
    ]
    notify._SENDER.drain(timeout=30)
    attempts = receiver.at("/down")
    assert len(attempts) == 2 * 3  # two alerts, three tries each, then no more
    failed = routes.notifications(route="down")
    assert [(n.status, n.attempts) for n in failed] == [("failed", 3), ("failed", 3)]
    assert all("500 Internal Server Error" in (n.error or "") for n in failed)
    assert {(n.status, n.attempts) for n in routes.notifications(route="up")} == {("sent", 1)}
    time.sleep(0.3)
    assert len(receiver.at("/down")) == 6  # nothing retries after the bound


def test_pagerduty_gets_a_trigger_and_a_resolve_with_one_dedup_key(
    registry: Registry, receiver: HttpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(notify.PAGERDUTY_EVENTS_URL, "us", f"{receiver.url}/v2/enqueue")
    name = _name("pd")
    PagerDutyWebHook(integration_key="R0UTINGKEY", api_key="unused").save(name)
    AlertRouteStore(registry).add("pager", f"pager-duty-webhook/{name}", min_severity="critical")
    alert = AlertStore(registry).raise_alert(
        "fraud", 1, kind="error_rate", severity="critical", subject="fraud", message="error rate 9.1% > 5.0%"
    )
    [f.result() for f in notify_alerts(registry, wait=True)]
    AlertStore(registry).resolve(alert.id)
    [f.result() for f in notify_alerts(registry, wait=True)]
    trigger, resolve = (r.body for r in receiver.at("/v2/enqueue"))
    assert trigger["event_action"] == "trigger" and trigger["routing_key"] == "R0UTINGKEY"
    assert trigger["payload"]["severity"] == "critical" and trigger["payload"]["source"] == "fraud"
    assert trigger["payload"]["summary"] == "[CRITICAL] fraud v1: error_rate fraud"
    assert resolve == {
        "routing_key": "R0UTINGKEY",
        "event_action": "resolve",
        "dedup_key": trigger["dedup_key"],
    }


def test_a_test_notice_reports_success_and_failure(registry: Registry, receiver: HttpReceiver) -> None:
    routes = AlertRouteStore(registry)
    routes.add("ok", _webhook(receiver, "/ok"))
    routes.add("missing-block", "custom-webhook/no-such-block")
    sent = send_test(registry, "ok")
    assert (sent.event, sent.status, sent.attempts) == ("test", "sent", 1)
    assert receiver.at("/ok")[0].body["title"] == "[TEST] mlops alert route ok"
    failed = send_test(registry, "missing-block")
    assert failed.status == "failed" and "no-such-block" in (failed.error or "")
