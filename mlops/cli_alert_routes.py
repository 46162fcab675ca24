"""``mlops alerts routes``: send alerts to people through saved Prefect notification blocks.

Example::

    prefect block register -m prefect.blocks.notifications   # once per Prefect server
    mlops alerts routes add oncall --block slack-webhook/oncall --model 'fraud*' --min-severity critical
    mlops alerts routes add quality --block mlops-smtp-email/data-team --kind data_quality --renotify 24h
    mlops alerts routes test oncall
    mlops alerts routes log --status failed
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from mlops import _render as render
from mlops._cli_common import JsonOpt, open_local_registry, say
from mlops.cli_monitoring import parse_window
from storage.errors import MlopsError, ValidationError
from storage.monitoring.routes import AlertRouteStore

routes_app = typer.Typer(
    no_args_is_help=True,
    help="Alert routes: which alerts (model, severity, kind) go to which Prefect notification block.",
)

RouteArg = Annotated[str, typer.Argument(help="Route name.")]


def _check_block(reference: str) -> None:
    from tasks.monitoring.notify import load_block

    try:
        load_block(reference)
    except MlopsError:
        raise
    except Exception as exc:  # the block is missing or the Prefect API is unreachable
        raise ValidationError(
            f"cannot load the Prefect block {reference!r} ({type(exc).__name__}: {exc}); save it first "
            "(Prefect UI, `prefect block create`, or Block(...).save(name)), or pass --no-check"
        ) from exc


@routes_app.command("add")
def add(
    name: RouteArg,
    block: Annotated[
        str, typer.Option("--block", help="Saved notification block: <block-type-slug>/<name>.")
    ],
    model: Annotated[str, typer.Option("--model", help="Model name or glob ('fraud*').")] = "*",
    min_severity: Annotated[
        str, typer.Option("--min-severity", help="info, warning or critical (and above).")
    ] = "warning",
    kinds: Annotated[
        list[str] | None,
        typer.Option("--kind", help="Alert kind (repeatable): drift, data_quality, latency, ..."),
    ] = None,
    renotify: Annotated[
        str | None, typer.Option("--renotify", help="Send again while open, every 30m, 4h, 1d.")
    ] = None,
    resolved: Annotated[
        bool, typer.Option("--resolved/--no-resolved", help="Send a notice when the alert resolves.")
    ] = True,
    check: Annotated[
        bool, typer.Option("--check/--no-check", help="Load the block first (needs the Prefect API).")
    ] = True,
) -> None:
    """Add a route; the block must be saved in Prefect (checked unless --no-check)."""
    if check:
        _check_block(block)
    seconds = parse_window(renotify) * 3600 if renotify else None
    with open_local_registry() as registry:
        route = AlertRouteStore(registry).add(
            name,
            block,
            model=model,
            min_severity=min_severity,
            kinds=kinds or [],
            renotify_seconds=seconds,
            notify_resolved=resolved,
        )
    say(f"added alert route {route.name}: {route.model} {route.min_severity}+ -> {route.block}")


@routes_app.command("list")
def list_routes(as_json: JsonOpt = False) -> None:
    """Every alert route."""
    with open_local_registry() as registry:
        routes = AlertRouteStore(registry).list()
    if as_json:
        render.emit_json([r.to_dict() for r in routes])
        return
    table = Table(title="alert routes")
    for column in ("name", "model", "min severity", "kinds", "block", "re-notify", "resolved"):
        table.add_column(column)
    for r in routes:
        table.add_row(
            render.text(r.name),
            render.text(r.model),
            r.min_severity,
            ", ".join(r.kinds) or "all",
            render.text(r.block),
            "never" if r.renotify_seconds is None else f"{r.renotify_seconds / 3600:g}h",
            "yes" if r.notify_resolved else "no",
        )
    render.console().print(table)


@routes_app.command("remove")
def remove(name: RouteArg) -> None:
    """Remove a route (its notification log stays)."""
    with open_local_registry() as registry:
        route = AlertRouteStore(registry).remove(name)
    say(f"removed alert route {route.name}")


@routes_app.command("test")
def test(name: RouteArg, as_json: JsonOpt = False) -> None:
    """Send a test notice through the route now; exit code 1 when it fails."""
    from tasks.monitoring.notify import send_test

    with open_local_registry() as registry:
        notice = send_test(registry, name)
    if as_json:
        render.emit_json(notice.to_dict())
    elif notice.status == "sent":
        say(f"test notice sent through {name}")
    else:
        say(f"test notice through {name} failed: {notice.error}")
    if notice.status != "sent":
        raise typer.Exit(1)


@routes_app.command("log")
def log(
    route: Annotated[str | None, typer.Option("--route", help="Only this route's notices.")] = None,
    status: Annotated[str | None, typer.Option("--status", help="pending, sent or failed.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="How many, newest first.")] = 50,
    as_json: JsonOpt = False,
) -> None:
    """The notification log: every notice, its delivery status, attempts and last error."""
    with open_local_registry() as registry:
        found = AlertRouteStore(registry).notifications(route=route, status=status, limit=limit)
    if as_json:
        render.emit_json([n.to_dict() for n in found])
        return
    table = Table(title="alert notifications")
    for column in ("id", "route", "alert", "event", "status", "attempts", "subject", "error", "at"):
        table.add_column(column)
    for n in found:
        table.add_row(
            str(n.id),
            render.text(n.route_name),
            "-" if n.alert_id is None else str(n.alert_id),
            n.event,
            n.status,
            str(n.attempts),
            render.text(n.subject),
            render.text((n.error or "")[:80]),
            f"{n.updated_at:%Y-%m-%d %H:%M:%S}",
        )
    render.console().print(table)
