"""``mlops predict``: the flow where a Prefect API is configured, else in-process scoring (``--no-flow``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName
from typer.testing import CliRunner

from mlops.cli import app
from mlops.cli_batch import prefect_api_configured, prefect_api_in_config
from serving.testing import demo_frame, register_demo
from storage.governance.lineage import LineageStore
from storage.registry.core import Registry

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def clean_prefect_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("PREFECT_API_URL", "PREFECT_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "prefect-home"
    home.mkdir()
    monkeypatch.setenv("PREFECT_HOME", str(home))
    monkeypatch.setenv("PREFECT_PROFILES_PATH", str(home / "profiles.toml"))
    work = tmp_path / "work"
    work.mkdir()
    return work


def test_where_a_prefect_api_is_configured(clean_prefect_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    work = clean_prefect_env
    profiles = Path(os.environ["PREFECT_PROFILES_PATH"])
    assert not prefect_api_in_config(work)  # Prefect's default profile is the ephemeral one
    profiles.write_text('active = "mine"\n[profiles.mine]\nPREFECT_API_URL = "http://h:4200/api"\n')
    assert prefect_api_in_config(work)
    profiles.write_text('active = "local"\n')  # Prefect's built-in `local` profile has a URL
    assert prefect_api_in_config(work)
    monkeypatch.setenv("PREFECT_PROFILE", "ephemeral")
    assert not prefect_api_in_config(work)
    (work / "prefect.toml").write_text('[api]\nurl = "http://h:4200/api"\n')
    assert prefect_api_in_config(work)
    (work / "prefect.toml").unlink()
    (work / ".env").write_text("PREFECT_API_URL=http://h:4200/api\n")
    assert prefect_api_in_config(work)
    (work / ".env").unlink()
    monkeypatch.setenv("PREFECT_API_URL", "http://h:4200/api")
    assert prefect_api_in_config(work)


@pytest.fixture
def models(tmp_path: Path) -> tuple[Registry, Path]:
    reg = Registry.from_settings()
    register_demo(reg, "fraud", "onnx")
    source = tmp_path / "in.csv"
    demo_frame(1500, seed=3).to_csv(source, index=False)
    return reg, source


def _flow_runs() -> int:
    with get_client(sync_client=True) as client:
        return len(client.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(like_=""))))


@pytest.mark.usefixtures("prefect_harness")
def test_no_flow_scores_like_the_flow_and_records_no_flow_run(
    models: tuple[Registry, Path], dask_cluster: Any, tmp_path: Path
) -> None:
    registry, source = models
    assert prefect_api_configured()  # the harness's server: the flow is the default
    env = {"MLOPS_DASK_ADDRESS": dask_cluster.scheduler_address}
    by_flow = CliRunner().invoke(
        app, ["predict", "fraud", "-i", str(source), "-o", str(tmp_path / "a.csv")], env=env
    )
    assert by_flow.exit_code == 0 and "batch-predict flow" in by_flow.output, by_flow.output
    runs = _flow_runs()
    local = CliRunner().invoke(
        app, ["predict", "fraud@1", "-i", str(source), "-o", str(tmp_path / "b.csv"), "--no-flow",
              "--chunk-rows", "300", "--workers", "3"],
    )  # fmt: skip
    assert local.exit_code == 0 and "in this process, no Prefect flow run" in local.output, local.output
    assert _flow_runs() == runs
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "a.csv"), pd.read_csv(tmp_path / "b.csv"))
    names = {d.uri for d in LineageStore(registry).list_datasets()}
    assert {str(tmp_path / "a.csv"), str(tmp_path / "b.csv"), str(source)} <= names


def test_without_a_prefect_api_a_fresh_process_scores_without_loading_prefect(
    models: tuple[Registry, Path], clean_prefect_env: Path, tmp_path: Path
) -> None:
    target = tmp_path / "scores.parquet"
    script = (
        "import sys\n"
        "from mlops.cli import app\n"
        f"app(['predict', 'fraud', '-i', {str(models[1])!r}, '-o', {str(target)!r}, '--json'],"
        " standalone_mode=False)\n"
        "assert 'prefect' not in sys.modules, 'prefect was imported'\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=clean_prefect_env, env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert '"mode": "in-process"' in done.stdout
    assert len(pd.read_parquet(target)) == 1500
