"""Fuzzing the platform service: no generated request gets a 5xx, and every refusal says why.

Schemathesis generates requests from the service's own OpenAPI document
(``/api/v1/openapi.json``): every route, its path and query parameters and
bodies, both valid ones (positive) and ones that break the schema (negative).
They are sent with an admin key, so every route runs past authorization. The
run is repeated with three fixed seeds and a bounded number of examples per
route, over SQLite and PostgreSQL (their integer ranges differ); every route
is fuzzed under every seed and all failures are reported together. A promotion
request naming a policy block looks it up in Prefect: the session's Prefect
test server answers.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import schemathesis
import sqlalchemy as sa
from fastapi import FastAPI
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as fixed_seed
from hypothesis import strategies as st
from schemathesis import GenerationMode

from blocks.settings import MlopsSettings
from service.app import API_PREFIX, create_app
from service.config import ServiceSettings
from service.server import running_service
from tests.conftest import _PG_REASON, POSTGRES_URL

pytestmark = pytest.mark.slow

SEEDS = (11, 2026, 424242)
EXAMPLES = 8  # per route, per seed


@dataclass
class Fuzzed:
    """The running service, its app and the admin key the fuzz sends."""

    url: str
    app: FastAPI
    key: str

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def renew_key(self) -> None:
        """A fresh admin key (a generated ``DELETE /keys/{id}`` may revoke the one in use)."""
        self.key = self.app.state.keys.create("fuzz-admin", "admin", actor="fuzz")[0]


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The metadata database of the fuzzed service: a SQLite file, and a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('fuzz-db') / 'mlops.db'}"
        return
    if _PG_REASON:
        pytest.skip(_PG_REASON)
    schema = f"fuzz_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in POSTGRES_URL else "?"
    try:
        yield f"{POSTGRES_URL}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()


@pytest.fixture(scope="module")
def fuzzed(
    database: str, tmp_path_factory: pytest.TempPathFactory, prefect_harness: None
) -> Iterator[Fuzzed]:
    """The service over ``database``; the shared Prefect test server answers policy-block look-ups."""
    home: Path = tmp_path_factory.mktemp("service-fuzz")
    state = MlopsSettings(
        home=home,
        database_url=database,
        artifact_root=str(home / "artifacts"),
        feature_root=str(home / "features"),
        online_store_url=f"sqlite:///{home / 'online.db'}",
        prediction_log_root=str(home / "predictions"),
        user="fuzz",
    )
    listen = ServiceSettings(port=0, max_upload_bytes=1 << 20)
    app = create_app(listen, settings=state)
    registry = app.state.registry
    registry.create_model("m")
    registry.create_version("m", framework="sklearn", metrics={"auc": 0.9})
    fuzz = Fuzzed("", app, "")
    fuzz.renew_key()
    try:
        with running_service(app, listen) as url:
            fuzz.url = url
            yield fuzz
    finally:
        registry.db.dispose()


def _operations(app: FastAPI) -> list[Any]:
    schema = schemathesis.openapi.from_dict(app.openapi())
    return [result.ok() for result in schema.get_all_operations()]


def _strategy(operation: Any) -> st.SearchStrategy[Any]:
    return st.one_of(
        operation.as_strategy(GenerationMode.POSITIVE), operation.as_strategy(GenerationMode.NEGATIVE)
    )


def _fuzz_one(operation: Any, seed: int, fuzz: Fuzzed) -> None:
    @fixed_seed(seed)
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=_strategy(operation))
    def run(case: Any) -> None:
        response = case.call(base_url=fuzz.url, headers=fuzz.headers(), timeout=60)
        where = f"{case.method} {case.formatted_path} query={case.query} body={str(case.body)[:200]}"
        assert response.status_code < 500, f"{where} -> {response.status_code}: {response.text[:300]}"
        if response.status_code >= 400 and case.method.upper() != "HEAD":
            error = response.json().get("error")
            assert isinstance(error, str) and error, f"{where} -> {response.status_code} without a reason"
        if response.status_code == 401:
            fuzz.renew_key()

    run()


@pytest.mark.parametrize("seed", SEEDS)
def test_schema_fuzz_never_5xx(fuzzed: Fuzzed, seed: int) -> None:
    failures = []
    operations = _operations(fuzzed.app)
    assert len(operations) > 50 and all(op.path.startswith(API_PREFIX) for op in operations)
    for operation in operations:
        try:
            _fuzz_one(operation, seed, fuzzed)
        except Exception as exc:  # every route is fuzzed; all failures are reported together
            failures.append(f"{operation.method.upper()} {operation.path}: {exc}")
    assert failures == [], "\n\n".join(failures)


def test_still_serving_after_the_fuzz(fuzzed: Fuzzed) -> None:
    import httpx

    assert httpx.get(f"{fuzzed.url}{API_PREFIX}/health").json()["status"] == "ok"
    fuzzed.renew_key()
    answer = httpx.get(f"{fuzzed.url}{API_PREFIX}/models/m/versions/1", headers=fuzzed.headers())
    assert answer.status_code == 200 and answer.json()["number"] == 1
