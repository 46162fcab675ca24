"""Fuzzing the real server: no generated request gets a 5xx, and the server keeps serving.

Schemathesis generates requests from the app's own OpenAPI schema (every route,
path parameters, bodies); a hypothesis strategy then aims at the inference
decoder with the real input names and arbitrary shapes, datatypes and values.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from serving.app import create_app
from serving.config import ServeSettings
from serving.protocol import DATATYPES
from serving.server import ServerThread
from serving.testing import register_demo
from storage.registry.core import Registry

pytestmark = pytest.mark.slow


class Server:
    def __init__(self, url: str) -> None:
        self.url = url
        self.client = httpx.Client(base_url=url, timeout=30)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("fuzz-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLOPS_HOME", str(home))
        registry = Registry.open(f"sqlite:///{home}/mlops.db", str(home / "artifacts"))
        register_demo(registry, "fraud", "onnx")
        register_demo(registry, "fraud", "sklearn")
        thread = ServerThread(
            create_app(ServeSettings(log_flush_s=0.2, max_body_bytes=100_000), registry=registry)
        ).start()
        try:
            yield Server(thread.url)
        finally:
            thread.stop()


def _openapi() -> dict[str, Any]:
    """The app's OpenAPI document (the app is built, not started)."""
    import tempfile

    root = tempfile.mkdtemp()
    app = create_app(ServeSettings(log_predictions=False), registry=Registry.open("sqlite://", root))
    document: dict[str, Any] = app.openapi()
    app.state.serving.router.close()
    return document


schema = schemathesis.openapi.from_dict(_openapi())


#: Fixed seeds: a failure found once is found again by the same seed (one found
#: ``/v2/models/0/versions/%C2%B9/infer``: '¹' passed ``isdigit()``); random runs add more.
SEEDS = (0, 1, 42, 1729)


def _schema_fuzz(fixed: int | None) -> Any:
    @settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck))
    def check(case: Any, server: Server) -> None:
        response = case.call(base_url=server.url)
        assert response.status_code < 500, (case.method, case.formatted_path, response.text[:300])

    return schema.parametrize()(seed(fixed)(check) if fixed is not None else check)


test_schema_fuzz_never_5xx = _schema_fuzz(None)
test_schema_fuzz_never_5xx_seed_0 = _schema_fuzz(SEEDS[0])
test_schema_fuzz_never_5xx_seed_1 = _schema_fuzz(SEEDS[1])
test_schema_fuzz_never_5xx_seed_42 = _schema_fuzz(SEEDS[2])
test_schema_fuzz_never_5xx_seed_1729 = _schema_fuzz(SEEDS[3])


NAMES = st.sampled_from(["amount", "age", "country", "x", ""])
VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=5),
)  # fmt: skip
DATA = st.recursive(st.lists(VALUES, max_size=6), lambda inner: st.lists(inner, max_size=3), max_leaves=12)
TENSOR = st.fixed_dictionaries(
    {
        "name": NAMES,
        "shape": st.lists(st.integers(min_value=-1, max_value=4), min_size=0, max_size=3),
        "datatype": st.sampled_from([*DATATYPES, "FLOAT", ""]),
        "data": st.one_of(DATA, VALUES),
    }
)
BODY = st.one_of(
    st.fixed_dictionaries({"inputs": st.lists(TENSOR, max_size=4)}, optional={"id": VALUES, "outputs": DATA}),
    st.lists(st.dictionaries(NAMES, VALUES, max_size=4), max_size=3),
    VALUES,
)


PATHS = st.sampled_from(
    [
        "/v2/models/fraud/infer",
        "/v2/models/fraud/versions/2/infer",
        "/v1/models/fraud/predict",
        "/v1/feedback",
    ]
)


@given(body=BODY, path=PATHS)
@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
def test_inference_fuzz_never_5xx(server: Server, body: Any, path: str) -> None:
    _check_inference(server, body, path)


@pytest.mark.parametrize("fixed", SEEDS)
def test_inference_fuzz_never_5xx_with_fixed_seeds(server: Server, fixed: int) -> None:
    @seed(fixed)
    @given(body=BODY, path=PATHS)
    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def run(body: Any, path: str) -> None:
        _check_inference(server, body, path)

    run()


def _check_inference(server: Server, body: Any, path: str) -> None:
    r = server.client.post(path, json=body)
    assert r.status_code < 500, (path, body, r.text[:300])
    if r.status_code >= 400:
        assert isinstance(r.json()["error"], str) and r.json()["error"]


def test_still_serving_after_the_fuzz(server: Server) -> None:
    good = [{"amount": 10.0, "age": 30, "country": "NL"}]
    assert server.client.post("/v1/models/fraud/predict", json=good).status_code == 200
    assert server.client.get("/v2/health/ready").json() == {"ready": True}
