"""A running platform service on 127.0.0.1 over each metadata database, and keys for every role."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mlops.client import Client
from service.app import create_app
from service.config import ServiceSettings
from service.server import running_service
from storage.registry.core import Registry

ROLES = ("reader", "contributor", "reviewer", "admin")


@dataclass
class Service:
    """A running service, its registry, and one key per role (plus a second reviewer)."""

    url: str
    registry: Registry
    keys: dict[str, str]

    def client(self, who: str) -> Client:
        return Client(self.url, self.keys[who])


@pytest.fixture
def service(registry: Registry, tmp_path: Path) -> Iterator[Service]:
    """The service over the ``registry`` fixture's database (SQLite and PostgreSQL)."""
    app = create_app(ServiceSettings(port=0, max_upload_bytes=5 << 20), registry=registry)
    keys = {role: app.state.keys.create(f"{role}-user", role, actor="setup")[0] for role in ROLES}
    keys["reviewer2"] = app.state.keys.create("reviewer2-user", "reviewer", actor="setup")[0]
    with running_service(app, ServiceSettings(port=0, max_upload_bytes=5 << 20)) as url:
        yield Service(url, registry, keys)
