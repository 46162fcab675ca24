"""deployments/compose.yaml: parsed, every service the platform needs, wired to each other.

No container runs here; the file is checked the way Compose reads it: YAML
with merge keys, services with an image or a build, dependencies that exist,
ports bound to loopback, and the environment that points the platform at
PostgreSQL, Redis, the Dask scheduler and the Prefect API.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "deployments" / "compose.yaml"
REQUIRED = {
    "postgres",
    "redis",
    "prefect-server",
    "prefect-worker",
    "dask-scheduler",
    "dask-worker",
    "model-server",
}
#: Keys of a service that this file may use (a misspelled key would be ignored or rejected late).
SERVICE_KEYS = {
    "image", "build", "command", "environment", "ports", "volumes", "depends_on", "healthcheck",
    "restart", "deploy", "working_dir", "configs", "profiles",
}  # fmt: skip


def _compose() -> dict[str, Any]:
    return dict(yaml.safe_load(COMPOSE.read_text()))


def _services() -> dict[str, dict[str, Any]]:
    return dict(_compose()["services"])


def _command(service: dict[str, Any]) -> str:
    command = service.get("command", "")
    return " ".join(command) if isinstance(command, list) else str(command)


def test_file_parses_with_every_required_service() -> None:
    services = _services()
    assert set(services) >= REQUIRED, REQUIRED - set(services)
    for name, service in services.items():
        assert set(service) <= SERVICE_KEYS, (name, set(service) - SERVICE_KEYS)
        assert "image" in service or "build" in service, f"{name} has neither image nor build"


def test_dependencies_exist_and_wait_for_health() -> None:
    services = _services()
    for name, service in services.items():
        for dependency, condition in (service.get("depends_on") or {}).items():
            assert dependency in services, f"{name} depends on unknown service {dependency}"
            if condition["condition"] == "service_healthy":
                assert "healthcheck" in services[dependency], f"{dependency} has no healthcheck"


def test_ports_are_bound_to_loopback() -> None:
    for name, service in _services().items():
        for port in service.get("ports") or []:
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"


def test_platform_services_point_at_the_shared_servers() -> None:
    services = _services()
    for name in ("prefect-worker", "dask-worker", "model-server"):
        env = services[name]["environment"]
        assert env["MLOPS_DATABASE_URL"].startswith("postgresql+psycopg://"), name
        assert "@postgres:5432/" in env["MLOPS_DATABASE_URL"], name
        assert env["MLOPS_ONLINE_STORE_URL"].startswith("redis://redis:6379"), name
        assert env["MLOPS_DASK_ADDRESS"] == "tcp://dask-scheduler:8786", name
        assert env["PREFECT_API_URL"] == "http://prefect-server:4200/api", name
    prefect = services["prefect-server"]["environment"]
    assert prefect["PREFECT_SERVER_DATABASE_CONNECTION_URL"].startswith("postgresql+asyncpg://")
    assert "@postgres:5432/prefect" in prefect["PREFECT_SERVER_DATABASE_CONNECTION_URL"]
    assert "CREATE DATABASE prefect" in _compose()["configs"]["prefect-database"]["content"]


def test_commands_start_the_right_processes() -> None:
    services = _services()
    assert "prefect server start" in _command(services["prefect-server"])
    worker = _command(services["prefect-worker"])
    assert worker.startswith("python -m mlops.prefect_worker --pool mlops-process")
    assert _command(services["dask-scheduler"]).startswith("dask scheduler")
    assert "dask worker tcp://dask-scheduler:8786" in _command(services["dask-worker"])
    assert _command(services["model-server"]).startswith("mlops serve")
    assert "prefect --no-prompt deploy --all" in _command(services["deploy"])


def test_prefect_image_matches_the_installed_prefect() -> None:
    from importlib.metadata import version

    image = _services()["prefect-server"]["image"]
    assert image.startswith(f"prefecthq/prefect:{version('prefect')}-"), image


def test_platform_image_installs_this_project() -> None:
    build = _services()["prefect-worker"]["build"]
    assert (COMPOSE.parent / build["context"]).resolve() == ROOT
    assert "pip install" in build["dockerfile_inline"]


@pytest.mark.skipif(shutil.which("docker") is None, reason="no docker command on this machine")
def test_docker_compose_accepts_the_file() -> None:
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip("docker has no compose plugin on this machine")
    done = subprocess.run(
        ["docker", "compose", "-f", str(COMPOSE), "config", "--quiet"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
