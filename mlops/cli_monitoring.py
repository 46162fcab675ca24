"""``mlops monitor`` and ``mlops alerts``: drift, data-quality and service-level checks, and their alerts.

Alert routes (``mlops alerts routes``) live in :mod:`mlops.cli_alert_routes`.
"""

from __future__ import annotations

import re
from typing import Annotated

import typer
from rich.table import Table

from mlops import _render as render
from mlops._cli_common import JsonOpt, NameArg, open_local_registry, say
from storage.errors import ValidationError
from storage.monitoring.alerts import Alert, AlertStore

monitor_app = typer.Typer(
    no_args_is_help=True, help="Monitoring: drift, data quality and service levels of live traffic."
)
alerts_app = typer.Typer(
    no_args_is_help=True, help="Monitoring alerts: list, resolve, health score, routes to people."
)

_UNITS = {"m": 1 / 60, "h": 1.0, "d": 24.0}


def parse_window(text: str) -> float:
    """``30m``, ``24h`` or ``7d`` as hours."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([mhd])\s*", text)
    if not match:
        raise ValidationError(f"window {text!r} is malformed: use e.g. 30m, 24h or 7d")
    return float(match.group(1)) * _UNITS[match.group(2)]


@monitor_app.command("drift")
def drift(
    name: NameArg,
    version: Annotated[
        str | None, typer.Option("--version", help="Version REF (default: production).")
    ] = None,
    window: Annotated[str, typer.Option("--window", help="How far back: 30m, 24h, 7d.")] = "24h",
    as_json: JsonOpt = False,
) -> None:
    """Compare the last window of logged features with the version's reference profile."""
    from tasks.monitoring.steps import run_drift_check

    result = run_drift_check.fn(name, version, parse_window(window))
    if as_json:
        render.emit_json(result)
        return
    say(f"{name} v{result['version']}: {result['rows']} rows; dataset drift: {result['dataset_drift']}")
    for column in result.get("drifted_columns", []):
        say(f"  drifted: {column}")
    for column, why in result.get("untestable", {}).items():
        say(f"  untestable: {column} ({why})")
    quality = result.get("data_quality")
    if quality is not None:
        say(f"  data quality: {quality['summary']}")
        for finding in quality["findings"]:
            say(f"    {finding['severity']} {finding['subject']}: {finding['message']}")


@monitor_app.command("operations")
def operations(
    name: NameArg,
    version: Annotated[
        str | None, typer.Option("--version", help="Version REF (default: production).")
    ] = None,
    window: Annotated[str, typer.Option("--window", help="How far back: 15m, 1h, 1d.")] = "1h",
    as_json: JsonOpt = False,
) -> None:
    """Latency p95/p99 and error rate per endpoint from the prediction log, against the limits."""
    from tasks.monitoring.operational import run_operations_check

    result = run_operations_check.fn(name, version, parse_window(window))
    if as_json:
        render.emit_json(result)
        return
    table = Table(title=f"{name} v{result['version']}: service levels")
    for column in ("endpoint", "requests", "error rate", "p95 ms", "p99 ms", "judged"):
        table.add_column(column)
    for e in result["endpoints"]:
        table.add_row(
            render.text(e["endpoint"]),
            str(e["requests"]),
            f"{e['error_rate']:.2%}",
            "-" if e["p95_ms"] is None else f"{e['p95_ms']:.1f}",
            "-" if e["p99_ms"] is None else f"{e['p99_ms']:.1f}",
            "yes" if e["judged"] else "too few requests",
        )
    render.console().print(table)
    for alert in result["new_alerts"]:
        say(f"  new {alert['severity']} {alert['kind']} alert: {alert['message']}")


@monitor_app.command("report")
def report(
    name: NameArg,
    version: Annotated[
        str | None, typer.Option("--version", help="Version REF (default: production).")
    ] = None,
    evidently: Annotated[
        bool, typer.Option("--evidently", help="Also write Evidently's HTML drift report (slow).")
    ] = False,
    out_dir: Annotated[
        str | None,
        typer.Option("--out", help="Folder or URL for the Evidently report (default: the report root)."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Drift, performance, open alerts, health score and feature importance of a version."""
    from tasks.monitoring.report import evidently_html, monitoring_report, report_markdown

    with open_local_registry() as registry:
        found = monitoring_report(registry, name, version)
        if evidently:
            found["evidently_html"] = evidently_html(registry, name, found["version"], out_dir)
    if as_json:
        render.emit_json(found)
        return
    render.console().print(report_markdown(found), markup=False)
    if evidently:
        say(f"Evidently report: {found['evidently_html']}")


@alerts_app.command("list")
def list_alerts(
    model: Annotated[str | None, typer.Option(help="Only this model's alerts.")] = None,
    all_alerts: Annotated[bool, typer.Option("--all", help="Include resolved alerts.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Open alerts (or all), newest first, with the health score per model and its deductions."""
    from storage.monitoring.health import model_health

    with open_local_registry() as registry:
        store = AlertStore(registry)
        alerts = store.list(model=model, status=None if all_alerts else "open")
        open_by_model: dict[str, list[Alert]] = {}
        for a in store.open_alerts(model):
            open_by_model.setdefault(a.model, []).append(a)
        health = {m: model_health(registry, m) for m in open_by_model}
    scores = {m: h.score for m, h in health.items()}
    if as_json:
        breakdown = {m: h.to_dict()["deductions"] for m, h in health.items()}
        render.emit_json(
            {"alerts": [a.to_dict() for a in alerts], "health": scores, "health_breakdown": breakdown}
        )
        return
    table = Table(title="alerts")
    for column in ("id", "model", "version", "kind", "severity", "subject", "count", "status", "last seen"):
        table.add_column(column)
    for a in alerts:
        table.add_row(
            str(a.id),
            render.text(a.model),
            str(a.version),
            a.kind,
            a.severity,
            render.text(a.subject),
            str(a.count),
            a.status,
            f"{a.last_seen:%Y-%m-%d %H:%M}",
        )
    render.console().print(table)
    for m, found in sorted(health.items()):
        say(f"health {m}: {found.score:.0f}")
        for d in found.deductions:
            say(f"  -{d.points:g} {d.reason}: {d.detail}")


@alerts_app.command("resolve")
def resolve(alert_id: Annotated[int, typer.Argument(help="Alert id.")]) -> None:
    """Close an alert (its routes get a resolution notice); the same finding later opens a new one."""
    from tasks.monitoring.notify import notify_alerts

    with open_local_registry() as registry:
        alert = AlertStore(registry).resolve(alert_id)
        sent = [f.result() for f in notify_alerts(registry, wait=True)]
    say(f"resolved alert {alert.id} ({alert.kind} {alert.subject} on {alert.model})")
    for notice in sent:
        say(f"  {notice.event} notice to {notice.route_name}: {notice.status}")
