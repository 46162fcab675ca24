"""Compliance frameworks as declarative rule sets, checked against the platform's evidence.

A framework (GDPR, EU AI Act, CCPA, HIPAA, SOC 2 are built in, under
``tasks/governance/compliance_rules/``) is a YAML file of rules. A rule is either
*verified*: ``evidence`` names a check in :mod:`tasks.governance.compliance_checks` that
reads what the platform holds (approvals, reports, lineage, the audit log,
erasures); or *attested*: ``attestation: true``, met only while a named
person's unexpired attestation exists (:mod:`storage.governance.attestations`). A
verified rule with ``attestation_allowed: true`` may fall back to an
attestation. ``applies_when`` limits a rule to an AI Act risk level or to
models trained on personal data.

The score of a framework is (passed + attested) / applicable rules. Every
framework must hold at least one evidence rule that always applies and may
not be attested, so a score made of self-declared statements alone cannot
exist. Users add frameworks (or replace built-in ones) with YAML files in a
folder: the ``rules_dir`` argument or ``MLOPS_COMPLIANCE_RULES``.

Example:
    >>> import tempfile
    >>> from storage.registry.core import Registry
    >>> from tasks.governance.compliance import check_compliance, load_frameworks
    >>> sorted(load_frameworks())
    ['CCPA', 'EU_AI_ACT', 'GDPR', 'HIPAA', 'SOC2']
    >>> home = tempfile.mkdtemp()
    >>> reg = Registry.open(f"sqlite:///{home}/m.db", f"{home}/a", actor="ana")
    >>> _ = reg.create_model("m", tags={"domain": "retail", "use_case": "demand forecast"})
    >>> _ = reg.create_version("m", framework="sklearn")
    >>> report = check_compliance(reg, "m", frameworks=["SOC2"])
    >>> soc2 = report.frameworks[0]
    >>> soc2.passed, [r.rule_id for r in soc2.failing][:2]
    (False, ['soc2-cc7.2-monitoring', 'soc2-cc6.1-logical-access'])
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import pydantic
import yaml
from prefect import task
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from storage.errors import NotFoundError, ValidationError
from storage.governance.attestations import AttestationStore
from storage.governance.reports import ReportStore, StoredReport
from storage.registry.core import Registry
from storage.registry.reads import VersionRef
from storage.registry.records import Record
from tasks.governance.compliance_checks import ALWAYS_APPLICABLE, CHECKS, CheckContext, RuleResult, run_check

RULES_ENV = "MLOPS_COMPLIANCE_RULES"


# ------------------------------------------------------------------ rule files
class AppliesWhen(BaseModel):
    """When a rule applies: AI Act risk levels, and/or training data with personal data."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    risk_level: list[Literal["unacceptable", "high", "limited", "minimal"]] | None = None
    contains_pii: bool | None = None


