"""The evidence checks behind compliance rules, by name.

Each check reads evidence the platform holds about one model version
(approval requests, stored reports, the lineage store, the audit log, erasure
records, the registry's tags) and says whether it is there, recent enough
and passing. A missing piece of evidence fails the check with a message
saying what is missing; nothing here reads a self-declared "compliant: yes".

A check is ``check(context, params) -> Finding``; :func:`run_check` turns its
finding into a :class:`RuleResult` with the rule's id and remedy.

Example:
    >>> import tempfile
    >>> from storage.registry.core import Registry
    >>> from tasks.governance.compliance_checks import CheckContext, run_check
    >>> home = tempfile.mkdtemp()
    >>> reg = Registry.open(f"sqlite:///{home}/m.db", f"{home}/a", actor="ana")
    >>> _ = reg.create_model("m"); v = reg.create_version("m", framework="sklearn")
    >>> result = run_check("explainer_configured", CheckContext(reg, v), "xai", {}, "configure SHAP")
    >>> result.status, result.detail
    ('failed', 'no explainer configured for version 1')
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any, Literal

import sqlalchemy as sa

from storage import schema as t
from storage.audit import AuditLog
from storage.errors import NotFoundError
from storage.governance.lineage import DataAsset, LineageStore
from storage.governance.reports import ReportStore, StoredReport
from storage.registry.approvals import PROMOTED, ApprovalRequest, ApprovalStore
from storage.registry.core import Registry
from storage.registry.records import ModelVersion, Record
from tasks.governance.risk import RiskAssessment, model_risk

Status = Literal["passed", "failed", "attested", "not_applicable"]


@dataclass(frozen=True)
class RuleResult(Record):
    """The outcome of one rule for one version, with what to do when it failed."""

    rule_id: str
    status: Status
    detail: str
    remedy: str = ""
    title: str = ""
    basis: Literal["evidence", "attestation", "none"] = "evidence"


@dataclass(frozen=True)
class Finding:
    """What a check found: passed or not (None: the rule does not apply here), and why."""

    passed: bool | None
    detail: str


@dataclass
class CheckContext:
    """The version under check, and the evidence read once and shared by every check."""

    registry: Registry
    version: ModelVersion
    at: datetime = field(default_factory=t.utcnow)

    @property
    def model(self) -> str:
        return self.version.model

    @property
    def number(self) -> int:
        return self.version.number

    @cached_property
    def risk(self) -> RiskAssessment | None:
        """The AI Act risk level from the model's and the version's tags, or None when not declared."""
        return model_risk(self.registry, self.model, self.number)

    @cached_property
    def datasets(self) -> list[DataAsset]:
        """The registered data assets this version was trained on."""
        return LineageStore(self.registry).datasets_for_version(self.model, self.number)

    @property
    def contains_pii(self) -> bool:
        """Whether any training dataset holds personal data; True when none is registered (cautious)."""
        return not self.datasets or any(d.contains_pii for d in self.datasets)

    def report(self, kind: str) -> StoredReport | None:
        return ReportStore(self.registry).latest(kind, self.model, self.number)

    def age_days(self, when: datetime) -> float:
        return (self.at - when).total_seconds() / 86400


Check = Callable[[CheckContext, Mapping[str, Any]], Finding]


def _max_age(params: Mapping[str, Any], default: float) -> float:
    return float(params.get("max_age_days", default))


def _recent_report(
    ctx: CheckContext, kind: str, label: str, max_age: float
) -> tuple[StoredReport | None, str]:
    found = ctx.report(kind)
    if found is None:
        return None, f"no {label} recorded for version {ctx.number}"
    age = ctx.age_days(found.created_at)
    if age > max_age:
        return None, f"the {label} for version {ctx.number} is {age:.0f} days old (max {max_age:g})"
    return found, ""


_REQUEST_IN_REASON = re.compile(r"^approval request (\d+)")


def approvals_for_production(ctx: CheckContext, params: Mapping[str, Any]) -> Finding:
    """The version's latest move into production came from a promoted request with enough approvals."""
    moves = [m for m in ctx.registry.stage_history(ctx.model, ctx.number) if m.to_stage == "production"]
    if not moves:
        return Finding(None, f"version {ctx.number} has never been in production")
    move = moves[-1]
    when = f"{move.at:%Y-%m-%d %H:%M} by {move.actor}"
    match = _REQUEST_IN_REASON.match(move.reason)
    if match is None:
        return Finding(
            False, f"version {ctx.number} was moved to production on {when} without an approval request"
        )
    request_id = int(match.group(1))
    try:
        req: ApprovalRequest | None = ApprovalStore(ctx.registry).get(request_id)
    except NotFoundError:
        req = None
    if (
        req is None
        or req.model != ctx.model
        or req.version != ctx.number
        or req.target_stage != "production"
        or req.status != PROMOTED
    ):
        return Finding(
            False,
            f"the move to production on {when} cites approval request {request_id}, which did not promote it",
        )
    needed = max(req.required_approvals, int(params.get("min_approvals", 1)))
    if req.approvals < needed:
        return Finding(False, f"approval request {request_id} had {req.approvals} approvals, needs {needed}")
    reviewers = ", ".join(d.reviewer for d in req.decisions if d.decision == "approve")
    return Finding(
        True, f"promoted by approval request {request_id}: {req.approvals} approvals ({reviewers})"
    )


