"""``mlops endpoints`` and ``mlops canary``: serving endpoints and their traffic from a shell.

The commands change the endpoint configuration in the metadata database
(audited, with ``$MLOPS_USER`` as the actor); every model server reading that
database applies the change within its refresh interval. ``mlops canary run``
drives a whole canary through a running server's admin API (the
``canary-rollout`` flow).

Example::

    mlops endpoints create fraud --variant a=fraud:1:50 --variant b=fraud:@challenger:50 --policy ab
    mlops endpoints set-traffic fraud a=90 b=10 --reason "ramp down b"
    mlops endpoints ab-report fraud
    mlops canary start fraud --version 3 --steps 5,25,50,100
    mlops canary status fraud
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from blocks.settings import get_settings
from mlops import _render as render
from mlops._cli_common import JsonOpt, say
from storage.db import Database
from storage.errors import ValidationError

if TYPE_CHECKING:  # the module loads on the first endpoints command, keeping `mlops` quick to start
    from storage.endpoints.store import Endpoint, EndpointStore, VariantSpec

endpoints_app = typer.Typer(
    no_args_is_help=True, help="Serving endpoints: variants, A/B weights, shadows, blue-green."
)
canary_app = typer.Typer(no_args_is_help=True, help="Canary rollouts: start, status, analyse, roll back.")

EndpointArg = Annotated[str, typer.Argument(help="Endpoint name.")]
ReasonOpt = Annotated[str, typer.Option("--reason", help="Why, recorded in the events and audit log.")]


@contextmanager
def open_endpoints() -> Iterator[EndpointStore]:
    """The endpoint store of the metadata database ``MLOPS_*`` points at."""
    from storage.endpoints.store import EndpointStore

    settings = get_settings()
    db = Database(settings.resolved_database_url())
    try:
        yield EndpointStore(db, actor=settings.user or "unknown")
    finally:
        db.dispose()


def parse_variant(text: str, *, default_weight: float = 100.0) -> VariantSpec:
    """``name=model:version[:weight]`` as a variant.

    Example:
        >>> parse_variant("a=fraud:@champion:30")
        VariantSpec(name='a', model='fraud', version='@champion', weight=30.0, role='live')
    """
    from storage.endpoints.store import VariantSpec

    name, sep, rest = text.partition("=")
    parts = rest.split(":")
    if not sep or not name or len(parts) not in (2, 3) or not all(parts[:2]):
        raise ValidationError(f"variant {text!r} is malformed: use name=model:version[:weight]")
    weight = default_weight
    if len(parts) == 3:
        try:
            weight = float(parts[2])
        except ValueError:
            raise ValidationError(
                f"variant {text!r} has weight {parts[2]!r}: use a number (percent)"
            ) from None
    return VariantSpec(name.strip(), parts[0].strip(), parts[1].strip(), weight)


def parse_weights(items: list[str]) -> dict[str, float]:
    """``name=percent`` pairs as weights.

    Example:
        >>> parse_weights(["a=90", "b=10"])
        {'a': 90.0, 'b': 10.0}
    """
    weights: dict[str, float] = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            weights[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not name.strip():
            raise ValidationError(f"weight {item!r} is malformed: use variant=percent, e.g. a=90")
    if not weights:
        raise ValidationError("give at least one weight, e.g. a=90 b=10")
    return weights


def parse_steps(text: str) -> tuple[int, ...]:
    """``5,25,50,100`` as canary steps."""
    try:
        return tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise ValidationError(f"steps {text!r} are malformed: use percentages like 5,25,50,100") from None


def _endpoint_table(endpoint: Endpoint) -> Table:
    table = Table(title=f"{endpoint.name} ({endpoint.policy}, revision {endpoint.revision})")
    for column in ("variant", "model", "version", "weight %", "role"):
        table.add_column(column)
    for v in endpoint.variants:
        table.add_row(v.name, v.model, v.version, f"{v.weight:g}", v.role)
    return table


def _show(endpoint: Endpoint, as_json: bool) -> None:
    if as_json:
        render.emit_json({**endpoint.to_dict(), "weights": endpoint.weights()})
        return
    render.console().print(_endpoint_table(endpoint))
    extras = []
    if endpoint.shadows:
        extras.append(f"shadow {endpoint.shadow_percent:g}% of requests")
    if endpoint.live_colour:
        extras.append(f"live colour {endpoint.live_colour} (previous {endpoint.settings.get('previous')})")
    plan = endpoint.canary
    if plan is not None:
        extras.append(f"canary {plan.status}, step {plan.step + 1}/{len(plan.steps)} at {plan.weight:g}%")
    for line in extras:
        say(line)


# ------------------------------------------------------------------ endpoints
@endpoints_app.command("create")
def create(
    name: EndpointArg,
    variant: Annotated[
        list[str], typer.Option("--variant", help="name=model:version[:weight] (repeatable).")
    ],
    policy: Annotated[
        str, typer.Option("--policy", help="single, ab, canary, shadow or blue_green.")
    ] = "single",
    shadow: Annotated[
        list[str] | None, typer.Option("--shadow", help="A shadow variant name=model:version (repeatable).")
    ] = None,
    shadow_percent: Annotated[
        float, typer.Option("--shadow-percent", help="Percent of requests mirrored.")
    ] = 0.0,
    as_json: JsonOpt = False,
) -> None:
    """Create an endpoint with its variants."""
    specs = [parse_variant(v) for v in variant]
    specs += [
        VariantSpec(s.name, s.model, s.version, 0.0, "shadow") for s in map(parse_variant, shadow or [])
    ]
    with open_endpoints() as store:
        _show(store.create(name, specs, policy=policy, shadow_percent=shadow_percent), as_json)


@endpoints_app.command("list")
def list_endpoints(as_json: JsonOpt = False) -> None:
    """List endpoints with their policies and weights."""
    with open_endpoints() as store:
        found = store.list()
    if as_json:
        render.emit_json([{**e.to_dict(), "weights": e.weights()} for e in found])
        return
    table = Table(title="endpoints")
    for column in ("endpoint", "policy", "weights", "shadows"):
        table.add_column(column)
    for e in found:
        weights = ", ".join(f"{v.name}={v.model}:{v.version} {v.weight:g}%" for v in e.live)
        shadows = ", ".join(f"{v.model}:{v.version}" for v in e.shadows)
        table.add_row(e.name, e.policy, weights, f"{shadows} ({e.shadow_percent:g}%)" if shadows else "")
    render.console().print(table)


@endpoints_app.command("show")
def show(name: EndpointArg, as_json: JsonOpt = False) -> None:
    """One endpoint: variants, policy state, traffic per variant."""
    with open_endpoints() as store:
        endpoint = store.get(name)
        stats = {k: v.to_dict() for k, v in store.stats(name).items()}
    if as_json:
        render.emit_json({**endpoint.to_dict(), "weights": endpoint.weights(), "stats": stats})
        return
    _show(endpoint, False)
    for variant, s in stats.items():
        say(
            f"  {variant}: {s['requests']} requests, error rate {s['error_rate']:.4f}, "
            f"p50 {s['p50_ms']} ms, p99 {s['p99_ms']} ms"
        )


@endpoints_app.command("set-traffic")
def set_traffic(
    name: EndpointArg,
    weights: Annotated[list[str], typer.Argument(help="variant=percent pairs, e.g. a=90 b=10.")],
    reason: ReasonOpt = "",
    as_json: JsonOpt = False,
) -> None:
    """Set variant weights (percent)."""
    with open_endpoints() as store:
        _show(store.set_weights(name, parse_weights(weights), reason=reason), as_json)


@endpoints_app.command("ab-report")
def ab_report_cmd(
    name: EndpointArg,
    control: Annotated[str | None, typer.Option("--control", help="Variant compared against.")] = None,
    alpha: Annotated[float, typer.Option("--alpha", help="Significance level.")] = 0.05,
    outcomes: Annotated[
        str,
        typer.Option(
            "--outcomes",
            help="reported (stored), or accuracy / squared_error from ground truth joined to the log.",
        ),
    ] = "reported",
    as_json: JsonOpt = False,
) -> None:
    """Per-variant traffic, outcome differences with significance, sample-ratio check."""
    from serving.abtest import ab_report, ground_truth_outcomes

    if outcomes not in ("reported", "accuracy", "squared_error"):
        raise ValidationError(f"--outcomes {outcomes!r} must be reported, accuracy or squared_error")
    with open_endpoints() as store:
        values = None if outcomes == "reported" else ground_truth_outcomes(store, name, metric=outcomes)
        report = ab_report(store, name, control=control, alpha=alpha, outcomes=values).to_dict()
    if as_json:
        render.emit_json(report)
        return
    say(f"{name}: sample ratio {'ok' if report['srm_ok'] else 'MISMATCH'} (p={report['srm_p_value']})")
    for variant, t in report["traffic"].items():
        say(f"  {variant}: {t['requests']} requests, error rate {t['error_rate']:.4f}, p99 {t['p99_ms']} ms")
    for c in report["comparisons"]:
        verdict = "significant" if c["significant"] else "not significant"
        say(
            f"  {c['variant']} vs {c['control']}: {c['mean']:.4g} vs {c['mean_control']:.4g}, "
            f"diff {c['difference']:+.4g} [{c['ci_low']:.4g}, {c['ci_high']:.4g}], "
            f"p={c['p_value']:.3g} ({verdict})"
        )


@endpoints_app.command("promote-winner")
def promote_winner_cmd(
    name: EndpointArg,
    control: Annotated[str | None, typer.Option("--control", help="Variant compared against.")] = None,
    lower_is_better: Annotated[bool, typer.Option("--lower-is-better", help="Smaller outcomes win.")] = False,
    force: Annotated[str | None, typer.Option("--force", help="Promote this variant regardless.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Send all traffic to the significantly better variant."""
    from serving.abtest import promote_winner

    with open_endpoints() as store:
        winner, _report = promote_winner(
            store, name, control=control, higher_is_better=not lower_is_better, force=force
        )
        endpoint = store.get(name)
    if as_json:
        render.emit_json({"winner": winner, "weights": endpoint.weights()})
        return
    say(f"{name}: {winner} takes all traffic")


