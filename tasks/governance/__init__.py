"""Governance: bias, compliance frameworks, AI Act risk, erasure, governance reports.

Group fairness metrics with bootstrap intervals (``bias``), compliance
frameworks as YAML rule sets checked against evidence (``compliance``,
``compliance_checks``, ``compliance_rules/``), EU AI Act risk levels, erasure
tasks, evidence recording and the governance report with its model card.

Names are imported on first use, so importing the package stays cheap and no
import circle runs through it.

Example:
    >>> import tasks.governance
    >>> 'detect_bias' in tasks.governance.__all__
    True
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tasks.governance.bias import detect_bias
    from tasks.governance.bias_report import BiasReport, BiasThresholds
    from tasks.governance.compliance import ComplianceReport, check_compliance, load_frameworks
    from tasks.governance.evidence import record_bias_report
    from tasks.governance.report import governance_report, model_card
    from tasks.governance.risk import RiskAssessment, assess_risk

_EXPORTS = {
    "detect_bias": "tasks.governance.bias",
    "BiasReport": "tasks.governance.bias_report",
    "BiasThresholds": "tasks.governance.bias_report",
    "check_compliance": "tasks.governance.compliance",
    "load_frameworks": "tasks.governance.compliance",
    "ComplianceReport": "tasks.governance.compliance",
    "assess_risk": "tasks.governance.risk",
    "RiskAssessment": "tasks.governance.risk",
    "governance_report": "tasks.governance.report",
    "model_card": "tasks.governance.report",
    "record_bias_report": "tasks.governance.evidence",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
