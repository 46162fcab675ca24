"""Settings from MLOPS_* variables and the registry Block."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from blocks.registry import RegistryBlock
from blocks.settings import MlopsSettings, get_settings
from storage.registry.core import Registry


def test_defaults_live_under_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MLOPS_HOME", str(tmp_path / "h"))
    s = get_settings()
    assert s.resolved_database_url() == f"sqlite:///{tmp_path / 'h' / 'mlops.db'}"
    assert s.resolved_artifact_root() == str(tmp_path / "h" / "artifacts")
    assert s.resolved_user() == "tester"


def test_urls_override_home(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLOPS_DATABASE_URL", "postgresql+psycopg://db/mlops")
    monkeypatch.setenv("MLOPS_ARTIFACT_ROOT", "s3://bucket/mlops")
    s = get_settings()
    assert (s.resolved_database_url(), s.resolved_artifact_root()) == (
        "postgresql+psycopg://db/mlops",
        "s3://bucket/mlops",
    )


def test_default_home_is_relative_dot_mlops(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLOPS_HOME")
    assert MlopsSettings().home == Path(".mlops")


@pytest.mark.usefixtures("prefect_harness")
def test_block_saves_loads_and_opens_the_same_registry(tmp_path: Path) -> None:
    RegistryBlock(home=str(tmp_path / "block-home")).save("test-registry", overwrite=True)
    loaded = RegistryBlock.load("test-registry")
    registry = Registry.from_settings(loaded.to_settings())
    registry.create_model("from-block")
    assert (tmp_path / "block-home" / "mlops.db").exists()
    assert Registry.from_settings(MlopsSettings(home=tmp_path / "block-home")).get_model("from-block")


@pytest.mark.usefixtures("prefect_harness")
def test_block_type_registers_with_prefect_cli() -> None:
    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value())}
    out = subprocess.run(
        [sys.executable, "-m", "prefect", "block", "register", "-m", "blocks"],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "mlops-registry" in out.stdout or "MLOps Registry" in out.stdout
