"""The Open Inference Protocol over gRPC with tritonclient's grpc client: keys, routing, log, metrics."""

from __future__ import annotations

import queue
import time
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest

from serving.app import create_app
from serving.config import ServeSettings
from serving.models import ModelCache
from serving.protocol import Batch
from serving.server import ServerThread
from serving.testing import demo_frame, register_demo
from storage.registry.core import Registry

grpcclient = pytest.importorskip("tritonclient.grpc")
ROWS = demo_frame(30, seed=9)
KEY = {"authorization": "Bearer k1"}
ADMIN = {"Authorization": "Bearer adm"}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    home = tmp_path_factory.mktemp("grpc-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLOPS_HOME", str(home))
        registry = Registry.open(f"sqlite:///{home}/mlops.db", str(home / "artifacts"))
        register_demo(registry, "fraud", "onnx")
        register_demo(registry, "fraud", "sklearn")
        register_demo(registry, "price", "regression")
        settings = ServeSettings(api_keys=["k1"], admin_key="adm", grpc_port=0, log_flush_s=0.05)
        app = create_app(settings, registry=registry)
        server = ServerThread(app).start()
        port = app.state.serving.grpc_port
        client = grpcclient.InferenceServerClient(f"127.0.0.1:{port}")
        try:
            yield {"url": server.url, "registry": registry, "client": client, "app": app, "home": home}
        finally:
            client.close()
            server.stop()


def in_process(registry: Registry, model: str, version: str | None = None) -> Any:
    loaded = ModelCache(registry).get(model, version)
    columns = {n: ROWS[n].to_numpy() for n in loaded.spec.names}
    columns["country"] = columns["country"].astype(object)
    return loaded.runtime.predict(Batch(columns, len(ROWS)))


def inputs(n: int = len(ROWS)) -> list[Any]:
    amount = grpcclient.InferInput("amount", [n, 1], "FP64")
    amount.set_data_from_numpy(ROWS[["amount"]].to_numpy(dtype=np.float64)[:n])
    age = grpcclient.InferInput("age", [n], "INT64")
    age.set_data_from_numpy(ROWS["age"].to_numpy(dtype=np.int64)[:n])
    country = grpcclient.InferInput("country", [n, 1], "BYTES")
    country.set_data_from_numpy(ROWS[["country"]].to_numpy(dtype=object)[:n])
    return [amount, age, country]


def test_health_and_metadata(served: dict[str, Any]) -> None:
    client = served["client"]
    assert client.is_server_live() and client.is_server_ready()
    assert client.get_server_metadata().extensions == ["binary_tensor_data"]
    assert client.is_model_ready("fraud", headers=KEY)
    assert not client.is_model_ready("nope", headers=KEY)
    meta = client.get_model_metadata("fraud", "1", headers=KEY)
    assert meta.platform == "onnx" and [i.name for i in meta.inputs] == ["amount", "age", "country"]
    assert [o.name for o in meta.outputs] == ["label", "probabilities"]


@pytest.mark.parametrize(("model", "version"), [("fraud", "1"), ("fraud", "2"), ("price", "")])
def test_infer_matches_in_process(served: dict[str, Any], model: str, version: str) -> None:
    expected = in_process(served["registry"], model, version or None)
    result = served["client"].infer(model, inputs(), model_version=version, request_id="g-1", headers=KEY)
    response = result.get_response()
    assert response.id == "g-1" and response.model_name == model
    if expected.values is not None:
        np.testing.assert_allclose(result.as_numpy("variable"), expected.values)
        return
    np.testing.assert_allclose(result.as_numpy("probabilities"), expected.probabilities, atol=1e-12)
    np.testing.assert_array_equal(result.as_numpy("label"), expected.labels)
    assert response.model_version == version


