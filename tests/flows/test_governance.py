"""Governance flows under a real Prefect server: bias check, compliance audit, governance report."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from prefect.client.orchestration import get_client

from blocks.policy import EvidenceGate
from flows.governance import bias_check, compliance_audit, governance_report_flow
from storage.governance.reports import ReportStore
from storage.registry.core import Registry
from tasks.registry.gates import evaluate_gate

pytestmark = pytest.mark.usefixtures("prefect_harness")


def _events(name: str, resource_id: str) -> list[dict[str, Any]]:
    from prefect.events.worker import EventsWorker

    EventsWorker.drain_all()
    for _ in range(240):  # up to a minute: the events worker is slow on a busy machine
        with get_client(sync_client=True) as client:
            found = client.request(
                "POST", "/events/filter", json={"filter": {"event": {"name": [name]}}, "limit": 50}
            ).json()["events"]
        hits = [e for e in found if e["resource"]["prefect.resource.id"] == resource_id]
        if hits:
            return hits
        time.sleep(0.25)
    return []


@pytest.fixture
def credit() -> Registry:
    registry = Registry.from_settings()
    registry.create_model("credit", tags={"domain": "finance", "use_case": "credit scoring"})
    registry.create_version("credit", framework="sklearn", metrics={"auc": 0.88})
    return registry


def test_bias_check_records_evidence_and_alerts(credit: Registry, tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    group = rng.choice(["a", "b"], 3000)
    frame = pd.DataFrame(
        {
            "label": rng.integers(0, 2, 3000),
            "scored": (rng.random(3000) < np.where(group == "a", 0.6, 0.3)).astype(int),
            "group": group,
        }
    )
    path = tmp_path / "scored.parquet"
    frame.to_parquet(path)
    result = bias_check("credit", "1", str(path), "label", ["group"], prediction_column="scored")
    assert result["passed"] is False and "statistical_parity" in result["summary"]
    assert not evaluate_gate(credit, "credit", 1, EvidenceGate(kind="bias_report")).passed
    assert _events("mlops.bias.failed", "mlops.model-version.credit.1")


def test_compliance_audit_fails_a_production_move_without_approvals(credit: Registry) -> None:
    credit.transition_stage("credit", 1, "staging")
    credit.transition_stage("credit", 1, "production")  # no approval request: the audit must notice
    [result] = compliance_audit(["credit"], ["SOC2"])
    assert result["version"] == 1 and result["failed"] == ["SOC2"]
    stored = ReportStore(credit).latest("compliance:SOC2", "credit", 1)
    assert stored is not None and not stored.passed
    assert _events("mlops.compliance.failed", "mlops.model-version.credit.1")


def test_governance_report_writes_json_and_model_card(credit: Registry, tmp_path: Path) -> None:
    ReportStore(credit).save(
        "bias_report", "credit", 1, passed=True, summary="every bias metric within its threshold"
    )
    paths = governance_report_flow("credit", "1", str(tmp_path / "out"))
    report = json.loads(Path(paths["json"]).read_text())
    assert report["risk"]["level"] == "high" and report["metrics"] == {"auc": 0.88}
    assert report["bias"]["passed"] is True
    assert {f["framework"] for f in report["compliance"]} >= {"GDPR", "EU_AI_ACT", "SOC2"}
    card = Path(paths["model_card"]).read_text()
    assert "# Model card: credit version 1" in card and "EU AI Act risk level**: high" in card
    assert "| GDPR |" in card


def test_bias_check_scores_the_dataset_with_the_registered_version(tmp_path: Path) -> None:
    import skops.io as sio
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(5)
    x = rng.normal(size=(2000, 2))
    group = np.where(x[:, 0] > 0, "a", "b")  # the model's main input tracks the group
    label = (x[:, 0] + 0.1 * rng.normal(size=2000) > 0).astype(int)
    clf = LogisticRegression().fit(x, label)
    registry = Registry.from_settings()
    registry.create_model("scored")
    registry.create_version(
        "scored",
        framework="sklearn",
        artifacts={"model.skops": sio.dumps(clf)},
        signature={"inputs": [{"name": "x0", "type": "float"}, {"name": "x1", "type": "float"}]},
    )
    path = tmp_path / "eval.csv"
    pd.DataFrame({"x0": x[:, 0], "x1": x[:, 1], "label": label, "group": group}).to_csv(path, index=False)
    result = bias_check("scored", "1", str(path), "label", ["group"])
    assert result["passed"] is False  # selection rates differ by construction
    stored = ReportStore(registry).latest("bias_report", "scored", 1)
    assert stored is not None and stored.payload["results"][0]["name"] == "group"
