"""Stored bias reports feed the promotion gate; missing or stale evidence fails it."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest

from blocks.policy import EvidenceGate
from storage.governance.reports import ReportStore
from storage.registry.core import Registry
from storage.schema import utcnow
from tasks.governance.bias import detect_bias
from tasks.governance.evidence import record_bias_report
from tasks.registry.gates import evaluate_gate

GATE = EvidenceGate(kind="bias_report", max_age_days=30)


def _report(gap: float) -> object:
    rng = np.random.default_rng(1)
    group = rng.choice(["a", "b"], 4000)
    y_true = rng.integers(0, 2, 4000)
    y_pred = (rng.random(4000) < np.where(group == "a", 0.5, 0.5 - gap)).astype(int)
    return detect_bias(y_true, y_pred, protected={"group": group}, n_resamples=100)


@pytest.fixture
def registry(registry: Registry) -> Registry:
    registry.create_model("credit")
    registry.create_version("credit", framework="sklearn")
    return registry


def test_missing_report_fails_the_gate(registry: Registry) -> None:
    outcome = evaluate_gate(registry, "credit", 1, GATE)
    assert (outcome.passed, outcome.detail) == (False, "no bias report for version 1")


@pytest.mark.usefixtures("prefect_harness")
def test_recorded_reports_decide_the_gate(registry: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLOPS_DATABASE_URL", registry.db.url)
    monkeypatch.setenv("MLOPS_ARTIFACT_ROOT", registry.artifacts.url)
    biased = record_bias_report.fn("credit", 1, _report(0.3))
    assert not biased.passed and "statistical_parity_difference" in biased.summary
    outcome = evaluate_gate(registry, "credit", 1, GATE)
    assert not outcome.passed and "group:" in outcome.detail
    fair = record_bias_report.fn("credit", 1, _report(0.0))
    assert fair.passed
    assert evaluate_gate(registry, "credit", 1, GATE).passed


def test_stale_report_fails_the_gate(registry: Registry) -> None:
    ReportStore(registry).save(
        "bias_report", "credit", 1, passed=True, summary="ok", created_at=utcnow() - timedelta(days=45)
    )
    outcome = evaluate_gate(registry, "credit", 1, GATE)
    assert not outcome.passed and "45 days old (max 30)" in outcome.detail


def test_compliance_reports_are_per_framework(registry: Registry) -> None:
    store = ReportStore(registry)
    store.save("compliance:GDPR", "credit", 1, passed=True, summary="GDPR 100%")
    assert evaluate_gate(registry, "credit", 1, EvidenceGate(kind="compliance", framework="GDPR")).passed
    hipaa = evaluate_gate(registry, "credit", 1, EvidenceGate(kind="compliance", framework="HIPAA"))
    assert not hipaa.passed and hipaa.detail == "no compliance report (HIPAA) for version 1"
