"""The admin API on the real app: admin key, endpoints, traffic, canary, blue-green, reports."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from serving.app import create_app
from serving.config import ServeSettings
from storage.audit import AuditLog
from storage.registry.core import Registry

ADMIN = {"Authorization": "Bearer adm"}


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    reg = Registry.open(f"sqlite:///{tmp_path / 'm.db'}", str(tmp_path / "a"), actor="tester")
    app = create_app(ServeSettings(admin_key="adm", api_keys=["k1"], log_predictions=False), registry=reg)
    with TestClient(app) as c:
        yield c


def _create(client: TestClient, **extra: object) -> dict:
    body = {
        "name": "fraud",
        "policy": "ab",
        "variants": [
            {"name": "a", "model": "fraud", "version": "1", "weight": 50},
            {"name": "b", "model": "fraud", "version": "2", "weight": 50},
        ],
        **extra,
    }
    response = client.post("/admin/endpoints", json=body, headers=ADMIN)
    assert response.status_code == 201, response.text
    return response.json()


def test_admin_key_is_required(client: TestClient) -> None:
    assert client.get("/admin/endpoints").status_code == 401
    assert client.get("/admin/endpoints", headers={"Authorization": "Bearer k1"}).status_code == 403
    assert client.get("/admin/endpoints", headers=ADMIN).json() == []


def test_create_show_set_traffic_and_errors(client: TestClient) -> None:
    created = _create(client)
    assert created["weights"] == {"a": 50.0, "b": 50.0}
    again = client.post("/admin/endpoints", json={"name": "fraud", "variants": []}, headers=ADMIN)
    assert again.status_code == 400 and "at least one live variant" in again.json()["error"]
    dup = client.post(
        "/admin/endpoints",
        json={"name": "fraud", "variants": [{"name": "a", "model": "fraud", "version": "1"}]},
        headers=ADMIN,
    )
    assert dup.status_code == 409 and "already exists" in dup.json()["error"]
    moved = client.put(
        "/admin/endpoints/fraud/traffic",
        json={"weights": {"a": 80, "b": 20}, "reason": "ramp"},
        headers={**ADMIN, "X-Actor": "ana"},
    )
    assert moved.status_code == 200 and moved.json()["weights"] == {"a": 80.0, "b": 20.0}
    bad = client.put("/admin/endpoints/fraud/traffic", json={"weights": {"z": 1}}, headers=ADMIN)
    assert bad.status_code == 400 and "'z'" in bad.json()["error"]
    assert client.get("/admin/endpoints/nope", headers=ADMIN).status_code == 404
    events = client.get("/admin/endpoints/fraud/events", headers=ADMIN).json()
    assert [(e["kind"], e["actor"]) for e in events] == [("endpoint.create", "admin"), ("traffic.set", "ana")]


def test_canary_through_the_api(client: TestClient) -> None:
    client.post(
        "/admin/endpoints",
        json={"name": "ep", "variants": [{"name": "main", "model": "m", "version": "1"}]},
        headers=ADMIN,
    )
    started = client.post(
        "/admin/endpoints/ep/canary",
        json={"version": "2", "steps": [10, 100], "min_requests": 5},
        headers=ADMIN,
    )
    assert started.status_code == 201 and started.json()["weights"] == {"stable": 90.0, "canary": 10.0}
    held = client.post("/admin/endpoints/ep/canary/analyze", json={}, headers=ADMIN).json()
    assert held["analysis"]["decision"] == "hold"
    rolled = client.post("/admin/endpoints/ep/canary/rollback", json={"reason": "manual"}, headers=ADMIN)
    assert rolled.json()["weights"] == {"stable": 100.0, "canary": 0.0}
    state = client.get("/admin/endpoints/ep/canary", headers=ADMIN).json()
    assert state["plan"]["status"] == "rolled_back"
    assert [e["kind"] for e in state["events"]] == ["canary.start", "decision.hold", "canary.rollback"]
    again = client.post("/admin/endpoints/ep/canary/analyze", json={}, headers=ADMIN)
    assert again.status_code == 400 and "no running canary" in again.json()["error"]


def test_blue_green_switch_and_back_through_the_api(client: TestClient, tmp_path: Path) -> None:
    client.post(
        "/admin/endpoints",
        json={
            "name": "bg",
            "policy": "blue_green",
            "variants": [
                {"name": "blue", "model": "m", "version": "1", "weight": 100},
                {"name": "green", "model": "m", "version": "1", "weight": 0},
            ],
        },
        headers=ADMIN,
    )
    assert (
        client.post("/admin/endpoints/bg/slots/green", json={"version": "2"}, headers=ADMIN).status_code
        == 200
    )
    live = client.post("/admin/endpoints/bg/switch", json={}, headers=ADMIN).json()
    assert live["settings"]["live"] == "green" and live["weights"] == {"blue": 0.0, "green": 100.0}
    back = client.post("/admin/endpoints/bg/switch-back", headers=ADMIN).json()
    assert back["settings"]["live"] == "blue"
    events = client.get("/admin/endpoints/bg/events", headers=ADMIN).json()
    assert [e["kind"] for e in events][-3:] == ["slot.deploy", "bluegreen.switch", "bluegreen.switch"]
    audit = AuditLog(Registry.open(f"sqlite:///{tmp_path / 'm.db'}", str(tmp_path / "a")).db)
    assert [e.action for e in audit.entries(entity_id="bg")][-2:] == ["bluegreen.switch", "bluegreen.switch"]
    assert audit.verify().ok


def test_outcomes_report_and_promote(client: TestClient) -> None:
    _create(client)
    outcomes = [{"request_id": f"a{i}", "variant": "a", "value": float(i % 10 == 0)} for i in range(400)]
    outcomes += [{"request_id": f"b{i}", "variant": "b", "value": float(i % 4 == 0)} for i in range(400)]
    assert client.post(
        "/admin/endpoints/fraud/outcomes", json={"outcomes": outcomes}, headers=ADMIN
    ).json() == {"stored": 800}
    report = client.get("/admin/endpoints/fraud/ab-report", headers=ADMIN).json()
    assert report["comparisons"][0]["variant"] == "b" and report["comparisons"][0]["significant"]
    promoted = client.post("/admin/endpoints/fraud/promote-winner", json={}, headers=ADMIN).json()
    assert promoted["winner"] == "b" and promoted["endpoint"]["weights"] == {"a": 0.0, "b": 100.0}
    shadow = client.put(
        "/admin/endpoints/fraud/shadow",
        json={"shadows": [{"name": "s", "model": "fraud", "version": "3"}], "percent": 10},
        headers=ADMIN,
    )
    assert shadow.json()["settings"]["shadow_percent"] == 10
    assert client.get("/admin/endpoints/fraud/shadow-report", headers=ADMIN).json() == []
    assert client.delete("/admin/endpoints/fraud", headers=ADMIN).json() == {"deleted": "fraud"}
