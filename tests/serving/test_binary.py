"""The binary tensor data extension: tritonclient's http client with binary on and off, and bad bodies."""

from __future__ import annotations

import gzip
import json
import struct
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest

from serving.app import create_app
from serving.binary import HEADER, encode_raw
from serving.config import ServeSettings
from serving.models import ModelCache
from serving.protocol import Batch
from serving.server import ServerThread, running_server
from serving.testing import demo_frame, register_demo
from storage.registry.core import Registry

ROWS = demo_frame(40, seed=5)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Registry]]:
    home = tmp_path_factory.mktemp("binary-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLOPS_HOME", str(home))
        registry = Registry.open(f"sqlite:///{home}/mlops.db", str(home / "artifacts"))
        register_demo(registry, "fraud", "onnx")
        register_demo(registry, "price", "regression")
        server = ServerThread(create_app(ServeSettings(log_flush_s=0.1), registry=registry)).start()
        try:
            yield server.url, registry
        finally:
            server.stop()


def in_process(registry: Registry, model: str) -> Any:
    """The version's prediction of ROWS, straight from its runtime."""
    loaded = ModelCache(registry).get(model)
    columns = {n: ROWS[n].to_numpy() for n in loaded.spec.names}
    columns["country"] = columns["country"].astype(object)
    return loaded.runtime.predict(Batch(columns, len(ROWS)))


def triton_inputs(http: Any, binary: bool) -> list[Any]:
    n = len(ROWS)
    amount = http.InferInput("amount", [n, 1], "FP32")
    amount.set_data_from_numpy(ROWS[["amount"]].to_numpy(dtype=np.float32), binary_data=binary)
    age = http.InferInput("age", [n], "INT64")
    age.set_data_from_numpy(ROWS["age"].to_numpy(dtype=np.int64), binary_data=binary)
    country = http.InferInput("country", [n, 1], "BYTES")
    country.set_data_from_numpy(ROWS[["country"]].to_numpy(dtype=object), binary_data=binary)
    return [amount, age, country]


@pytest.mark.parametrize("binary_in", [True, False])
@pytest.mark.parametrize("binary_out", [True, False, None])
def test_tritonclient_binary_on_and_off(
    served: tuple[str, Registry], binary_in: bool, binary_out: bool | None
) -> None:
    import tritonclient.http as http

    url, registry = served
    expected = in_process(registry, "fraud")
    client = http.InferenceServerClient(url=url.removeprefix("http://"))
    try:
        outputs = (
            None  # tritonclient then asks for every output in binary (binary_data_output)
            if binary_out is None
            else [
                http.InferRequestedOutput("label", binary_data=binary_out),
                http.InferRequestedOutput("probabilities", binary_data=binary_out),
            ]
        )
        result = client.infer("fraud", triton_inputs(http, binary_in), outputs=outputs, request_id="b-1")
        probs = result.as_numpy("probabilities")
        # FP32 amounts: the model reads float32 anyway, so the same numbers reach it
        np.testing.assert_allclose(probs, expected.probabilities, atol=1e-12)
        np.testing.assert_array_equal(result.as_numpy("label"), expected.labels)
        assert result.get_response()["id"] == "b-1"
    finally:
        client.close()


def test_tritonclient_binary_regression_and_compression(served: tuple[str, Registry]) -> None:
    import tritonclient.http as http

    url, registry = served
    expected = in_process(registry, "price")
    client = http.InferenceServerClient(url=url.removeprefix("http://"))
    try:
        for algorithm in ("gzip", "deflate"):
            result = client.infer("price", triton_inputs(http, True), request_compression_algorithm=algorithm)
            np.testing.assert_allclose(result.as_numpy("variable"), expected.values)
    finally:
        client.close()


def binary_body(tensors: list[tuple[str, list[int], str, bytes]], extra: bytes = b"") -> tuple[bytes, int]:
    head = json.dumps(
        {
            "inputs": [
                {"name": n, "shape": s, "datatype": d, "parameters": {"binary_data_size": len(raw)}}
                for n, s, d, raw in tensors
            ],
            "outputs": [{"name": "probabilities", "parameters": {"binary_data": True}}],
        }
    ).encode()
    return head + b"".join(raw for *_, raw in tensors) + extra, len(head)


def good_tensors(n: int = 2) -> list[tuple[str, list[int], str, bytes]]:
    return [
        ("amount", [n], "FP64", encode_raw(np.arange(n, dtype=np.float64) * 10, "FP64")),
        ("age", [n], "INT32", encode_raw(np.full(n, 30), "INT32")),
        ("country", [n], "BYTES", encode_raw(np.array(["NL"] * n, dtype=object), "BYTES")),
    ]


def test_plain_httpx_binary_round_trip(served: tuple[str, Registry]) -> None:
    url, _ = served
    body, length = binary_body(good_tensors())
    r = httpx.post(f"{url}/v2/models/fraud/infer", content=body, headers={HEADER: str(length)})
    assert r.status_code == 200, r.text
    json_len = int(r.headers[HEADER])
    head = json.loads(r.content[:json_len])
    (out,) = head["outputs"]
    assert out["parameters"]["binary_data_size"] == 2 * 2 * 8 and "data" not in out
    probs = np.frombuffer(r.content[json_len:], dtype="<f8").reshape(out["shape"])
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    assert httpx.get(f"{url}/v2").json()["extensions"] == ["binary_tensor_data"]


BAD = {
    "header not a number": ("abc", None, "must be a whole number"),
    "header past the end": ("99999", None, "but the body holds"),
    "bytes left over": (None, b"xx", "bytes after the JSON"),
    "wrong size": (None, "short", "do not hold 2 values"),
    "bytes length runs over": (None, "bytes", "says 1000 bytes"),
    "bad utf-8": (None, "utf8", "not UTF-8"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_binary_bodies_are_400(served: tuple[str, Registry], case: str) -> None:
    url, _ = served
    header, change, message = BAD[case]
    tensors = good_tensors()
    extra = b""
    if change == b"xx":
        extra = b"xx"
    elif change == "short":
        tensors[0] = ("amount", [2], "FP64", b"\x00" * 12)
    elif change == "bytes":
        tensors[2] = ("country", [2], "BYTES", struct.pack("<I", 1000) + b"NL")
    elif change == "utf8":
        raw = struct.pack("<I", 2) + b"\xff\xfe"
        tensors[2] = ("country", [2], "BYTES", raw + raw)
    body, length = binary_body(tensors, extra)
    r = httpx.post(f"{url}/v2/models/fraud/infer", content=body, headers={HEADER: header or str(length)})
    assert r.status_code == 400, r.text
    assert message in r.json()["error"]


def test_bad_compression_is_4xx(served: tuple[str, Registry]) -> None:
    url, _ = served
    r = httpx.post(f"{url}/v2/models/fraud/infer", content=b"not gzip", headers={"Content-Encoding": "gzip"})
    assert r.status_code == 400 and "not valid gzip" in r.json()["error"]
    r = httpx.post(f"{url}/v2/models/fraud/infer", content=b"{}", headers={"Content-Encoding": "br"})
    assert r.status_code == 415
    bomb = gzip.compress(b" " * (2 * 1024 * 1024))
    app = create_app(ServeSettings(log_predictions=False, max_body_bytes=1024 * 1024), registry=served[1])
    with running_server(app) as small:
        r = httpx.post(f"{small}/v2/models/fraud/infer", content=bomb, headers={"Content-Encoding": "gzip"})
    assert r.status_code == 413
