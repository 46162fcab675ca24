"""Standard clients against the real server: tritonclient (JSON) and plain httpx, every runtime."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import numpy as np
import pytest

from serving.app import create_app
from serving.config import ServeSettings
from serving.server import ServerThread
from serving.testing import demo_frame, register_demo
from storage.registry.core import Registry

RUNTIMES = ("onnx", "sklearn", "xgboost", "pytorch")
ROWS = demo_frame(25, seed=11)


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    home = tmp_path_factory.mktemp("clients-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLOPS_HOME", str(home))
        registry = Registry.open(f"sqlite:///{home}/mlops.db", str(home / "artifacts"))
        for kind in RUNTIMES:
            register_demo(registry, f"m-{kind}", kind)
        register_demo(registry, "price", "regression")
        server = ServerThread(create_app(ServeSettings(log_flush_s=0.1), registry=registry)).start()
        try:
            yield server.url
        finally:
            server.stop()


@pytest.fixture(scope="module")
def expected(url: str) -> dict[str, np.ndarray]:
    """Each model's probabilities through the records endpoint, to compare the clients with."""
    out = {}
    for kind in RUNTIMES:
        body = httpx.post(f"{url}/v1/models/m-{kind}/predict", json=ROWS.to_dict("records")).json()
        out[kind] = np.asarray(body["probabilities"])
    return out


def triton_inputs(http: object) -> list[object]:
    n = len(ROWS)
    amount = http.InferInput("amount", [n, 1], "FP64")  # type: ignore[attr-defined]
    amount.set_data_from_numpy(ROWS[["amount"]].to_numpy(dtype=np.float64), binary_data=False)
    age = http.InferInput("age", [n, 1], "INT64")  # type: ignore[attr-defined]
    age.set_data_from_numpy(ROWS[["age"]].to_numpy(dtype=np.int64), binary_data=False)
    country = http.InferInput("country", [n, 1], "BYTES")  # type: ignore[attr-defined]
    country.set_data_from_numpy(ROWS[["country"]].to_numpy(dtype=object), binary_data=False)
    return [amount, age, country]


@pytest.mark.parametrize("kind", RUNTIMES)
def test_tritonclient_json(url: str, expected: dict[str, np.ndarray], kind: str) -> None:
    import tritonclient.http as http

    client = http.InferenceServerClient(url=url.removeprefix("http://"))
    try:
        assert client.is_server_live() and client.is_server_ready()
        assert client.is_model_ready(f"m-{kind}")
        meta = client.get_model_metadata(f"m-{kind}")
        assert meta["platform"] == kind and [i["name"] for i in meta["inputs"]] == [
            "amount",
            "age",
            "country",
        ]
        outputs = [
            http.InferRequestedOutput("label", binary_data=False),
            http.InferRequestedOutput("probabilities", binary_data=False),
        ]
        result = client.infer(f"m-{kind}", triton_inputs(http), outputs=outputs, request_id="t-1")
        probs = result.as_numpy("probabilities")
        assert probs.shape == (25, 2)
        np.testing.assert_allclose(probs, expected[kind], atol=1e-12)
        np.testing.assert_array_equal(result.as_numpy("label"), probs.argmax(axis=1))
        assert result.get_response()["id"] == "t-1"
    finally:
        client.close()


def test_tritonclient_errors_surface_the_reason(url: str) -> None:
    import tritonclient.http as http
    from tritonclient.utils import InferenceServerException

    client = http.InferenceServerClient(url=url.removeprefix("http://"))
    try:
        with pytest.raises(InferenceServerException, match="missing input 'country'"):
            client.infer("m-onnx", triton_inputs(http)[:2])
        with pytest.raises(InferenceServerException, match="does not exist"):
            client.get_model_metadata("nope")
        assert not client.is_model_ready("nope")
    finally:
        client.close()


def test_plain_httpx_regression_and_versions(url: str) -> None:
    n = len(ROWS)
    body = {
        "inputs": [
            {"name": "input-0", "shape": [n, 3], "datatype": "BYTES", "data": ROWS.to_numpy().tolist()},
        ]
    }
    r = httpx.post(f"{url}/v2/models/price/versions/1/infer", json=body)
    assert r.status_code == 200, r.text
    (out,) = r.json()["outputs"]
    assert out["name"] == "variable" and out["shape"] == [n] and out["datatype"] == "FP64"
    records = httpx.post(f"{url}/v1/models/price/predict", json={"instances": ROWS.to_dict("records")}).json()
    np.testing.assert_allclose(out["data"], records["predictions"])