class Rule(BaseModel):
    """One rule of a framework: verified by an evidence check, or attested."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
    title: str = Field(min_length=1)
    evidence: str | None = None
    attestation: bool = False
    attestation_allowed: bool = False
    applies_when: AppliesWhen = AppliesWhen()
    params: dict[str, float | int | str | bool] = Field(default_factory=dict)
    remedy: str = Field(min_length=1)

    @field_validator("evidence")
    @classmethod
    def _known_check(cls, value: str | None) -> str | None:
        if value is not None and value not in CHECKS:
            raise ValueError(f"unknown evidence check {value!r}: known are {', '.join(sorted(CHECKS))}")
        return value

    @model_validator(mode="after")
    def _one_basis(self) -> Rule:
        if (self.evidence is None) == (not self.attestation):
            raise ValueError("give exactly one of 'evidence: <check>' or 'attestation: true'")
        if self.attestation_allowed and self.evidence is None:
            raise ValueError("'attestation_allowed' needs an 'evidence' check to fall back from")
        return self


class Framework(BaseModel):
    """A compliance framework: its rules and the score it needs to pass."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    framework: str = Field(pattern=r"^[A-Za-z0-9_]{1,64}$")
    title: str = Field(min_length=1)
    pass_threshold: float = Field(default=1.0, gt=0, le=1)
    rules: list[Rule] = Field(min_length=1)

    @model_validator(mode="after")
    def _sound(self) -> Framework:
        seen: set[str] = set()
        for rule in self.rules:
            if rule.id in seen:
                raise ValueError(f"rule id {rule.id!r} appears more than once")
            seen.add(rule.id)
        anchored = any(
            r.evidence in ALWAYS_APPLICABLE and not r.attestation_allowed and r.applies_when == AppliesWhen()
            for r in self.rules
        )
        if not anchored:
            raise ValueError(
                "needs at least one rule verified by evidence that always applies and cannot be attested "
                f"(one of {', '.join(sorted(ALWAYS_APPLICABLE))}): "
                "a score from attestations alone is not allowed"
            )
        return self

    def rule(self, rule_id: str) -> Rule:
        for rule in self.rules:
            if rule.id == rule_id:
                return rule
        raise NotFoundError(
            f"rule {rule_id!r} is not in framework {self.framework}: known rules are "
            + ", ".join(r.id for r in self.rules)
        )


def _where(loc: Sequence[int | str], raw: Any) -> str:
    """``rules[2] (id 'x').evidence`` from a pydantic error location."""
    rules = raw.get("rules") if isinstance(raw, dict) else None
    parts: list[str] = []
    for i, part in enumerate(loc):
        if not isinstance(part, int):
            parts.append(str(part))
            continue
        label = f"[{part}]"
        if tuple(loc[:i]) == ("rules",) and isinstance(rules, list) and 0 <= part < len(rules):
            rule = rules[part]
            if isinstance(rule, dict) and rule.get("id"):
                label += f" (id {rule['id']!r})"
        parts.append((parts.pop() if parts else "") + label)
    return ".".join(parts) or "(top level)"