def bias_report_recent_passing(ctx: CheckContext, params: Mapping[str, Any]) -> Finding:
    """A bias report exists for the version, is recent and passed."""
    found, why = _recent_report(ctx, "bias_report", "bias report", _max_age(params, 90))
    if found is None:
        return Finding(False, why)
    if not found.passed:
        return Finding(False, f"the bias report for version {ctx.number} failed: {found.summary}")
    return Finding(True, f"bias report of {found.created_at:%Y-%m-%d} passed: {found.summary}")


def drift_check_recent(ctx: CheckContext, params: Mapping[str, Any]) -> Finding:
    """Drift monitoring ran for the version within its SLA (``max_age_days``)."""
    found, why = _recent_report(ctx, "drift_check", "drift check", _max_age(params, 7))
    if found is None:
        return Finding(False, why)
    outcome = "no drift" if found.passed else f"drift found: {found.summary}"
    return Finding(True, f"drift check ran {found.created_at:%Y-%m-%d %H:%M} ({outcome})")


def explainer_configured(ctx: CheckContext, params: Mapping[str, Any]) -> Finding:
    """An explainer (SHAP, LIME...) is configured for the version."""
    explainer = ctx.version.extra.get("explainer")
    if not isinstance(explainer, Mapping) or not explainer.get("kind"):
        return Finding(False, f"no explainer configured for version {ctx.number}")
    return Finding(True, f"explainer {explainer['kind']} configured for version {ctx.number}")


def audit_chain_verifies(ctx: CheckContext, params: Mapping[str, Any]) -> Finding:
    """The audit log's hash chain verifies end to end."""
    report = AuditLog(ctx.registry.db).verify()
    if not report.ok:
        return Finding(False, f"the audit log does not verify: {report.problem}")
    return Finding(True, f"the audit log verifies ({report.checked} entries)")


def training_data_registered(ctx: CheckContext, params: Mapping[str, Any]) -> Finding:
    """The training data is registered with its source, owner, PII flag and retention."""
    if not ctx.datasets:
        return Finding(False, f"no registered dataset is linked to version {ctx.number}")
    gaps = []
    for d in ctx.datasets:
        missing = [name for name in ("source", "owner") if not str(getattr(d, name) or "").strip()]
        if not isinstance(d.contains_pii, bool):
            missing.append("PII flag")
        if d.contains_pii and d.retention_days is None:
            missing.append("retention period")
        if missing:
            gaps.append(f"dataset {d.name!r} has no {', '.join(missing)}")
    if gaps:
        return Finding(False, "; ".join(gaps))
    return Finding(True, "registered: " + ", ".join(f"{d.name} (source {d.source})" for d in ctx.datasets))


