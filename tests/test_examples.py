"""The runnable examples pass: each of ``make demo``'s use cases, and the registry tour."""

from __future__ import annotations

import pytest

from examples import demo, registry_walkthrough
from storage.audit import AuditLog
from storage.endpoints.store import EndpointStore
from storage.registry.core import Registry


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_harness")
def test_fraud_detection_use_case(capsys: pytest.CaptureFixture[str]) -> None:
    from examples import fraud_detection

    result = fraud_detection.main()
    out = capsys.readouterr().out
    assert "promoted with 2 approvals" in out and "GDPR: 100%" in out
    registry = Registry.from_settings()
    champion = registry.get_version("fraud", "@champion")
    assert champion.number == result["champion"] and champion.framework == "xgboost"
    endpoint = EndpointStore(registry.db).get("fraud")
    assert endpoint.weights() == {"stable": 100.0} or max(endpoint.weights().values()) == 100.0
    assert result["failed"] == 0 and "amount" in result["drift"]
    assert AuditLog(registry.db).verify().ok


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_harness")
def test_recommendations_use_case(capsys: pytest.CaptureFixture[str]) -> None:
    from examples import recommendations

    result = recommendations.main()
    comparison = result["report"]["comparisons"][0]
    assert result["winner"] == "treatment" and comparison["significant"] and result["report"]["srm_ok"]
    assert "winner: treatment" in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_harness")
def test_healthcare_use_case(capsys: pytest.CaptureFixture[str]) -> None:
    from examples import healthcare

    result = healthcare.main()
    out = capsys.readouterr().out
    assert "EU AI Act risk level: high" in out and "HIPAA: 100%" in out and "EU_AI_ACT: 100%" in out
    assert result["explained"] == 5 and out.count("because of") == 5
    assert "drifted ['mean radius']" in out
    champion = Registry.from_settings().get_version("breast-cancer", "@champion")
    assert (
        champion.stage == "production"
        and champion.metrics["cv_auc_roc_mean"] >= healthcare.BAR["cv_auc_roc_mean"]
    )


@pytest.mark.slow
def test_team_platform_use_case(capsys: pytest.CaptureFixture[str]) -> None:
    from examples import team_platform

    result = team_platform.main()
    out = capsys.readouterr().out
    assert result["stage"] == "production" and result["audit_ok"] and result["console_shows"]
    assert result["actors"] >= {"admin", "dana", "rui", "sam"}
    assert result["laptop"] == ["model.json"]  # the remote side kept no database and no store
    assert "mlops server stopped (exit code 0)" in out


@pytest.mark.usefixtures("prefect_harness")
def test_the_lifecycle_in_ten_lines_runs_and_the_readme_shows_it() -> None:
    from pathlib import Path

    from examples import lifecycle

    result = lifecycle.main()
    assert result["version"] == 1 and "price" in result["drift"] and Path(result["card"]).is_file()
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert 'run = train_model(config={"name": "clicks"' in readme


@pytest.mark.usefixtures("prefect_harness")
def test_registry_tour() -> None:
    result = registry_walkthrough.main()
    assert result["verified"] and result["stage"] == "staging"


def test_the_demo_runs_every_use_case_each_in_its_own_folder() -> None:
    folders = [folder for folder, _title, _step in demo.STEPS]
    assert folders == ["fraud", "recommendations", "healthcare", "team"]
