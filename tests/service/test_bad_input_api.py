"""Inputs answered with a 500 before (the schema fuzz found most): each is now a 4xx with a reason.

* an id past the database's integer range (SQLite: 64 bits, PostgreSQL ``INTEGER``: 32 bits)
  raised ``OverflowError`` (sqlite3) or ``DataError`` (SQLAlchemy, or psycopg's own
  under the registry's prepared statements); so did a NUL character on PostgreSQL;
* a promotion request whose ``policy_block`` cannot be a Prefect block name
  (a control character) failed inside Prefect's client while building the URL.
"""

from __future__ import annotations

import httpx
import pytest

from tests.service.conftest import Service


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/approvals/9223372036854775808/approve"),
        ("POST", "/approvals/3000000000/reject"),
        ("GET", "/approvals/9223372036854775808"),
        ("DELETE", "/keys/9223372036854775808"),
        ("GET", "/models/m/versions/99999999999"),
        ("GET", "/models/m/versions/9223372036854775808/reports/bias_report"),
        ("GET", "/audit?after_seq=3000000000"),
        ("GET", "/models/a%00b/versions/1"),  # PostgreSQL text holds no NUL
        ("GET", "/datasets/a%00b/lineage"),
    ],
)
def test_values_the_database_cannot_hold_are_a_4xx_with_a_reason(
    service: Service, method: str, path: str
) -> None:
    service.registry.create_model("m")
    headers = {"Authorization": f"Bearer {service.keys['admin']}"}
    answer = httpx.request(method, f"{service.url}/api/v1{path}", json={}, headers=headers)
    assert answer.status_code < 500, answer.text  # SQLite holds 3000000000: there it is just not found
    if answer.status_code >= 400:
        error = answer.json()["error"]
        assert any(
            says in error
            for says in ("out of range", "does not fit", "does not exist", "has no", "is not registered")
        ), error


def test_a_policy_block_that_cannot_be_a_block_name_is_refused(service: Service) -> None:
    headers = {"Authorization": f"Bearer {service.keys['contributor']}"}
    body = {"model": "m", "version": "1", "stage": "staging", "policy_block": "\x1f"}
    answer = httpx.post(f"{service.url}/api/v1/approvals", json=body, headers=headers)
    assert answer.status_code == 422 and "policy_block" in answer.json()["error"]
