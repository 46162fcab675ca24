"""What the endpoint pages show, read from the metadata database and the prediction log.

Everything here reads :class:`~storage.endpoints.store.EndpointStore` (the
endpoint, its events and the per-variant traffic counters every model-server
replica flushes) and, for shadow variants, the prediction log. The A/B
statistics and the shadow disagreement come from :mod:`serving.abtest` and
:mod:`serving.shadow`: the same functions ``mlops endpoints ab-report`` and the
server's admin API use. Both modules are pure (SciPy, pandas and the storage
layer); importing them loads neither the model server's app nor its router,
runtimes or FastAPI routes — the one exception to "the service never imports
``serving/``", checked by ``tests/service/console/test_pages.py``.

Example:
    >>> from storage.endpoints.store import VariantStats
    >>> live_row(VariantStats("a", requests=120, errors=6, latency_sum_ms=240.0), 60.0)["rate"]
    2.0
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

from service.console.render import bar_figure
from storage.endpoints.store import (
    Endpoint,
    EndpointEvent,
    EndpointStore,
    VariantStats,
    since_seconds,
)
from storage.monitoring.prediction_log import PredictionLog

LIVE_WINDOW_S = 60.0
SHADOW_WINDOW_H = 24.0


def _ms(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 3)


def live_row(stats: VariantStats, window_s: float) -> dict[str, Any]:
    """Request rate (per second over ``window_s``), error rate and latency percentiles of one variant."""
    return {
        "variant": stats.variant,
        "requests": stats.requests,
        "rate": round(stats.requests / window_s, 3) if window_s > 0 else None,
        "error_rate": stats.error_rate,
        "p50_ms": _ms(stats.quantile(0.5)),
        "p95_ms": _ms(stats.quantile(0.95)),
        "p99_ms": _ms(stats.quantile(0.99)),
    }


def canary_state(endpoint: Endpoint) -> dict[str, Any] | None:
    """The canary plan: steps, the current one, status, thresholds."""
    plan = endpoint.canary
    if plan is None:
        return None
    return {
        "steps": list(plan.steps),
        "step": plan.step + 1,
        "of": len(plan.steps),
        "weight": plan.weight,
        "status": plan.status,
        "started": plan.step_started_at,
        "thresholds": {
            "max error rate difference": plan.max_error_rate_diff,
            "max p99 ratio": plan.max_p99_ratio,
            "min requests per step": plan.min_requests,
        },
    }


def live_panel(store: EndpointStore, name: str, window_s: float = LIVE_WINDOW_S) -> dict[str, Any]:
    """The refreshing panel: weights, canary step and the last ``window_s`` of traffic per live variant."""
    endpoint = store.get(name)
    stats = store.stats(name, since=since_seconds(window_s))
    rows = []
    for variant in endpoint.variants:
        row = live_row(stats.get(variant.name, VariantStats(variant.name)), window_s)
        rows.append(row | {"weight": variant.weight, "role": variant.role, "target": variant})
    return {
        "endpoint": endpoint,
        "rows": rows,
        "canary": canary_state(endpoint),
        "window_s": window_s,
        "at": datetime.now(UTC),
    }


def analysis_rows(events: list[EndpointEvent]) -> list[dict[str, Any]]:
    """Canary steps and decisions, newest first, with the analysis numbers each recorded."""
    rows = []
    for event in reversed(events):
        if not event.kind.startswith(("canary.", "decision.")):
            continue
        detail = event.detail
        analysis = detail.get("analysis") if isinstance(detail.get("analysis"), dict) else None
        if event.kind.startswith("decision.") and analysis is None and "decision" in detail:
            analysis = detail  # a recorded hold carries the analysis itself
        rows.append(
            {
                "at": event.at,
                "kind": event.kind,
                "actor": event.actor,
                "step": detail.get("step"),
                "weight": detail.get("weight"),
                "reason": detail.get("reason") or (analysis or {}).get("reason", ""),
                "error_rate_diff": (analysis or {}).get("error_rate_diff"),
                "p99_ratio": (analysis or {}).get("p99_ratio"),
                "decision": (analysis or {}).get("decision", ""),
            }
        )
    return rows


def ab_section(store: EndpointStore, endpoint: Endpoint) -> dict[str, Any] | None:
    """The A/B report (traffic, sample-ratio check, outcome comparisons) of a 2+ variant endpoint."""
    from serving.abtest import ab_report

    if len(endpoint.live) < 2 or endpoint.policy in ("canary", "blue_green"):
        return None
    report = ab_report(store, endpoint.name).to_dict()
    comparisons = report["comparisons"]
    means: dict[str, float] = {}
    for c in comparisons:
        means.setdefault(c["control"], c["mean_control"])
        means[c["variant"]] = c["mean"]
    figure = None
    if means:
        figure = bar_figure(list(means), [float(v) for v in means.values()], title="mean outcome per variant")
    return {"report": report, "figure": figure}


def shadow_section(
    endpoint: Endpoint, log: PredictionLog, hours: float = SHADOW_WINDOW_H
) -> list[dict[str, Any]] | None:
    """Disagreement of each shadow variant with the live answers over the last ``hours`` of the log."""
    import pandas as pd

    from serving.shadow import shadow_report

    if not endpoint.shadows:
        return None
    start = datetime.now(UTC) - timedelta(hours=hours)
    frames = []
    for model in sorted({v.model for v in endpoint.variants}):
        try:
            frame = log.read(model=model, start=start)
        except (OSError, ValueError):  # no log yet, or a file being written
            continue
        if len(frame):
            frames.append(frame)
    if not frames:
        return []
    return [r.to_dict() for r in shadow_report(pd.concat(frames, ignore_index=True), endpoint=endpoint.name)]


def actions(endpoint: Endpoint) -> dict[str, bool]:
    """Which admin actions make sense for the endpoint now."""
    plan = endpoint.canary
    return {
        "promote_winner": len(endpoint.live) >= 2 and endpoint.policy not in ("canary", "blue_green"),
        "rollback": endpoint.policy == "canary" and plan is not None and plan.status == "running",
        "switch_back": endpoint.policy == "blue_green" and bool(endpoint.settings.get("previous")),
    }


def endpoint_summary(endpoint: Endpoint) -> dict[str, Any]:
    """One row of the endpoints list."""
    plan = endpoint.canary
    state = ""
    if endpoint.policy == "canary" and plan is not None:
        state = f"canary step {plan.step + 1} of {len(plan.steps)} ({plan.weight:g}%), {plan.status}"
    elif endpoint.policy == "blue_green":
        state = f"live: {endpoint.live_colour}"
    return {
        "name": endpoint.name,
        "policy": endpoint.policy,
        "variants": [
            f"{v.name} = {v.model}:{v.version} ({v.weight:g}%)" + (" shadow" if v.role == "shadow" else "")
            for v in endpoint.variants
        ],
        "state": state,
        "revision": endpoint.revision,
        "updated_at": endpoint.updated_at,
    }
