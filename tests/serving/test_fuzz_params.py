"""Property tests of path and query parameters: odd text in a URL is a 4xx, never a 5xx.

Model names, version references, endpoint and variant names and query values
are drawn from text a client may send in a URL: Unicode digits (``'¹'``,
``'٣'``, ``'²³'``: :meth:`str.isdigit` is true for them but :func:`int`
refuses them), whole numbers too large for a 64-bit column, very long ids and
control characters. Every answer must be below 500 and, when an error, carry a
reason; the server keeps serving afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from serving.app import create_app
from serving.config import ServeSettings
from serving.server import ServerThread
from serving.testing import register_demo
from storage.registry.core import Registry

pytestmark = pytest.mark.slow

ADMIN = "fuzz-admin"
UNICODE_DIGITS = ["¹", "²³", "٣", "໒", "𝟘", "Ⅻ", "½", "３", "1¹", "0x1f", "1e3", "-1", "+2", " 2 ", "٣.١.٠"]
BIG_NUMBERS = ["9" * 19, "9" * 30, "1" + "0" * 5000, str(2**63), str(2**64 + 1)]
CONTROL = ["\x00", "a\x00b", "\x7f", "\x1b[31m", "tab\there", "line\nbreak", "\u202e", "\ufeff", "\udcff"]
SPECIAL = ["@", "@@", "@champion", "latest", "production", "..", ".", "%", "%00", "a/b", "v1.0", "1.2.3.4"]
MAX_CLIENT_URL = 60_000  # httpx raises InvalidURL above 65,536 characters
LONG = ["x" * 5_000, "é" * 3_000, "1" * 4_301]

TEXT = st.one_of(
    st.sampled_from(UNICODE_DIGITS + BIG_NUMBERS + CONTROL + SPECIAL + LONG),
    st.text(min_size=1, max_size=40),
    st.text(alphabet=st.characters(categories=["Nd", "No", "Nl"]), min_size=1, max_size=6),
    st.integers(min_value=-(2**80), max_value=2**80).map(str),
)


def _segment(text: str) -> str:
    return quote(text.encode("utf-8", "surrogatepass"), safe="")


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    home = tmp_path_factory.mktemp("fuzz-params")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLOPS_HOME", str(home))
        registry = Registry.open(f"sqlite:///{home}/mlops.db", str(home / "artifacts"))
        register_demo(registry, "fraud", "sklearn")
        settings_ = ServeSettings(log_flush_s=0.2, admin_key=ADMIN, max_body_bytes=100_000)
        thread = ServerThread(create_app(settings_, registry=registry)).start()
        try:
            with httpx.Client(base_url=thread.url, timeout=30, headers={"X-API-Key": ADMIN}) as c:
                yield c
        finally:
            thread.stop()


def _check(response: httpx.Response, what: str) -> None:
    assert response.status_code < 500, (what, response.status_code, response.text[:300])
    is_json = response.headers.get("content-type", "").startswith("application/json")
    if response.status_code >= 400 and is_json:
        body = response.json()
        assert body.get("error") or body.get("detail"), (what, body)


BODY = {"inputs": [{"name": "amount", "shape": [1], "datatype": "FP64", "data": [1.0]}]}


@given(name=st.one_of(st.just("fraud"), TEXT), version=TEXT)
@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
def test_model_and_version_in_the_path_never_5xx(client: httpx.Client, name: str, version: str) -> None:
    n, v = _segment(name), _segment(version)
    for method, path in [
        ("GET", f"/v2/models/{n}/versions/{v}"),
        ("GET", f"/v2/models/{n}/versions/{v}/ready"),
        ("POST", f"/v2/models/{n}/versions/{v}/infer"),
        ("GET", f"/v2/models/{v}"),
        ("POST", f"/v1/models/{v}/predict"),
        ("POST", f"/v2/models/{v}/infer"),
    ]:
        response = client.request(method, path, json=BODY if method == "POST" else None)
        _check(response, f"{method} {path[:120]}")


@given(name=TEXT, variant=TEXT, number=TEXT)
@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
def test_admin_names_and_query_values_never_5xx(
    client: httpx.Client, name: str, variant: str, number: str
) -> None:
    n, v, q = _segment(name), _segment(variant), _segment(number)
    for method, path in [
        ("GET", f"/admin/endpoints/{n}?since_s={q}"),
        ("GET", f"/admin/endpoints/{n}/stats?since_s={q}"),
        ("GET", f"/admin/endpoints/{n}/events?kind={q}"),
        ("GET", f"/admin/endpoints/{n}/ab-report?control={v}&alpha={q}&since_s={q}&outcomes={q}"),
        ("DELETE", f"/admin/endpoints/{n}/variants/{v}"),
        ("POST", f"/admin/endpoints/{n}/slots/{v}"),
    ]:
        if len(path) > MAX_CLIENT_URL:
            continue  # httpx refuses to send it; the server never sees such a request
        _check(client.request(method, path), f"{method} {path[:120]}")


@pytest.mark.parametrize("version", ["¹", "²³", "٣", "9" * 30, "1" + "0" * 5000, "a\x00b"])
def test_the_known_cases_are_4xx(client: httpx.Client, version: str) -> None:
    response = client.post(f"/v2/models/0/versions/{_segment(version)}/infer", json=BODY)
    assert 400 <= response.status_code < 500, response.text[:200]
    response = client.post(f"/v2/models/fraud/versions/{_segment(version)}/infer", json=BODY)
    assert 400 <= response.status_code < 500, response.text[:200]


@pytest.mark.parametrize("value", ["¹", "٣", "9" * 40, "-1", "0x10"])
def test_binary_header_with_odd_digits_is_a_400(client: httpx.Client, value: str) -> None:
    headers = {b"Inference-Header-Content-Length": value.encode("utf-8")}
    response = client.post("/v2/models/fraud/infer", content=b"{}", headers=headers)
    assert response.status_code == 400, response.text[:200]
    assert "Inference-Header-Content-Length" in response.json()["error"]


def test_still_serving_after_the_parameters(client: httpx.Client) -> None:
    good = [{"amount": 10.0, "age": 30, "country": "NL"}]
    assert client.post("/v1/models/fraud/predict", json=good).status_code == 200
