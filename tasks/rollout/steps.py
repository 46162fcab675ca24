"""Rollout tasks: drive canaries and blue-green switches through the model server's admin API.

The control plane never imports the data plane: these tasks call the
server's ``/admin`` API over HTTP with the admin key (the server records,
audits and applies every change) and read nothing else.

The server is found at ``server_url`` or ``MLOPS_SERVE_URL`` (default
``http://127.0.0.1:8080``); the admin key is ``admin_key`` or
``MLOPS_SERVE_ADMIN_KEY``.

Example:
    >>> rollout_markdown("fraud", [{"phase": "start", "weights": {"stable": 95.0, "canary": 5.0},
    ...                             "decision": "start", "reason": "canary fraud:3"}]).splitlines()[0]
    '# Canary rollout of `fraud`'
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import httpx
from prefect import task
from prefect.cache_policies import NO_CACHE  # each call reads or changes live state

from storage.errors import MlopsError, NotFoundError, ValidationError
from tasks.console_links import console_line

__all__ = [
    "AdminAPI",
    "admin_api",
    "analyze_canary",
    "create_endpoint_if_missing",
    "publish_rollout_report",
    "rollback_canary",
    "rollout_markdown",
    "start_canary",
    "switch_blue_green",
    "verify_slot",
    "watch_canary_step",
]

DEFAULT_SERVER_URL = "http://127.0.0.1:8080"


class AdminAPI:
    """A small client of the server's ``/admin`` API; errors come back as :class:`MlopsError`.

    Args:
        server_url: The server's base URL.
        admin_key: The admin key.
        timeout: Seconds per request.
    """

    def __init__(self, server_url: str, admin_key: str | None, *, timeout: float = 30.0) -> None:
        headers = {"Authorization": f"Bearer {admin_key}"} if admin_key else {}
        headers["X-Actor"] = os.environ.get("MLOPS_USER") or "rollout-flow"
        self.server_url = server_url.rstrip("/")
        self.client = httpx.Client(base_url=f"{self.server_url}/admin", headers=headers, timeout=timeout)

    def call(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        """One admin call; a 4xx/5xx raises with the server's reason."""
        try:
            response = self.client.request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise MlopsError(f"the model server at {self.server_url} did not answer: {exc}") from exc
        if response.status_code >= 400:
            try:
                reason = response.json().get("error") or response.text
            except ValueError:
                reason = response.text
            error = NotFoundError if response.status_code == 404 else ValidationError
            raise error(f"{method} /admin{path}: {response.status_code} {reason}")
        return response.json()

    def close(self) -> None:
        """Close the connection pool."""
        self.client.close()


def admin_api(server_url: str | None = None, admin_key: str | None = None) -> AdminAPI:
    """The admin client for ``server_url``/``admin_key`` or the ``MLOPS_SERVE_*`` environment."""
    url = server_url or os.environ.get("MLOPS_SERVE_URL") or DEFAULT_SERVER_URL
    return AdminAPI(url, admin_key or os.environ.get("MLOPS_SERVE_ADMIN_KEY"))


def _entry(
    phase: str, endpoint: Mapping[str, Any], decision: str, reason: str, **extra: Any
) -> dict[str, Any]:
    return {
        "phase": phase,
        "at": time.time(),
        "weights": dict(endpoint.get("weights", {})),
        "decision": decision,
        "reason": reason,
        **extra,
    }


def _settled(api: AdminAPI, endpoint: str, phase: str) -> dict[str, Any]:
    """The entry for a canary that is no longer running (a server's canary guard rolled it back)."""
    state = api.call("GET", f"/endpoints/{endpoint}/canary")
    plan = state.get("plan") or {}
    status = plan.get("status")
    last = next((e for e in reversed(state.get("events", [])) if e["kind"].startswith("canary.")), None)
    reason = (last or {}).get("detail", {}).get("reason") or f"the canary is {status}"
    decision = "rollback" if status == "rolled_back" else "advance"
    return _entry(phase, state, decision, str(reason), status=status, by=(last or {}).get("actor"))


