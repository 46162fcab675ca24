"""Evidence gates checked before a stage move is put to reviewers.

Each gate is a named check with a recorded result. Reports that other parts of
the platform produce (bias, compliance) are found through evidence providers:
a provider returns the newest report for a version, or None, and a gate whose
evidence is missing fails with a message saying so: it never passes silently.

Example:
    >>> import tempfile
    >>> from blocks.policy import MetricGate
    >>> from storage.registry.core import Registry
    >>> home = tempfile.mkdtemp()
    >>> reg = Registry.open(f"sqlite:///{home}/m.db", f"{home}/a")
    >>> _ = reg.create_model("m"); _ = reg.create_version("m", framework="sklearn", metrics={"auc": 0.8})
    >>> evaluate_gate(reg, "m", 1, MetricGate(metric="auc", threshold=0.9))
    GateOutcome(name='auc >= 0.9', passed=False, detail='version 1 has auc 0.8, needs >= 0.9')
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from prefect import task

from blocks.metrics import metric_value
from blocks.policy import ChampionGate, EvidenceGate, Gate, MetricGate
from storage.errors import NotFoundError
from storage.governance.reports import ReportStore
from storage.registry.approvals import GateOutcome
from storage.registry.core import Registry
from storage.registry.reads import VersionRef
from storage.registry.records import ModelVersion
from storage.schema import utcnow
from tasks.registry.steps import open_registry

_OPS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt}


@dataclass(frozen=True)
class Evidence:
    """A report about a version: whether it passed, when it was made, a summary."""

    passed: bool
    created_at: datetime
    summary: str


EvidenceProvider = Callable[[Registry, str, int, EvidenceGate], Evidence | None]


def report_kind(gate: EvidenceGate) -> str:
    """The stored report kind a gate reads: ``bias_report``, ``compliance:GDPR``..."""
    return f"{gate.kind}:{gate.framework}" if gate.framework else gate.kind


def stored_report(registry: Registry, model: str, number: int, gate: EvidenceGate) -> Evidence | None:
    """The newest report of the gate's kind stored for the version (:mod:`storage.governance.reports`)."""
    found = ReportStore(registry).latest(report_kind(gate), model, number)
    return None if found is None else Evidence(found.passed, found.created_at, found.summary)


#: Providers by gate kind: stored reports by default; others may be registered.
EVIDENCE_PROVIDERS: dict[str, EvidenceProvider] = {"bias_report": stored_report, "compliance": stored_report}


def register_evidence_provider(kind: str, provider: EvidenceProvider) -> None:
    """Make reports of ``kind`` available to evidence gates."""
    EVIDENCE_PROVIDERS[kind] = provider


def _metric_gate(version: ModelVersion, gate: MetricGate) -> GateOutcome:
    number, value = version.number, metric_value(version.metrics, gate.metric)  # aliases count
    if value is None:
        return GateOutcome(gate.name, False, f"version {number} has no metric {gate.metric!r}")
    passed = bool(_OPS[gate.op](value, gate.threshold))
    return GateOutcome(
        gate.name,
        passed,
        f"version {number} has {gate.metric} {value:.6g}, needs {gate.op} {gate.threshold:g}",
    )


def _champion_gate(registry: Registry, model: str, number: int, gate: ChampionGate) -> GateOutcome:
    try:
        champion = registry.get_version(model, f"@{gate.alias}").number
    except NotFoundError:
        return GateOutcome(gate.name, True, f"no {gate.alias} yet: nothing to beat")
    if champion == number:
        return GateOutcome(gate.name, True, f"version {number} is already the {gate.alias}")
    result = registry.compare(
        model,
        [number],
        primary=gate.metric,
        direction=gate.direction,
        min_improvement=gate.min_improvement,
        baseline=champion,
    )
    return GateOutcome(gate.name, result.winner == number, result.reason)


def _evidence_gate(registry: Registry, model: str, number: int, gate: EvidenceGate) -> GateOutcome:
    label = "bias report" if gate.kind == "bias_report" else "compliance report"
    if gate.framework:
        label += f" ({gate.framework})"
    provider = EVIDENCE_PROVIDERS.get(gate.kind)
    evidence = provider(registry, model, number, gate) if provider else None
    if evidence is None:
        return GateOutcome(gate.name, False, f"no {label} for version {number}")
    age = utcnow() - evidence.created_at
    if age > timedelta(days=gate.max_age_days):
        return GateOutcome(
            gate.name,
            False,
            f"the {label} for version {number} is {age.days} days old (max {gate.max_age_days:g})",
        )
    return GateOutcome(gate.name, evidence.passed, evidence.summary)


def evaluate_gate(registry: Registry, model: str, version: VersionRef, gate: Gate) -> GateOutcome:
    """Check one gate for a version."""
    found = registry.get_version(model, version)
    number = found.number
    if isinstance(gate, MetricGate):
        return _metric_gate(found, gate)
    if isinstance(gate, ChampionGate):
        return _champion_gate(registry, model, number, gate)
    return _evidence_gate(registry, model, number, gate)


@task(name="evaluate-evidence-gates")
def evaluate_gates(
    model: str, version: VersionRef, gates: Sequence[Gate], *, registry_block: str | None = None
) -> list[GateOutcome]:
    """Check every gate; the results are recorded with the approval request."""
    registry = open_registry(registry_block)
    return [evaluate_gate(registry, model, version, gate) for gate in gates]