def test_requested_outputs_and_stream(served: dict[str, Any]) -> None:
    client = served["client"]
    result = client.infer(
        "fraud", inputs(3), outputs=[grpcclient.InferRequestedOutput("probabilities")], headers=KEY
    )
    assert result.as_numpy("label") is None and result.as_numpy("probabilities").shape == (3, 2)
    answers: queue.Queue[Any] = queue.Queue()
    client.start_stream(callback=lambda result, error: answers.put((result, error)), headers=KEY)
    try:
        client.async_stream_infer("fraud", inputs(2), request_id="s-1")
        client.async_stream_infer("nope", inputs(2), request_id="s-2")
        first, second = answers.get(timeout=10), answers.get(timeout=10)
    finally:
        client.stop_stream()
    assert first[1] is None and first[0].as_numpy("probabilities").shape == (2, 2)
    assert second[0] is None and "does not exist" in str(second[1])


def test_keys_and_errors_carry_the_reason(served: dict[str, Any]) -> None:
    from tritonclient.utils import InferenceServerException

    client = served["client"]
    cases = [
        ({}, inputs(), "StatusCode.UNAUTHENTICATED", "API key is required"),
        ({"authorization": "Bearer nope"}, inputs(), "StatusCode.PERMISSION_DENIED", "not valid"),
        ({"x-api-key": "k1"}, inputs()[:2], "StatusCode.INVALID_ARGUMENT", "missing input 'country'"),
    ]
    for headers, tensors, status, reason in cases:
        with pytest.raises(InferenceServerException) as caught:
            client.infer("fraud", tensors, headers=headers)
        assert caught.value.status() == status and reason in caught.value.message()
    with pytest.raises(InferenceServerException) as caught:
        client.infer("nope", inputs(), headers=KEY)
    assert caught.value.status() == "StatusCode.NOT_FOUND"
    bad = grpcclient.InferInput("amount", [2, 1], "FP64")
    bad._raw_content = b"\x00" * 5  # not two doubles
    with pytest.raises(InferenceServerException, match="do not hold 2 values"):
        client.infer("fraud", [bad, *inputs(2)[1:]], headers=KEY)


def test_endpoint_routing_log_and_metrics(served: dict[str, Any]) -> None:
    url, client = served["url"], served["client"]
    body = {
        "name": "fraud-api",
        "policy": "ab",
        "variants": [
            {"name": "a", "model": "fraud", "version": "1", "weight": 50},
            {"name": "b", "model": "fraud", "version": "2", "weight": 50},
        ],
    }
    assert httpx.post(f"{url}/admin/endpoints", json=body, headers=ADMIN).status_code == 201
    from tritonclient.utils import InferenceServerException

    deadline = time.monotonic() + 60  # the router's thread re-reads endpoints within its refresh time
    while True:
        try:
            client.infer("fraud-api", inputs(1), request_id="probe", headers=KEY)
            break
        except InferenceServerException:
            assert time.monotonic() < deadline, "the router never saw the new endpoint"
            time.sleep(0.1)
    seen = {}
    for i in range(12):
        key = f"user-{i}"
        result = client.infer(
            "fraud-api", inputs(1), request_id=f"ab-{i}", headers={**KEY, "x-request-key": key}
        )
        params = result.get_response().parameters
        seen[key] = params["variant"].string_param
        again = client.infer("fraud-api", inputs(1), parameters={"request_key": key}, headers=KEY)
        assert again.get_response().parameters["variant"].string_param == seen[key]  # sticky
    assert set(seen.values()) == {"a", "b"}
    metrics = httpx.get(f"{url}/metrics").text
    assert 'mlops_requests_total{endpoint="fraud-api",model="fraud",status="ok",variant="a"' in metrics
    assert 'mlops_errors_total{code="404",endpoint="nope"' in metrics
    writer = served["app"].state.serving.writer
    assert writer.flush()
    rows = writer.log.read(model="fraud")
    logged = rows[rows["request_id"].str.startswith("ab-")]
    assert len(logged) == 12
    assert set(logged["endpoint"]) == {"fraud-api"} and set(logged["variant"]) == {"a", "b"}
