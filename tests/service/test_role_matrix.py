"""Who may call what: one representative route of every governance and operations area, every role.

Reads are open to every role; resolving an alert needs ``write`` (contributor,
admin); running an erasure needs ``admin``. Without a key every route is 401.
"""

from __future__ import annotations

import httpx

from storage.endpoints import EndpointStore, VariantSpec
from storage.features.definitions import FeatureDefinitions
from storage.governance.lineage import LineageStore
from storage.governance.reports import ReportStore
from storage.monitoring.alerts import AlertStore
from tests.service.conftest import ROLES, Service

EVERY = frozenset(ROLES)
WRITERS = frozenset({"contributor", "admin"})
ADMINS = frozenset({"admin"})

#: (area, method, path, JSON body, roles that get the success status)
MATRIX: list[tuple[str, str, str, dict | None, frozenset[str]]] = [
    ("audit", "GET", "/audit", None, EVERY),
    ("audit verify", "GET", "/audit/verify", None, EVERY),
    ("datasets", "GET", "/datasets", None, EVERY),
    ("dataset lineage", "GET", "/datasets/tx/lineage", None, EVERY),
    ("model data lineage", "GET", "/models/m/data-lineage", None, EVERY),
    ("stored report", "GET", "/models/m/versions/1/reports/bias_report", None, EVERY),
    ("governance report", "GET", "/models/m/versions/1/governance?framework=GDPR", None, EVERY),
    ("model card", "GET", "/models/m/versions/1/model-card?framework=GDPR", None, EVERY),
    ("attestations", "GET", "/attestations", None, EVERY),
    ("erasures", "GET", "/erasures", None, EVERY),
    ("erase", "POST", "/erasures", {"keys": {"card_id": 7}, "reason": "DSR-9"}, ADMINS),
    ("endpoints", "GET", "/endpoints", None, EVERY),
    ("endpoint stats", "GET", "/endpoints/fraud/stats", None, EVERY),
    ("alerts", "GET", "/alerts?status=open", None, EVERY),
    ("resolve alert", "POST", "/alerts/{alert}/resolve", None, WRITERS),
    ("feature groups", "GET", "/features/groups", None, EVERY),
    ("feature statistics", "GET", "/features/groups/trips/statistics", None, EVERY),
]


def _data(service: Service) -> int:
    """Something behind every route; returns an alert's id."""
    registry = service.registry
    registry.create_model("m")
    registry.create_version("m", framework="sklearn")
    LineageStore(registry).register_dataset(
        "tx", uri="s3://tx", source="bank", owner="data", contains_pii=True, retention_days=30
    )
    ReportStore(registry).save("bias_report", "m", 1, passed=True, summary="ok")
    EndpointStore(registry.db).create("fraud", [VariantSpec("a", "m", "1")])
    defs = FeatureDefinitions(registry.db)
    defs.create_entity("driver", join_keys=["driver_id"])
    defs.create_group("trips", entity="driver", event_time_column="ts")
    return (
        AlertStore(registry)
        .raise_alert("m", 1, kind="drift", severity="warning", subject="x", message="y")
        .id
    )


def test_every_role_gets_what_its_permissions_say(service: Service) -> None:
    alert = _data(service)
    wrong: list[str] = []
    with httpx.Client(base_url=f"{service.url}/api/v1", timeout=60) as http:
        for area, method, path, body, allowed in MATRIX:
            url = path.format(alert=alert)
            success = 201 if method == "POST" and "erasures" in url else 200
            anonymous = http.request(method, url, json=body)
            if anonymous.status_code != 401:
                wrong.append(f"{area}: no key got {anonymous.status_code}")
            for role in ROLES:
                answer = http.request(
                    method, url, json=body, headers={"Authorization": f"Bearer {service.keys[role]}"}
                )
                expected = success if role in allowed else 403
                if answer.status_code != expected:
                    wrong.append(
                        f"{area}: {role} got {answer.status_code}, not {expected}: {answer.text[:200]}"
                    )
                elif expected == 403:
                    assert f"role {role!r}" in answer.json()["error"]
    assert wrong == []