def retention_defined_for_pii(ctx: CheckContext, params: Mapping[str, Any]) -> Finding:
    """Every training dataset with personal data has a retention period (within ``max_retention_days``)."""
    if not ctx.datasets:
        return Finding(False, f"no registered dataset is linked to version {ctx.number}: PII unknown")
    pii = [d for d in ctx.datasets if d.contains_pii]
    if not pii:
        return Finding(None, "no training dataset holds personal data")
    limit = params.get("max_retention_days")
    bad = []
    for d in pii:
        if d.retention_days is None:
            bad.append(f"dataset {d.name!r} holds personal data but has no retention period")
        elif limit is not None and d.retention_days > float(limit):
            bad.append(f"dataset {d.name!r} is kept {d.retention_days} days (max {limit})")
    if bad:
        return Finding(False, "; ".join(bad))
    return Finding(True, ", ".join(f"{d.name}: {d.retention_days} days" for d in pii))


def serving_requires_api_keys(ctx: CheckContext, params: Mapping[str, Any]) -> Finding:
    """The serving configuration recorded for the version requires API keys."""
    found = ctx.report("serving_config")
    if found is None:
        return Finding(False, f"no serving configuration recorded for version {ctx.number}")
    if found.payload.get("api_keys_required") is not True:
        return Finding(False, f"serving of version {ctx.number} does not require API keys")
    return Finding(True, f"serving requires API keys (config of {found.created_at:%Y-%m-%d})")


def erasure_verified_recently(ctx: CheckContext, params: Mapping[str, Any]) -> Finding:
    """A right-to-erasure request was carried out and verified within ``max_age_days``."""
    max_age = _max_age(params, 90)
    e = t.erasures.c
    with ctx.registry.db.read() as conn:
        row = conn.execute(
            sa.select(e.entity_key, e.created_at).where(e.verified.is_(True)).order_by(e.id.desc()).limit(1)
        ).first()
    if row is None:
        return Finding(False, "no verified erasure is recorded")
    age = ctx.age_days(row.created_at)
    if age > max_age:
        return Finding(False, f"the last verified erasure is {age:.0f} days old (max {max_age:g})")
    return Finding(True, f"erasure of {row.entity_key!r} verified on {row.created_at:%Y-%m-%d}")


def risk_level_declared(ctx: CheckContext, params: Mapping[str, Any]) -> Finding:
    """The model declares a domain and use case, so its AI Act risk level is known."""
    if ctx.risk is None:
        return Finding(
            False,
            f"risk level not declared: model {ctx.model!r} (or version {ctx.number}) needs tags "
            "domain and use_case",
        )
    return Finding(True, f"risk level {ctx.risk.level}: {'; '.join(ctx.risk.reasons)}")


def risk_level_not_prohibited(ctx: CheckContext, params: Mapping[str, Any]) -> Finding:
    """The declared use is not a practice prohibited by Article 5."""
    if ctx.risk is None:
        return Finding(False, "risk level not declared: cannot rule out a prohibited practice")
    if ctx.risk.level == "unacceptable":
        return Finding(False, f"prohibited practice: {'; '.join(ctx.risk.reasons)}")
    return Finding(True, f"risk level {ctx.risk.level}: not a prohibited practice")


CHECKS: dict[str, Check] = {
    check.__name__: check
    for check in (
        approvals_for_production,
        bias_report_recent_passing,
        drift_check_recent,
        explainer_configured,
        audit_chain_verifies,
        training_data_registered,
        retention_defined_for_pii,
        serving_requires_api_keys,
        erasure_verified_recently,
        risk_level_declared,
        risk_level_not_prohibited,
    )
}

#: Checks that always give a verdict (never "does not apply"): a framework anchors its score on one.
ALWAYS_APPLICABLE = frozenset(CHECKS) - {"approvals_for_production", "retention_defined_for_pii"}


def run_check(
    name: str, ctx: CheckContext, rule_id: str, params: Mapping[str, Any], remedy: str, title: str = ""
) -> RuleResult:
    """Run the check ``name`` and turn its finding into the rule's result."""
    finding = CHECKS[name](ctx, params)
    if finding.passed is None:
        return RuleResult(rule_id, "not_applicable", finding.detail, "", title)
    if finding.passed:
        return RuleResult(rule_id, "passed", finding.detail, "", title)
    return RuleResult(rule_id, "failed", finding.detail, remedy, title)
