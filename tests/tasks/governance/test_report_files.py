"""The governance report and model card go to the report root (a folder or the object store), or any URL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from prefect import flow

from storage.objectstore import Place
from storage.registry.core import Registry
from tasks.governance.report import export_governance_report, governance_report, write_governance_report


@pytest.fixture(params=["local", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """MLOPS_STORAGE_URL: a local folder, and a bucket on the test's S3 server."""
    url = str(tmp_path / "shared") if request.param == "local" else str(request.getfixturevalue("s3_url"))
    monkeypatch.setenv("MLOPS_STORAGE_URL", url)
    return url


@pytest.fixture
def credit() -> Registry:
    registry = Registry.from_settings()
    registry.create_model("credit", tags={"domain": "finance", "use_case": "credit scoring"})
    registry.create_version("credit", framework="sklearn", metrics={"auc": 0.91})
    return registry


@flow(name="governance-report-probe")
def export(model: str) -> dict[str, str]:
    return export_governance_report(model, 1, frameworks=[])


@pytest.mark.usefixtures("prefect_harness")
def test_the_flow_task_writes_under_the_report_root_and_returns_uris(
    storage: str, credit: Registry, tmp_path: Path
) -> None:
    out = export("credit")
    folder = f"{storage}/reports/governance"
    assert out["json"] == f"{folder}/credit-v1-governance.json"
    assert out["model_card"] == f"{folder}/credit-v1-model-card.md"
    place = Place(folder)
    assert place.names() == ["credit-v1-governance.json", "credit-v1-model-card.md"]
    assert json.loads(place.read_bytes(place.path("credit-v1-governance.json")))["risk"]["level"] == "high"
    card = place.read_bytes(place.path("credit-v1-model-card.md"))
    assert card.startswith(b"# Model card: credit version 1")
    assert not (tmp_path / "mlops-home" / "reports").exists()


def test_an_explicit_folder_or_url_wins(storage: str, credit: Registry) -> None:
    report = governance_report(credit, "credit", 1, frameworks=[])
    target = f"{storage}/audits/2026-q1"
    json_uri, card_uri = write_governance_report(report, target)
    assert json_uri == f"{target}/credit-v1-governance.json"
    assert card_uri == f"{target}/credit-v1-model-card.md"
    rewritten = {**report, "owner": "risk-team"}
    write_governance_report(rewritten, target)  # a rewrite replaces the files whole
    place = Place(target)
    assert json.loads(place.read_bytes(place.path("credit-v1-governance.json")))["owner"] == "risk-team"
    assert place.names() == ["credit-v1-governance.json", "credit-v1-model-card.md"]
    assert "reports" not in Place(storage).names()  # nothing went to the default root


def test_without_a_storage_url_reports_stay_under_mlops_home(credit: Registry, tmp_path: Path) -> None:
    report = governance_report(credit, "credit", 1, frameworks=[])
    json_uri, _ = write_governance_report(report)
    assert json_uri == str(tmp_path / "mlops-home" / "reports" / "governance" / "credit-v1-governance.json")
    assert json.loads(Path(json_uri).read_text())["model"] == "credit"
