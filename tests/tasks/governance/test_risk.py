"""EU AI Act risk levels from a declared domain and use case."""

from __future__ import annotations

import pytest

from storage.errors import ValidationError
from storage.registry.core import Registry
from tasks.governance.risk import OBLIGATIONS, assess_risk, model_risk


@pytest.mark.parametrize(
    ("domain", "use_case", "level", "reason"),
    [
        ("public sector", "social scoring of citizens", "unacceptable", "Art. 5(1)(c)"),
        ("law enforcement", "real-time biometric identification in public spaces", "unacceptable", "5(1)(h)"),
        ("hr", "CV screening for recruitment", "high", "employment"),
        ("finance", "credit scoring", "high", "essential services"),
        ("banking", "creditworthiness of loan applicants", "high", "essential services"),
        ("education", "exam proctoring", "high", "education"),
        ("healthcare", "diagnosis support from x-rays", "high", "medical"),
        ("energy", "power grid load balancing", "high", "critical infrastructure"),
        ("border_control", "visa application triage", "high", "migration"),
        ("customer service", "chatbot answering questions", "limited", "Art. 50(1)"),
        ("media", "deepfake generation", "limited", "Art. 50"),
        ("retail", "emotion recognition of shoppers", "limited", "Art. 50(3)"),
        ("retail", "demand forecasting", "minimal", "no prohibited"),
        ("marketing", "churn prediction", "minimal", "no prohibited"),
    ],
)
def test_levels_follow_the_act(domain: str, use_case: str, level: str, reason: str) -> None:
    found = assess_risk(domain, use_case)
    assert found.level == level
    assert any(reason in r for r in found.reasons), found.reasons
    assert found.obligations == OBLIGATIONS[level]


def test_high_risk_brings_the_chapter_three_obligations() -> None:
    obligations = " ".join(assess_risk("finance", "credit scoring").obligations)
    for article in ("Art. 9", "Art. 10", "Art. 12", "Art. 13", "Art. 14", "Art. 15", "Art. 43"):
        assert article in obligations


def test_model_level_reads_tags_and_missing_tags_mean_undeclared(tmp_path: object) -> None:
    registry = Registry.from_settings()
    registry.create_model("hiring", tags={"domain": "employment", "use_case": "rank applicants"})
    registry.create_model("bare", tags={"domain": "retail"})
    assert model_risk(registry, "hiring").level == "high"  # type: ignore[union-attr]
    assert model_risk(registry, "bare") is None


def test_empty_declarations_are_refused() -> None:
    with pytest.raises(ValidationError, match="use_case '' is empty"):
        assess_risk("finance", "")