def parse_framework(text: str, source: str) -> Framework:
    """Validate one rule file's text; errors name ``source`` and the field."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValidationError(f"compliance rule file {source} is not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ValidationError(
            f"compliance rule file {source} must hold a mapping with framework, title, rules"
        )
    try:
        return Framework.model_validate(raw)
    except pydantic.ValidationError as exc:
        problems = [f"field {_where(e['loc'], raw)}: {e['msg']}" for e in exc.errors()]
        raise ValidationError(f"compliance rule file {source}: " + "; ".join(problems)) from None


def _folder(path: Path) -> dict[str, tuple[Framework, str]]:
    if not path.is_dir():
        raise ValidationError(f"compliance rules folder {str(path)!r} does not exist or is not a folder")
    found: dict[str, tuple[Framework, str]] = {}
    for file in sorted([*path.glob("*.yaml"), *path.glob("*.yml")]):
        fw = parse_framework(file.read_text(encoding="utf-8"), str(file))
        if fw.framework in found:
            raise ValidationError(
                f"framework {fw.framework} is defined twice: in {found[fw.framework][1]} and in {file}"
            )
        found[fw.framework] = (fw, str(file))
    return found


def load_frameworks(rules_dir: str | Path | None = None) -> dict[str, Framework]:
    """The built-in frameworks plus those in ``rules_dir`` (default ``$MLOPS_COMPLIANCE_RULES``).

    A user file whose ``framework`` matches a built-in one replaces it.
    """
    frameworks: dict[str, Framework] = {}
    package = resources.files("tasks.governance.compliance_rules")
    for item in sorted(package.iterdir(), key=lambda p: p.name):
        if item.name.endswith((".yaml", ".yml")):
            fw = parse_framework(
                item.read_text(encoding="utf-8"), f"tasks/governance/compliance_rules/{item.name}"
            )
            frameworks[fw.framework] = fw
    folder = rules_dir if rules_dir is not None else os.environ.get(RULES_ENV) or None
    if folder is not None:
        frameworks.update({name: fw for name, (fw, _) in _folder(Path(folder)).items()})
    return frameworks


def _key(name: str) -> str:
    return re.sub(r"[\s_\-]+", "", name).upper()


def resolve_framework(name: str, frameworks: Mapping[str, Framework]) -> Framework:
    """The framework called ``name`` (case, spaces, '-' and '_' ignored: 'soc 2', 'eu-ai-act')."""
    by_key = {_key(k): fw for k, fw in frameworks.items()}
    found = by_key.get(_key(name)) if isinstance(name, str) else None
    if found is None:
        raise NotFoundError(
            f"compliance framework {name!r} is unknown: known are {', '.join(sorted(frameworks))}"
        )
    return found


def known_rules(frameworks: Mapping[str, Framework]) -> dict[str, set[str]]:
    """Framework → rule ids, for :class:`storage.governance.attestations.AttestationStore`."""
    return {name: {r.id for r in fw.rules} for name, fw in frameworks.items()}


# --------------------------------------------------------------------- results
@dataclass(frozen=True)
class FrameworkResult(Record):
    """One framework's score for a version, with each rule's result."""

    framework: str
    title: str
    score: float
    pass_threshold: float
    applicable: int
    verified: int
    attested: int
    results: list[RuleResult]
    obligations: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.score >= self.pass_threshold

    @property
    def failing(self) -> list[RuleResult]:
        return [r for r in self.results if r.status == "failed"]

    def summary(self) -> str:
        head = f"{self.framework}: {self.verified + self.attested}/{self.applicable} rules ({self.score:.0%})"
        if not self.failing:
            return head
        return head + "; failing: " + ", ".join(r.rule_id for r in self.failing)

    def to_dict(self) -> dict[str, Any]:
        return super().to_dict() | {"passed": self.passed, "failing": [r.rule_id for r in self.failing]}


@dataclass(frozen=True)
class ComplianceReport(Record):
    """Every framework checked for one model version, and the model's AI Act risk level."""

    model: str
    version: int
    checked_at: datetime
    risk_level: str | None
    risk_reasons: list[str]
    frameworks: list[FrameworkResult]

    def to_dict(self) -> dict[str, Any]:
        return super().to_dict() | {"frameworks": [fw.to_dict() for fw in self.frameworks]}

    def framework(self, name: str) -> FrameworkResult:
        for result in self.frameworks:
            if _key(result.framework) == _key(name):
                return result
        raise NotFoundError(f"framework {name!r} was not checked in this report")


# --------------------------------------------------------------------- checking
def _applies(rule: Rule, ctx: CheckContext) -> str | None:
    """None when the rule applies, else why it does not."""
    cond = rule.applies_when
    if cond.risk_level is not None:
        level = ctx.risk.level if ctx.risk else "high"  # undeclared: treated as high, cautiously
        if level not in cond.risk_level:
            return f"applies to risk level {', '.join(cond.risk_level)}; this model is {level}"
    if cond.contains_pii is not None and ctx.contains_pii != cond.contains_pii:
        return (
            "applies only when training data holds personal data"
            if cond.contains_pii
            else "applies without PII"
        )
    return None


def _attested(store: AttestationStore, fw: Framework, rule: Rule, ctx: CheckContext) -> RuleResult | None:
    found = store.valid(fw.framework, rule.id, ctx.model, at=ctx.at)
    if found is None:
        return None
    detail = f"attested by {found.attested_by} until {found.expires_at:%Y-%m-%d}: {found.statement}"
    return RuleResult(rule.id, "attested", detail, "", rule.title, "attestation")


