"""prefect.yaml: known keys only (Prefect ignores misspelled ones) and every entrypoint is a flow."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pytest
import yaml
from prefect import Flow

PREFECT_YAML = Path(__file__).resolve().parents[1] / "prefect.yaml"
TOP_KEYS = {"name", "prefect-version", "build", "push", "pull", "deployments"}
DEPLOYMENT_KEYS = {
    "name",
    "description",
    "entrypoint",
    "parameters",
    "work_pool",
    "schedules",
    "triggers",
    "tags",
    "version",
    "concurrency_limit",
    "enforce_parameter_schema",
    "job_variables",
    "paused",
}


def _deployments() -> list[dict[str, Any]]:
    return list(yaml.safe_load(PREFECT_YAML.read_text())["deployments"])


def test_top_level_keys_are_known() -> None:
    assert set(yaml.safe_load(PREFECT_YAML.read_text())) <= TOP_KEYS


@pytest.mark.parametrize("deployment", _deployments(), ids=lambda d: d["name"])
def test_deployment_keys_and_entrypoint(deployment: dict[str, Any]) -> None:
    assert set(deployment) <= DEPLOYMENT_KEYS, set(deployment) - DEPLOYMENT_KEYS
    path, _, name = deployment["entrypoint"].partition(":")
    module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
    flow = getattr(module, name)
    assert isinstance(flow, Flow)
    signature = flow.parameters.properties
    assert set(deployment.get("parameters") or {}) <= set(signature), "unknown flow parameters"
    for schedule in deployment.get("schedules") or []:
        assert set(schedule) <= {"cron", "interval", "rrule", "timezone", "active"}
