"""The pipeline configs shipped in ``pipelines/`` (read by the retraining trigger) are valid."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from blocks.pipeline import PipelineConfig

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "pipelines").glob("*.yaml"))


def test_the_demo_model_has_a_retraining_config() -> None:
    assert ROOT / "pipelines" / "fraud.yaml" in CONFIGS


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_parses_and_is_named_after_its_file(path: Path) -> None:
    config = PipelineConfig.from_yaml(path)
    assert config.name == path.stem  # the trigger reads pipelines/<model>.yaml
    assert yaml.safe_load(path.read_text())["target_column"] == config.target_column
