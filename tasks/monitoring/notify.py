"""Alert notifications: render, send to Prefect notification blocks, retry, record — off the check's path.

:func:`notify_alerts` plans what is due (``storage.monitoring.routes``: new
alerts, re-notifications, resolution notices, each written to the
notification log first) and hands every notice to a background sender, so a
check flow never waits for Slack or a mail server, and never fails because
of one. Each notice is tried up to ``MAX_ATTEMPTS`` times, waiting
``BACKOFF_SECONDS`` × 1, 2, 4, ... between tries; every attempt is recorded
(``pending`` while retrying, then ``sent`` or ``failed`` with the last error).
A process waits for its notices in flight when it exits (at most the retries'
bound); one killed with notices in flight leaves them ``pending``, and the next
planner sends them again after ``stale_after`` seconds.

How each block type is sent:

==============================  ======================================================
block                           what is sent
==============================  ======================================================
``SlackWebhook``                a Slack message (``text`` + Block Kit ``blocks``) posted
                                to the webhook URL
``PagerDutyWebHook``            a PagerDuty Events API v2 ``trigger``, or ``resolve`` for
                                a resolution notice, with the alert's ``dedup_key``
``CustomWebhookNotificationBlock``  the block's own request, its ``{{subject}}`` and
                                ``{{body}}`` placeholders filled in
``SmtpNotificationBlock``       an e-mail (``blocks.notifications``)
any other notification block    ``block.notify(body, subject)`` (Microsoft Teams, ...)
==============================  ======================================================

Example:
    >>> from datetime import UTC, datetime
    >>> from storage.monitoring.alerts import Alert
    >>> now = datetime(2026, 1, 1, tzinfo=UTC)
    >>> alert = Alert(7, "fraud", 3, "drift", "critical", "dataset", "4 of 9 columns drifted",
    ...               "open", 2, now, now)
    >>> message = render(alert, "firing")
    >>> message.subject
    '[CRITICAL] fraud v3: drift dataset'
    >>> slack_payload(message)["blocks"][0]["text"]["text"]
    '[CRITICAL] fraud v3: drift dataset'
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx

from storage.monitoring.alerts import Alert
from storage.monitoring.routes import AlertRouteStore, Notification, PlannedNotification
from storage.registry.core import Registry

__all__ = [
    "BACKOFF_SECONDS",
    "MAX_ATTEMPTS",
    "Message",
    "deliver",
    "notify_alerts",
    "render",
    "send",
    "send_test",
    "slack_payload",
]

log = logging.getLogger(__name__)

#: Tries per notice, and the first wait between tries (doubling after each).
MAX_ATTEMPTS = 4
BACKOFF_SECONDS = 2.0
#: PagerDuty's Events API v2, by the block's ``region_name``.
PAGERDUTY_EVENTS_URL = {
    "us": "https://events.pagerduty.com/v2/enqueue",
    "eu": "https://events.eu.pagerduty.com/v2/enqueue",
}
_COLOURS = {"critical": "#d40e0d", "warning": "#f2c744", "info": "#439fe0", "resolved": "#2eb886"}


@dataclass(frozen=True)
class Message:
    """What a notice says: subject, plain-text body, and the facts for structured payloads."""

    subject: str
    body: str
    event: str
    severity: str
    facts: dict[str, Any] = field(default_factory=dict)
    dedup_key: str = ""


def render(alert: Alert | None, event: str, *, route: str = "") -> Message:
    """The subject and body of a notice about ``alert`` (None: a test notice of ``route``)."""
    if alert is None:
        subject = f"[TEST] mlops alert route {route}"
        body = f"A test notice of alert route {route!r}: alerts that match it will arrive here."
        return Message(subject, body, "test", "info", {"route": route}, f"mlops-test-{route}")
    where = f"{alert.model} v{alert.version}" if alert.version is not None else alert.model
    what = f"{alert.kind} {alert.subject}"
    if event == "resolved":
        subject = f"[RESOLVED] {where}: {what}"
    elif event == "repeat":
        subject = f"[{alert.severity.upper()}] {where}: {what} (still open)"
    else:
        subject = f"[{alert.severity.upper()}] {where}: {what}"
    facts = {
        "model": alert.model,
        "version": alert.version,
        "kind": alert.kind,
        "severity": alert.severity,
        "subject": alert.subject,
        "status": "resolved" if event == "resolved" else alert.status,
        "count": alert.count,
        "first_seen": alert.first_seen.isoformat(),
        "last_seen": alert.last_seen.isoformat(),
        "alert_id": alert.id,
    }
    lines = [
        alert.message,
        "",
        f"model: {where}",
        f"kind: {alert.kind}   severity: {alert.severity}   seen {alert.count} time(s)",
        f"first seen: {alert.first_seen:%Y-%m-%d %H:%M:%S} UTC   "
        f"last seen: {alert.last_seen:%Y-%m-%d %H:%M:%S} UTC",
    ]
    if event == "resolved":
        lines.append(f"alert {alert.id} is resolved.")
    else:
        lines.append(f"alert {alert.id}: `mlops alerts resolve {alert.id}` closes it.")
    return Message(subject, "\n".join(lines), event, alert.severity, facts, f"mlops-alert-{alert.id}")


def slack_payload(message: Message) -> dict[str, Any]:
    """A Slack incoming-webhook message: ``text`` for notifications, Block Kit for the channel."""
    colour = _COLOURS["resolved" if message.event == "resolved" else message.severity]
    facts = [
        {"type": "mrkdwn", "text": f"*{k}*\n{v}"}
        for k, v in message.facts.items()
        if k in ("model", "version", "kind", "severity", "count", "status")
    ]
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": message.subject[:150]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": message.body[:3000]}},
    ]
    if facts:
        blocks.append({"type": "section", "fields": facts[:10]})
    return {
        "text": message.subject,
        "blocks": blocks,
        "attachments": [{"color": colour, "fallback": message.subject}],
    }


def pagerduty_payload(routing_key: str, message: Message, block: Any) -> dict[str, Any]:
    """A PagerDuty Events API v2 event: ``trigger`` (or ``resolve``) keyed by the alert."""
    event: dict[str, Any] = {
        "routing_key": routing_key,
        "event_action": "resolve" if message.event == "resolved" else "trigger",
        "dedup_key": message.dedup_key,
    }
    if message.event != "resolved":
        severity = message.severity if message.severity in ("critical", "warning", "info") else "info"
        event["payload"] = {
            "summary": message.subject[:1024],
            "source": str(message.facts.get("model") or getattr(block, "source", None) or "mlops"),
            "severity": severity,
            "component": str(message.facts.get("kind") or getattr(block, "component", "") or "mlops"),
            "custom_details": {**message.facts, "message": message.body},
        }
    return event


def _post_json(url: str, payload: dict[str, Any], timeout: float = 10.0) -> None:
    response = httpx.post(url, json=payload, timeout=timeout)
    response.raise_for_status()


def send(block: Any, message: Message) -> None:
    """Send one message through a notification block; any failure raises."""
    from prefect.blocks.notifications import PagerDutyWebHook, SlackWebhook

    if isinstance(block, SlackWebhook):
        _post_json(block.url.get_secret_value(), slack_payload(message))
    elif isinstance(block, PagerDutyWebHook):
        key = block.integration_key.get_secret_value()
        _post_json(PAGERDUTY_EVENTS_URL[block.region_name], pagerduty_payload(key, message, block))
    elif hasattr(block, "raise_on_failure"):
        with block.raise_on_failure():
            block.notify(message.body, message.subject)
    else:
        block.notify(message.body, message.subject)


def load_block(reference: str) -> Any:
    """A saved Prefect block by ``<block-type-slug>/<name>``."""
    from prefect.blocks.core import Block

    return Block.load(reference)


def deliver(
    routes: AlertRouteStore,
    planned: PlannedNotification,
    *,
    attempts: int | None = None,
    backoff: float | None = None,
) -> Notification:
    """Send one planned notice, retrying with backoff; every attempt is recorded. Never raises."""
    tries = MAX_ATTEMPTS if attempts is None else max(1, attempts)
    wait = BACKOFF_SECONDS if backoff is None else backoff
    note = planned.notification
    message = render(planned.alert, note.event, route=planned.route.name)
    done = note.attempts
    for attempt in range(tries):
        done += 1
        try:
            send(load_block(planned.route.block), message)
        except Exception as exc:  # any failure of any destination is recorded, never raised
            error = f"{type(exc).__name__}: {exc}"[:2000]
            last = attempt == tries - 1
            try:
                routes.record(note.id, status="failed" if last else "pending", attempts=done, error=error)
            except Exception:  # the log itself is unreachable: nothing more to do here
                log.exception("could not record notification %s", note.id)
            if last:
                log.warning(
                    "alert notice %s to %s failed %d times: %s", note.id, planned.route.name, done, error
                )
                break
            time.sleep(wait * 2**attempt)
        else:
            routes.record(note.id, status="sent", attempts=done, error=None)
            break
    return routes.get_notification(note.id)


class _Sender:
    """The process's background senders (daemon threads; waited for briefly at exit)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._futures: set[Future[Notification]] = set()

    def submit(self, routes: AlertRouteStore, planned: PlannedNotification) -> Future[Notification]:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="mlops-notify")
            future = self._pool.submit(deliver, routes, planned)
            self._futures.add(future)
        future.add_done_callback(self._futures.discard)
        return future

    def drain(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for the notices in flight."""
        wait_futures(list(self._futures), timeout=timeout)


_SENDER = _Sender()


def notify_alerts(
    registry: Registry, *, wait: bool = False, now: datetime | None = None
) -> list[Future[Notification]]:
    """Plan the notices due now and send them in the background (``wait``: until they are done).

    Never raises: a failure to plan is logged and the check goes on.
    """
    routes = AlertRouteStore(registry)
    try:
        planned = routes.plan(now)
    except Exception:
        log.exception("could not plan alert notifications")
        return []
    futures = [_SENDER.submit(routes, p) for p in planned]
    if wait:
        wait_futures(futures)
    return futures


def send_test(registry: Registry, route: str, *, attempts: int = 1) -> Notification:
    """Send a test notice through ``route`` now, in this thread, and return its log row."""
    routes = AlertRouteStore(registry)
    return deliver(routes, routes.plan_test(route), attempts=attempts, backoff=0.0)