def _analyze(api: AdminAPI, endpoint: str, apply: bool) -> dict[str, Any] | None:
    """The server's analysis (None when the canary stopped running meanwhile)."""
    try:
        result: dict[str, Any] = api.call("POST", f"/endpoints/{endpoint}/canary/analyze", {"apply": apply})
    except ValidationError as exc:
        if "no running canary" in str(exc):
            return None
        raise
    return result


@task(name="create-endpoint-if-missing", cache_policy=NO_CACHE)
def create_endpoint_if_missing(
    endpoint: str, model: str, version: str, server_url: str | None = None, admin_key: str | None = None
) -> dict[str, Any] | None:
    """Create ``endpoint`` serving ``model:version`` when it does not exist; returns the entry or None."""
    api = admin_api(server_url, admin_key)
    try:
        try:
            api.call("GET", f"/endpoints/{endpoint}")
            return None
        except NotFoundError:
            body = {"name": endpoint, "variants": [{"name": "stable", "model": model, "version": version}]}
            created = api.call("POST", "/endpoints", body)
            return _entry(
                "create", created, "created", f"no endpoint {endpoint!r}: serving {model}:{version}"
            )
    finally:
        api.close()


@task(name="start-canary", cache_policy=NO_CACHE)
def start_canary(
    endpoint: str,
    model: str,
    version: str,
    steps: Sequence[int],
    thresholds: Mapping[str, float],
    server_url: str | None = None,
    admin_key: str | None = None,
) -> dict[str, Any]:
    """Start the canary of ``model:version`` on ``endpoint`` at the first step."""
    api = admin_api(server_url, admin_key)
    try:
        body = {"model": model, "version": version, "steps": list(steps), **thresholds}
        started = api.call("POST", f"/endpoints/{endpoint}/canary", body)
        return _entry("start", started, "start", f"canary {model}:{version}, steps {list(steps)}")
    finally:
        api.close()


@task(name="watch-canary-step", cache_policy=NO_CACHE)
def watch_canary_step(
    endpoint: str,
    step_seconds: float,
    poll_seconds: float = 1.0,
    server_url: str | None = None,
    admin_key: str | None = None,
) -> dict[str, Any]:
    """Let the step run ``step_seconds``, checking for a breach every ``poll_seconds`` (then rolls back)."""
    api = admin_api(server_url, admin_key)
    try:
        deadline = time.monotonic() + step_seconds
        while time.monotonic() < deadline:
            time.sleep(max(0.0, min(poll_seconds, deadline - time.monotonic())))
            peek = _analyze(api, endpoint, apply=False)
            if peek is None:
                return _settled(api, endpoint, "watch")
            if peek["analysis"]["decision"] == "rollback":
                result = _analyze(api, endpoint, apply=True)
                if result is None:
                    return _settled(api, endpoint, "watch")
                analysis = result["analysis"]
                return _entry(
                    "watch", result["endpoint"], analysis["decision"], analysis["reason"], analysis=analysis
                )
        state = api.call("GET", f"/endpoints/{endpoint}")
        return _entry("watch", state, "watched", f"step ran {step_seconds:g} s without a breach")
    finally:
        api.close()


@task(name="analyze-canary", cache_policy=NO_CACHE)
def analyze_canary(
    endpoint: str, server_url: str | None = None, admin_key: str | None = None
) -> dict[str, Any]:
    """Analyse the step on the server and apply the decision (advance, hold or rollback)."""
    api = admin_api(server_url, admin_key)
    try:
        result = _analyze(api, endpoint, apply=True)
        if result is None:
            return _settled(api, endpoint, "analyze")
        analysis = result["analysis"]
        plan = result["endpoint"]["settings"].get("canary") or {}
        return _entry(
            "analyze",
            result["endpoint"],
            analysis["decision"],
            analysis["reason"],
            analysis=analysis,
            status=plan.get("status"),
        )
    finally:
        api.close()


@task(name="rollback-canary", cache_policy=NO_CACHE)
def rollback_canary(
    endpoint: str, reason: str, server_url: str | None = None, admin_key: str | None = None
) -> dict[str, Any]:
    """Roll the canary back by hand (canary weight 0), with the reason recorded."""
    api = admin_api(server_url, admin_key)
    try:
        result = api.call("POST", f"/endpoints/{endpoint}/canary/rollback", {"reason": reason})
        return _entry("rollback", result, "rollback", reason)
    finally:
        api.close()


