"""The console over seeded state: in-process (TestClient) for fast tests, running for the browser."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from service.app import create_app
from service.config import ServiceSettings
from storage.registry.core import Registry
from tests.service.console.seed import Seeded, seed, settings_for


@dataclass
class Console:
    """The console app, the registry under it and what the seed made."""

    app: FastAPI
    registry: Registry
    seeded: Seeded

    def client(self, who: str | None = None) -> TestClient:
        """A client signed in as ``who`` (a key of the seed), or signed out."""
        client = TestClient(self.app, follow_redirects=False)
        if who is not None:
            answer = client.post("/login", data={"key": self.seeded.keys[who], "next": "/models"})
            assert answer.status_code == 303, answer.text
        return client


def build(registry: Registry, home: Path) -> Console:
    settings = settings_for(home)
    app = create_app(ServiceSettings(port=0), settings=settings, registry=registry)
    return Console(app, registry, seed(registry, settings, app.state.keys))


@pytest.fixture
def console(registry: Registry, tmp_path: Path) -> Console:
    """The console over the ``registry`` fixture's database (SQLite and PostgreSQL), seeded."""
    return build(registry, tmp_path / "home")


@pytest.fixture
def sqlite_console(tmp_path: Path) -> Iterator[Console]:
    """The console over a seeded SQLite database (for the browser tests)."""
    registry = Registry.open(
        f"sqlite:///{tmp_path / 'mlops.db'}", str(tmp_path / "artifacts"), actor="tester"
    )
    yield build(registry, tmp_path / "home")
    registry.db.dispose()
