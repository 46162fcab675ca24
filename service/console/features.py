"""Console page for the feature store: groups, features, online freshness and statistics histograms.

Definitions come from :class:`~storage.features.definitions.FeatureDefinitions`
in the metadata database; the online store's freshness per group from
:func:`service.console.freshness.online_freshness` (the store that the
service's ``MLOPS_ONLINE_STORE_URL`` names); the statistics of the chosen
group's features from :func:`storage.features.stats.load_stats` (the newest
stored set per feature: a window, or the reference).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from service.console.freshness import online_freshness
from service.console.render import bar_figure, page
from service.console.session import Session, current_session
from storage.db import Database
from storage.features.definitions import FeatureDefinitions
from storage.features.records import Feature, FeatureGroup
from storage.features.stats import load_stats
from storage.registry.core import Registry

router = APIRouter(include_in_schema=False)
SessionDep = Annotated[Session, Depends(current_session)]


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def histogram_figure(feature: str, stats: dict[str, Any]) -> dict[str, Any] | None:
    """A bar chart of a feature's histogram (numbers) or category counts (strings, booleans)."""
    hist = stats.get("histogram")
    if hist and hist.get("counts"):
        edges = hist["edges"]
        labels = [f"{_fmt(edges[i])} – {_fmt(edges[i + 1])}" for i in range(len(hist["counts"]))]
        return bar_figure(labels, [float(c) for c in hist["counts"]], title=f"{feature}: histogram")
    cats = stats.get("categories")
    if cats and cats.get("values"):
        return bar_figure(
            [str(v) for v in cats["values"]],
            [float(c) for c in cats["counts"]],
            title=f"{feature}: categories",
        )
    return None


def group_rows(groups: list[FeatureGroup], features: list[Feature], online_url: str) -> list[dict[str, Any]]:
    """Each group with its feature count and the online store's freshness against its TTL."""
    fresh = online_freshness(online_url, [g.name for g in groups])
    now = datetime.now(UTC)
    rows = []
    for g in groups:
        state = fresh[g.name]
        age = state.age_seconds(now)
        if state.problem:
            verdict = state.problem
        elif age is None:
            verdict = "not materialized"
        elif g.ttl_seconds and age > g.ttl_seconds:
            verdict = "stale: newest value older than the TTL"
        else:
            verdict = "fresh"
        rows.append(
            {
                "group": g,
                "features": sum(f.group == g.name for f in features),
                "online": state,
                "age": age,
                "verdict": verdict,
            }
        )
    return rows


def statistics(db: Database, group: str, features: list[Feature]) -> list[dict[str, Any]]:
    """The newest statistics of each feature of ``group``, with a chart when it has a histogram."""
    out: list[dict[str, Any]] = []
    for f in features:
        if f.group != group:
            continue
        found = load_stats(db, group, f.name)
        if found is None:
            out.append({"feature": f, "stats": None, "figure": None})
            continue
        stats = dict(found["stats"])
        out.append({"feature": f, "found": found, "stats": stats, "figure": histogram_figure(f.name, stats)})
    return out


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if abs(seconds) >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"


@router.get("/features", response_class=HTMLResponse)
def features_page(request: Request, session: SessionDep, group: str = "") -> HTMLResponse:
    """Groups with online freshness, every feature (type, status, owner), the chosen group's statistics."""
    reg: Registry = request.app.state.registry
    definitions = FeatureDefinitions(reg.db)
    groups = definitions.list_groups()
    features = definitions.list_features()
    names = [g.name for g in groups]
    chosen = group if group in names else (names[0] if names else "")
    online_url = request.app.state.mlops_settings.resolved_online_store_url()
    context = {
        "session": session,
        "groups": group_rows(groups, features, online_url),
        "features": features,
        "group": chosen,
        "stats": statistics(reg.db, chosen, features) if chosen else [],
        "age": _age,
    }
    return page(request, "features.html", context)