@task(name="switch-blue-green", cache_policy=NO_CACHE)
def switch_blue_green(
    endpoint: str,
    model: str,
    version: str,
    server_url: str | None = None,
    admin_key: str | None = None,
) -> dict[str, Any]:
    """Deploy ``model:version`` to the idle slot and make it live."""
    api = admin_api(server_url, admin_key)
    try:
        state = api.call("GET", f"/endpoints/{endpoint}")
        live = state["settings"].get("live")
        idle = "green" if live == "blue" else "blue"
        api.call("POST", f"/endpoints/{endpoint}/slots/{idle}", {"model": model, "version": version})
        switched_at = time.time()
        switched = api.call("POST", f"/endpoints/{endpoint}/switch", {"to": idle})
        reason = f"{idle} ({model}:{version}) is live, {live} kept"
        return _entry("switch", switched, "switch", reason, slot=idle, switched_at=switched_at)
    finally:
        api.close()


@task(name="verify-slot", cache_policy=NO_CACHE)
def verify_slot(
    endpoint: str,
    slot: str,
    verify_seconds: float,
    max_error_rate: float = 0.01,
    server_url: str | None = None,
    admin_key: str | None = None,
    switched_at: float | None = None,
) -> dict[str, Any]:
    """Watch the new live slot for ``verify_seconds``; switch back when its error rate exceeds the limit.

    Only traffic counted after ``switched_at`` (a ``time.time()``; now by default) is judged.
    """
    api = admin_api(server_url, admin_key)
    try:
        started = switched_at or time.time()
        time.sleep(verify_seconds)
        since_s = max(time.time() - started, 0.1)
        stats = api.call("GET", f"/endpoints/{endpoint}/stats?since_s={since_s:.3f}")
        slot_stats = stats["variants"].get(slot, {"requests": 0, "error_rate": 0.0})
        if slot_stats["requests"] and slot_stats["error_rate"] > max_error_rate:
            back = api.call("POST", f"/endpoints/{endpoint}/switch-back")
            reason = f"{slot} error rate {slot_stats['error_rate']:.4f} > {max_error_rate}: switched back"
            return _entry("verify", back, "switch-back", reason, stats=slot_stats)
        state = api.call("GET", f"/endpoints/{endpoint}")
        return _entry("verify", state, "keep", f"{slot}: {slot_stats['requests']} requests", stats=slot_stats)
    finally:
        api.close()


def rollout_markdown(
    endpoint: str, history: Sequence[Mapping[str, Any]], title: str = "Canary rollout"
) -> str:
    """The steps of a rollout as a markdown table."""
    lines = [
        f"# {title} of `{endpoint}`",
        "",
        "| # | phase | weights | decision | reason |",
        "|---|---|---|---|---|",
    ]
    for i, entry in enumerate(history, 1):
        weights = ", ".join(f"{k} {v:g}%" for k, v in entry.get("weights", {}).items())
        reason = str(entry.get("reason", "")).replace("|", "\\|")
        lines.append(
            f"| {i} | {entry.get('phase', '')} | {weights} | {entry.get('decision', '')} | {reason} |"
        )
    link = console_line("endpoint", endpoint)
    if link:
        lines += ["", link]
    return "\n".join(lines) + "\n"


@task(name="publish-rollout-report", cache_policy=NO_CACHE)
def publish_rollout_report(
    endpoint: str, history: Sequence[Mapping[str, Any]], title: str = "Canary rollout"
) -> str:
    """Publish the rollout's steps as a markdown artifact; returns the markdown."""
    from prefect.artifacts import create_markdown_artifact

    markdown = rollout_markdown(endpoint, history, title)
    key = "".join(c if c.isalnum() else "-" for c in f"rollout-{endpoint}".lower())
    create_markdown_artifact(markdown=markdown, key=key, description=f"{title} of {endpoint}")
    return markdown
