"""Metric aliases: the seed's spellings mean the canonical metrics in gates and comparisons too."""

from __future__ import annotations

from blocks.metrics import canonical_metric, metric_value, spellings
from blocks.policy import MetricGate
from storage.registry.core import Registry
from tasks.registry.gates import _metric_gate


def test_aliases_map_to_canonical_names() -> None:
    assert {canonical_metric(n) for n in ("f1_score", "F1_SCORE", "f1")} == {"f1"}
    assert {canonical_metric(n) for n in ("roc_auc", "auc", "roc_auc_score", "auc_roc")} == {"auc_roc"}
    assert canonical_metric("accuracy_score") == "accuracy"
    assert canonical_metric("lift_at_10") == "lift_at_10"
    assert "roc_auc" in spellings("auc_roc")


def test_metric_value_finds_another_spelling() -> None:
    assert metric_value({"roc_auc": 0.8}, "auc_roc") == 0.8
    assert metric_value({"f1": 0.7, "f1_score": 0.1}, "f1") == 0.7  # the name itself wins
    assert metric_value({"rmse": 1.0}, "f1") is None


def test_gates_and_comparison_accept_aliases(registry: Registry) -> None:
    registry.create_model("m")
    v1 = registry.create_version("m", framework="sklearn", metrics={"roc_auc": 0.81})
    registry.create_version("m", framework="sklearn", metrics={"auc_roc": 0.9})
    assert _metric_gate(v1, MetricGate(metric="auc_roc", threshold=0.8)).passed
    assert _metric_gate(v1, MetricGate(metric="auc", threshold=0.85)).passed is False
    result = registry.compare("m", [1, 2], primary="auc")
    assert result.winner == 2
