"""Rollout flows: a stepped canary from start to finish, and a blue-green switch.

Both talk to the model server only through its admin API (see
:mod:`tasks.rollout.steps`), so they run from anywhere that reaches the server.

Example:
    >>> from flows.rollout import blue_green_switch, canary_rollout
    >>> (canary_rollout.name, blue_green_switch.name)
    ('canary-rollout', 'blue-green-switch')
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from tasks.rollout.steps import (
    analyze_canary,
    create_endpoint_if_missing,
    publish_rollout_report,
    rollback_canary,
    start_canary,
    switch_blue_green,
    verify_slot,
    watch_canary_step,
)


@flow(name="canary-rollout")
def canary_rollout(
    endpoint: str,
    model: str,
    version: str,
    steps: list[int] | None = None,
    step_seconds: float = 60,
    server_url: str | None = None,
    admin_key: str | None = None,
    max_error_rate_diff: float = 0.02,
    max_p99_ratio: float = 1.5,
    min_requests: int = 20,
    max_holds: int = 3,
    poll_seconds: float = 5.0,
    max_p99_ms: float | None = None,
    p99_floor_ms: float = 25.0,
) -> dict[str, Any]:
    """Walk ``model:version`` through the canary steps on ``endpoint``; roll back on a breach.

    Each step runs ``step_seconds`` (watched for breaches), then is analysed on
    the server: advance, hold (not enough requests yet: the step runs again, at
    most ``max_holds`` times, then the canary is rolled back) or rollback. An
    endpoint that does not exist yet is created serving the version.
    Latency is judged against ``max_p99_ms`` (an absolute target, if given) and
    ``max_p99_ratio`` times the stable p99, the ratio only when the canary's p99
    is above ``p99_floor_ms``.
    Returns ``status`` (``completed``, ``rolled_back`` or ``created``) and the history.
    """
    steps = steps or [5, 25, 50, 100]
    created = create_endpoint_if_missing(endpoint, model, version, server_url, admin_key)
    if created is not None:
        publish_rollout_report(endpoint, [created])
        return {"endpoint": endpoint, "status": "created", "history": [created]}
    thresholds = {
        "max_error_rate_diff": max_error_rate_diff,
        "max_p99_ratio": max_p99_ratio,
        "min_requests": min_requests,
        "p99_floor_ms": p99_floor_ms,
        **({"max_p99_ms": max_p99_ms} if max_p99_ms is not None else {}),
    }
    history = [start_canary(endpoint, model, version, steps, thresholds, server_url, admin_key)]
    status = "running"
    holds = 0
    while status == "running":
        watched = watch_canary_step(endpoint, step_seconds, poll_seconds, server_url, admin_key)
        history.append(watched)
        if watched["decision"] == "rollback":
            status = "rolled_back"
            break
        result = analyze_canary(endpoint, server_url, admin_key)
        history.append(result)
        if result["decision"] == "rollback":
            status = "rolled_back"
        elif result["decision"] == "hold":
            holds += 1
            if holds > max_holds:
                reason = f"the canary got too few requests in {holds} tries of {step_seconds:g} s"
                history.append(rollback_canary(endpoint, reason, server_url, admin_key))
                status = "rolled_back"
        else:
            holds = 0
            if result.get("status") == "completed":
                status = "completed"
    publish_rollout_report(endpoint, history)
    return {"endpoint": endpoint, "status": status, "history": history}


@flow(name="blue-green-switch")
def blue_green_switch(
    endpoint: str,
    model: str,
    version: str,
    verify_seconds: float = 30,
    max_error_rate: float = 0.01,
    server_url: str | None = None,
    admin_key: str | None = None,
) -> dict[str, Any]:
    """Deploy ``model:version`` to the idle slot, switch, verify; switch back when it fails."""
    switched = switch_blue_green(endpoint, model, version, server_url, admin_key)
    verified = verify_slot(
        endpoint,
        switched["slot"],
        verify_seconds,
        max_error_rate,
        server_url,
        admin_key,
        switched["switched_at"],
    )
    history = [switched, verified]
    publish_rollout_report(endpoint, history, "Blue-green switch")
    status = "switched_back" if verified["decision"] == "switch-back" else "switched"
    return {"endpoint": endpoint, "status": status, "history": history}
