"""``mlops compliance check | frameworks``, ``mlops attest`` and ``mlops risk``.

``compliance check`` scores a model version against the compliance frameworks
(:mod:`tasks.governance.compliance`) and lists every failing rule with its remedy;
``--record`` stores the results for the ``compliance`` promotion gate.
``attest`` records a named person's attestation of a rule, with an expiry.
``risk`` shows the model's EU AI Act risk level and the obligations it brings.

Example::

    mlops risk fraud
    mlops compliance check fraud --framework GDPR --framework EU_AI_ACT --record
    mlops attest GDPR gdpr-art35-dpia --by "Dana (DPO)" --statement "DPIA 2026-03 done" --days 365
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from mlops import _render as render
from mlops._cli_common import JsonOpt, NameArg, open_local_registry, say
from storage.governance.attestations import AttestationStore

if TYPE_CHECKING:  # the rule engine imports Prefect: loaded only by the commands that use it
    from tasks.governance.compliance import ComplianceReport

compliance_app = typer.Typer(no_args_is_help=True, help="Compliance frameworks checked against evidence.")

RulesDirOpt = Annotated[
    str | None,
    typer.Option(
        "--rules-dir", help="Folder of extra framework YAML files (default $MLOPS_COMPLIANCE_RULES)."
    ),
]


def _report_tables(report: ComplianceReport) -> None:
    level = report.risk_level or "not declared"
    say(f"{report.model} version {report.version}: AI Act risk level {level}")
    for fw in report.frameworks:
        verdict = "PASS" if fw.passed else "FAIL"
        table = Table(title=f"{fw.framework} — {fw.score:.0%} ({verdict}, needs {fw.pass_threshold:.0%})")
        for column in ("rule", "status", "detail", "remedy"):
            table.add_column(column, overflow="fold")
        for r in fw.results:
            table.add_row(
                render.text(r.rule_id), r.status, render.text(r.detail), render.text(r.remedy or "-")
            )
        render.console().print(table)
        for obligation in fw.obligations:
            say(f"  obligation: {obligation}")


@compliance_app.command("check")
def check(
    name: NameArg,
    ref: Annotated[
        str | None, typer.Option("--version", help="Version REF (default: production, else latest).")
    ] = None,
    framework: Annotated[
        list[str] | None, typer.Option("--framework", help="Framework to check (repeatable; default all).")
    ] = None,
    record: Annotated[bool, typer.Option("--record", help="Store the results for promotion gates.")] = False,
    rules_dir: RulesDirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Score a version against compliance frameworks; list failing rules and their remedies."""
    from tasks.governance.compliance import check_compliance, record_compliance

    with open_local_registry() as registry:
        report = check_compliance(registry, name, ref, framework or None, rules_dir=rules_dir)
        if record:
            record_compliance(registry, report)
    if as_json:
        render.emit_json(report.to_dict() | {"recorded": record})
        return
    _report_tables(report)
    if record:
        say("recorded: " + ", ".join(f"compliance:{fw.framework}" for fw in report.frameworks))


@compliance_app.command("frameworks")
def frameworks(rules_dir: RulesDirOpt = None, as_json: JsonOpt = False) -> None:
    """List the frameworks and their rules."""
    from tasks.governance.compliance import load_frameworks

    known = load_frameworks(rules_dir)
    if as_json:
        render.emit_json({name: fw.model_dump(mode="json") for name, fw in known.items()})
        return
    table = Table(title="compliance frameworks")
    for column in ("framework", "rule", "basis", "applies when", "title"):
        table.add_column(column, overflow="fold")
    for name, fw in known.items():
        for rule in fw.rules:
            basis = rule.evidence or "attestation"
            if rule.attestation_allowed:
                basis += " (or attestation)"
            when = ", ".join(f"{k}={v}" for k, v in rule.applies_when.model_dump(exclude_none=True).items())
            table.add_row(name, render.text(rule.id), basis, when or "always", render.text(rule.title))
    render.console().print(table)


def attest(
    framework: Annotated[str, typer.Argument(help="Framework (GDPR, EU_AI_ACT, CCPA, HIPAA, SOC2...).")],
    rule: Annotated[str, typer.Argument(help="Rule id (see `mlops compliance frameworks`).")],
    by: Annotated[str, typer.Option("--by", help="The person who attests (recorded by name).")],
    statement: Annotated[str, typer.Option("--statement", help="What is attested.")],
    days: Annotated[float, typer.Option("--days", help="Days until the attestation expires.")],
    model: Annotated[str | None, typer.Option("--model", help="Only for this model (default: all).")] = None,
    rules_dir: RulesDirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Attest that a compliance rule is met, until an expiry."""
    from tasks.governance.compliance import known_rules, load_frameworks, resolve_framework

    known = load_frameworks(rules_dir)
    fw = resolve_framework(framework, known)
    with open_local_registry() as registry:
        store = AttestationStore(registry, known_rules=known_rules(known))
        found = store.attest(
            fw.framework, rule, attested_by=by, statement=statement, expires_in_days=days, model=model
        )
    if as_json:
        render.emit_json(found.to_dict())
        return
    scope = f"model {model}" if model else "every model"
    until = f"{found.expires_at:%Y-%m-%d}"
    say(f"attestation {found.id}: {fw.framework} {rule} by {by} for {scope}, until {until}")


def risk(name: NameArg, as_json: JsonOpt = False) -> None:
    """Show the model's EU AI Act risk level, why, and its obligations."""
    from tasks.governance.risk import model_risk

    with open_local_registry() as registry:
        found = model_risk(registry, name)
    if found is None:
        if as_json:
            render.emit_json({"model": name, "level": None, "reasons": ["risk level not declared"]})
            return
        say(f"{name}: risk level not declared — tag the model with domain and use_case")
        return
    if as_json:
        render.emit_json({"model": name} | found.to_dict())
        return
    say(f"{name}: {found.level} risk")
    for reason in found.reasons:
        say(f"  because: {reason}")
    for obligation in found.obligations:
        say(f"  obligation: {obligation}")
