"""``mlops monitor`` and ``mlops alerts``: drift checks on the prediction log, and the alerts they raise."""

from __future__ import annotations

import re
from typing import Annotated

import typer
from rich.table import Table

from mlops import _render as render
from mlops._cli_common import JsonOpt, NameArg, open_local_registry, say
from storage.errors import ValidationError
from storage.monitoring.alerts import Alert, AlertStore, health_score

monitor_app = typer.Typer(
    no_args_is_help=True, help="Monitoring: drift of live traffic against the reference."
)
alerts_app = typer.Typer(no_args_is_help=True, help="Monitoring alerts: list, resolve, health score.")

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


@monitor_app.command("report")
def report(
    name: NameArg,
    version: Annotated[
        str | None, typer.Option("--version", help="Version REF (default: production).")
    ] = None,
    evidently: Annotated[
        bool, typer.Option("--evidently", help="Also write Evidently's HTML drift report (slow).")
    ] = False,
    out_dir: Annotated[str, typer.Option("--out", help="Folder for the Evidently report.")] = "monitoring",
    as_json: JsonOpt = False,
) -> None:
    """Drift, performance, open alerts, health score and feature importance of a version."""
    from tasks.monitoring.report import evidently_html, monitoring_report, report_markdown

    with open_local_registry() as registry:
        found = monitoring_report(registry, name, version)
        if evidently:
            found["evidently_html"] = str(evidently_html(registry, name, found["version"], out_dir))
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
    """Open alerts (or all), newest first, with the health score per model."""
    with open_local_registry() as registry:
        store = AlertStore(registry)
        alerts = store.list(model=model, status=None if all_alerts else "open")
        open_by_model: dict[str, list[Alert]] = {}
        for a in store.open_alerts(model):
            open_by_model.setdefault(a.model, []).append(a)
    scores = {m: health_score(found) for m, found in open_by_model.items()}
    if as_json:
        render.emit_json({"alerts": [a.to_dict() for a in alerts], "health": scores})
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
    for m, score in sorted(scores.items()):
        say(f"health {m}: {score:.0f}")


@alerts_app.command("resolve")
def resolve(alert_id: Annotated[int, typer.Argument(help="Alert id.")]) -> None:
    """Close an alert; the same finding later opens a new one."""
    with open_local_registry() as registry:
        alert = AlertStore(registry).resolve(alert_id)
    say(f"resolved alert {alert.id} ({alert.kind} {alert.subject} on {alert.model})")