@endpoints_app.command("shadow")
def shadow_cmd(
    name: EndpointArg,
    variant: Annotated[
        list[str] | None,
        typer.Option("--variant", help="Shadow name=model:version (repeatable; none: remove)."),
    ] = None,
    percent: Annotated[float, typer.Option("--percent", help="Percent of requests mirrored.")] = 10.0,
    as_json: JsonOpt = False,
) -> None:
    """Mirror a percentage of requests to shadow versions (replaces the current shadows)."""
    specs = [parse_variant(v) for v in variant or []]
    with open_endpoints() as store:
        _show(store.set_shadow(name, specs, percent if specs else 0.0), as_json)


@endpoints_app.command("deploy")
def deploy_slot(
    name: EndpointArg,
    slot: Annotated[str, typer.Argument(help="The idle slot: blue or green.")],
    version: Annotated[str, typer.Option("--version", help="Version reference.")],
    model: Annotated[str | None, typer.Option("--model", help="Model (default: the slot's).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Point the idle blue-green slot at a version."""
    with open_endpoints() as store:
        model = model or store.get(name).variant(slot).model
        _show(store.deploy_slot(name, slot, model, version), as_json)


@endpoints_app.command("switch")
def switch(
    name: EndpointArg,
    to: Annotated[str | None, typer.Option("--to", help="Slot to make live (default: the other).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Blue-green: make the other slot live (the previous colour is kept)."""
    with open_endpoints() as store:
        _show(store.switch(name, to=to), as_json)


@endpoints_app.command("switch-back")
def switch_back(name: EndpointArg, as_json: JsonOpt = False) -> None:
    """Blue-green: make the previous colour live again at once."""
    with open_endpoints() as store:
        _show(store.switch_back(name), as_json)


@endpoints_app.command("rollback")
def rollback(
    name: EndpointArg, reason: ReasonOpt = "rolled back from the command line", as_json: JsonOpt = False
) -> None:
    """Undo the last traffic move: roll back a running canary, or switch a blue-green endpoint back."""
    with open_endpoints() as store:
        endpoint = store.get(name)
        if endpoint.policy == "canary":
            _show(store.rollback_canary(name, reason=reason), as_json)
        elif endpoint.policy == "blue_green":
            _show(store.switch_back(name), as_json)
        else:
            raise ValidationError(
                f"endpoint {name!r} has policy {endpoint.policy!r}: rollback applies to a canary "
                "or blue_green (use set-traffic for weights)"
            )


@endpoints_app.command("events")
def events(name: EndpointArg, as_json: JsonOpt = False) -> None:
    """Recorded steps and decisions of an endpoint."""
    with open_endpoints() as store:
        found = store.events(name)
    if as_json:
        render.emit_json([e.to_dict() for e in found])
        return
    for e in found:
        say(f"{e.at.isoformat(timespec='seconds')}  {e.kind:<18} {e.actor:<12} {e.detail}")


@endpoints_app.command("delete")
def delete(name: EndpointArg) -> None:
    """Remove an endpoint (audited)."""
    with open_endpoints() as store:
        store.delete(name)
    say(f"deleted endpoint {name}")


# --------------------------------------------------------------------- canary
@canary_app.command("start")
def canary_start(
    name: EndpointArg,
    version: Annotated[str, typer.Option("--version", help="The new version reference.")],
    model: Annotated[str | None, typer.Option("--model", help="Model (default: the endpoint's).")] = None,
    steps: Annotated[str, typer.Option("--steps", help="Canary weights in percent.")] = "5,25,50,100",
    max_error_rate_diff: Annotated[float, typer.Option("--max-error-rate-diff")] = 0.02,
    max_p99_ratio: Annotated[float, typer.Option("--max-p99-ratio")] = 1.5,
    min_requests: Annotated[int, typer.Option("--min-requests")] = 20,
    max_p99_ms: Annotated[
        float | None, typer.Option("--max-p99-ms", help="Absolute p99 target: above it, roll back.")
    ] = None,
    p99_floor_ms: Annotated[
        float, typer.Option("--p99-floor-ms", help="Below this canary p99 the ratio is not judged.")
    ] = 25.0,
    as_json: JsonOpt = False,
) -> None:
    """Start a canary at its first step (then `mlops canary analyze` each step, or `mlops canary run`)."""
    from storage.endpoints.store import CanaryPlan

    plan = CanaryPlan(
        parse_steps(steps),
        max_error_rate_diff,
        max_p99_ratio,
        min_requests,
        max_p99_ms=max_p99_ms,
        p99_floor_ms=p99_floor_ms,
    )
    with open_endpoints() as store:
        model = model or max(store.get(name).live, key=lambda v: v.weight).model
        _show(store.start_canary(name, model, version, plan), as_json)


@canary_app.command("status")
def canary_status(name: EndpointArg, as_json: JsonOpt = False) -> None:
    """The canary's plan, step, weights and decisions so far."""
    with open_endpoints() as store:
        endpoint = store.get(name)
        found = [e for e in store.events(name) if e.kind.startswith(("canary.", "decision."))]
    plan = endpoint.canary
    if as_json:
        render.emit_json(
            {
                "endpoint": name,
                "plan": plan.to_dict() if plan else None,
                "weights": endpoint.weights(),
                "events": [e.to_dict() for e in found],
            }
        )
        return
    if plan is None:
        say(f"{name}: no canary")
        return
    _show(endpoint, False)
    for e in found:
        say(f"  {e.at.isoformat(timespec='seconds')}  {e.kind:<16} {e.detail.get('reason', '')}")


@canary_app.command("analyze")
def canary_analyze(
    name: EndpointArg,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only report the decision.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Analyse the current step and act: advance, hold or roll back."""
    from serving.canary import run_analysis

    with open_endpoints() as store:
        result = run_analysis(store, name, apply=not dry_run)
    if as_json:
        render.emit_json(result.to_dict())
        return
    say(f"{name}: {result.decision} - {result.reason}")


@canary_app.command("rollback")
def canary_rollback(
    name: EndpointArg, reason: ReasonOpt = "rolled back from the command line", as_json: JsonOpt = False
) -> None:
    """Roll the canary back: its weight becomes 0."""
    with open_endpoints() as store:
        _show(store.rollback_canary(name, reason=reason), as_json)


@canary_app.command("run")
def canary_run(
    name: EndpointArg,
    version: Annotated[str, typer.Option("--version", help="The new version reference.")],
    model: Annotated[str, typer.Option("--model", help="Model of the new version.")],
    steps: Annotated[str, typer.Option("--steps", help="Canary weights in percent.")] = "5,25,50,100",
    step_seconds: Annotated[float, typer.Option("--step-seconds", help="How long each step runs.")] = 60.0,
    server: Annotated[
        str | None, typer.Option("--server", help="Server URL (default $MLOPS_SERVE_URL).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Run the canary-rollout flow against a running server (admin key from $MLOPS_SERVE_ADMIN_KEY)."""
    from flows.rollout import canary_rollout

    result: dict[str, Any] = canary_rollout(
        name, model, version, steps=list(parse_steps(steps)), step_seconds=step_seconds, server_url=server
    )
    if as_json:
        render.emit_json(result)
        return
    say(f"{name}: {result['status']}")