def _check_rule(store: AttestationStore, fw: Framework, rule: Rule, ctx: CheckContext) -> RuleResult:
    why_not = _applies(rule, ctx)
    if why_not is not None:
        return RuleResult(rule.id, "not_applicable", why_not, "", rule.title, "none")
    if rule.evidence is not None:
        result = run_check(rule.evidence, ctx, rule.id, rule.params, rule.remedy, rule.title)
        if result.status == "failed" and rule.attestation_allowed:
            return _attested(store, fw, rule, ctx) or result
        return result
    attested = _attested(store, fw, rule, ctx)
    if attested is not None:
        return attested
    last = store.latest(fw.framework, rule.id, ctx.model)
    detail = "no attestation recorded"
    if last is not None and last.expired(ctx.at):
        detail = f"the attestation by {last.attested_by} expired on {last.expires_at:%Y-%m-%d}"
    return RuleResult(rule.id, "failed", detail, rule.remedy, rule.title, "attestation")


def check_framework(
    registry: Registry, fw: Framework, ctx: CheckContext, store: AttestationStore | None = None
) -> FrameworkResult:
    """Check every rule of one framework for the version in ``ctx``."""
    store = store or AttestationStore(registry)
    results = [_check_rule(store, fw, rule, ctx) for rule in fw.rules]
    applicable = [r for r in results if r.status != "not_applicable"]
    verified = sum(r.status == "passed" for r in applicable)
    attested = sum(r.status == "attested" for r in applicable)
    score = (verified + attested) / len(applicable) if applicable else 0.0
    obligations = list(ctx.risk.obligations) if fw.framework == "EU_AI_ACT" and ctx.risk else []
    return FrameworkResult(
        fw.framework,
        fw.title,
        score,
        fw.pass_threshold,
        len(applicable),
        verified,
        attested,
        results,
        obligations,
    )


def check_compliance(
    registry: Registry,
    model: str,
    version: VersionRef | None = None,
    frameworks: Sequence[str] | None = None,
    *,
    rules_dir: str | Path | None = None,
    at: datetime | None = None,
) -> ComplianceReport:
    """Check a version (default: the production one, else the latest) against frameworks (default: all)."""
    known = load_frameworks(rules_dir)
    chosen = [resolve_framework(n, known) for n in frameworks] if frameworks else list(known.values())
    if version is None:
        try:
            mv = registry.get_version(model, "production")
        except NotFoundError:
            mv = registry.get_version(model, "latest")
    else:
        mv = registry.get_version(model, version)
    ctx = CheckContext(registry, mv) if at is None else CheckContext(registry, mv, at)
    store = AttestationStore(registry, known_rules=known_rules(known))
    results = [check_framework(registry, fw, ctx, store) for fw in chosen]
    risk = ctx.risk
    return ComplianceReport(
        model, mv.number, ctx.at, risk.level if risk else None, list(risk.reasons) if risk else [], results
    )


def record_compliance(
    registry: Registry, report: ComplianceReport, *, threshold: float | None = None, actor: str | None = None
) -> list[StoredReport]:
    """Store each framework's result as a ``compliance:<FRAMEWORK>`` report, for promotion gates.

    A framework passes when its score reaches ``threshold`` (default: the framework's own).
    """
    if threshold is not None and not 0 < threshold <= 1:
        raise ValidationError(f"threshold {threshold!r} must be in (0, 1]")
    stored = []
    reports = ReportStore(registry)
    for result in report.frameworks:
        needed = result.pass_threshold if threshold is None else threshold
        payload = result.to_dict() | {"risk_level": report.risk_level, "threshold": needed}
        stored.append(
            reports.save(
                f"compliance:{result.framework}",
                report.model,
                report.version,
                passed=result.score >= needed,
                summary=result.summary(),
                payload=payload,
                actor=actor,
            )
        )
    return stored


# ----------------------------------------------------------------------- tasks
@task(name="check-compliance")
def check_compliance_task(
    model: str,
    version: VersionRef | None = None,
    frameworks: Sequence[str] | None = None,
    *,
    record: bool = True,
    registry_block: str | None = None,
) -> ComplianceReport:
    """Check (and by default record) compliance for a version of the registry a block points at."""
    from tasks.registry.steps import open_registry

    registry = open_registry(registry_block)
    report = check_compliance(registry, model, version, frameworks)
    if record:
        record_compliance(registry, report)
    return report
