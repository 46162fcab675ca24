"""``mlops compliance check | frameworks``, ``mlops attest`` and ``mlops risk``, on an app built here."""

from __future__ import annotations

import json
from typing import Any

import typer
from typer.testing import CliRunner, Result

from mlops._cli_common import ErrorReportingGroup
from mlops.cli_compliance import attest, compliance_app, risk
from storage.governance.reports import ReportStore
from storage.registry.core import Registry

app = typer.Typer(cls=ErrorReportingGroup, no_args_is_help=True)
app.add_typer(compliance_app, name="compliance")
app.command("attest")(attest)
app.command("risk")(risk)


def run(*args: str) -> Result:
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})


def ok_json(*args: str) -> Any:
    result = run(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _model() -> Registry:
    registry = Registry.from_settings()
    registry.create_model("credit", tags={"domain": "finance", "use_case": "credit scoring"})
    registry.create_version("credit", framework="sklearn")
    return registry


def test_check_lists_failing_rules_with_remedies_and_records() -> None:
    registry = _model()
    report = ok_json("compliance", "check", "credit", "--framework", "GDPR", "--record")
    gdpr = report["frameworks"][0]
    assert (report["risk_level"], report["recorded"], gdpr["passed"]) == ("high", True, False)
    assert "gdpr-art22-explanation" in gdpr["failing"]
    stored = ReportStore(registry).latest("compliance:GDPR", "credit", 1)
    assert stored is not None and not stored.passed
    human = run("compliance", "check", "credit", "--framework", "EU_AI_ACT", "--version", "1")
    assert human.exit_code == 0, human.output
    assert "AI Act risk level high" in human.stdout
    assert "no explainer configured for version 1" in human.stdout
    assert "obligation: human oversight (Art. 14)" in human.stdout


def test_attest_then_the_rule_counts_as_attested() -> None:
    _model()
    made = ok_json(
        "attest",
        "GDPR",
        "gdpr-art35-dpia",
        "--by",
        "Dana",
        "--statement",
        "DPIA done",
        "--days",
        "30",
        "--model",
        "credit",
    )
    assert (made["attested_by"], made["model"]) == ("Dana", "credit")
    report = ok_json("compliance", "check", "credit", "--framework", "gdpr")
    dpia = next(r for r in report["frameworks"][0]["results"] if r["rule_id"] == "gdpr-art35-dpia")
    assert dpia["status"] == "attested"
    said = run(
        "attest", "soc 2", "soc2-cc3.2-risk-assessment", "--by", "Ro", "--statement", "ok", "--days", "1"
    )
    assert said.exit_code == 0 and "SOC2 soc2-cc3.2-risk-assessment by Ro for every model" in said.stdout


def test_bad_input_is_an_error_line_not_a_traceback() -> None:
    _model()
    unknown = run("compliance", "check", "credit", "--framework", "PCI")
    assert unknown.exit_code == 1 and "error: compliance framework 'PCI' is unknown" in unknown.stderr
    rule = run("attest", "GDPR", "nope", "--by", "D", "--statement", "x", "--days", "3")
    assert rule.exit_code == 1 and "rule 'nope' is not in framework GDPR" in rule.stderr
    days = run("attest", "GDPR", "gdpr-art35-dpia", "--by", "D", "--statement", "x", "--days", "0")
    assert days.exit_code == 1 and "must be positive" in days.stderr
    assert "has no version 9" in run("compliance", "check", "credit", "--version", "9").stderr


def test_frameworks_and_risk() -> None:
    registry = _model()
    registry.create_model("bare")
    listed = ok_json("compliance", "frameworks")
    assert sorted(listed) == ["CCPA", "EU_AI_ACT", "GDPR", "HIPAA", "SOC2"]
    table = run("compliance", "frameworks")
    assert table.exit_code == 0 and "gdpr-art35-dpia" in table.stdout
    assert ok_json("risk", "credit")["level"] == "high"
    assert ok_json("risk", "bare")["level"] is None
    human = run("risk", "credit")
    assert "credit: high risk" in human.stdout and "essential services" in human.stdout
