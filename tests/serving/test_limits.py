"""Per-value limits: a string longer than MLOPS_SERVE_MAX_STRING_BYTES or a tensor with more than
MLOPS_SERVE_MAX_TENSOR_ELEMENTS values is a 413 naming the input, and nothing oversized is logged."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from serving.app import create_app
from serving.config import ServeSettings
from serving.server import ServerThread
from serving.testing import register_demo
from storage.monitoring.prediction_log import PredictionLog
from storage.registry.core import Registry
from tests.raw_http import send_declared_body

LIMIT = 1_000
ELEMENTS = 50


@pytest.fixture
def server(_isolated_home: Path) -> Iterator[str]:
    registry = Registry.from_settings()
    register_demo(registry, "fraud", "sklearn")
    settings = ServeSettings(max_string_bytes=LIMIT, max_tensor_elements=ELEMENTS, log_flush_s=0.1)
    thread = ServerThread(create_app(settings, registry=registry)).start()
    try:
        yield thread.url
    finally:
        thread.stop()


def _tensors(country: list[str], rows: int | None = None) -> dict[str, object]:
    n = rows if rows is not None else len(country)
    return {
        "inputs": [
            {"name": "amount", "shape": [n], "datatype": "FP64", "data": [1.0] * n},
            {"name": "age", "shape": [n], "datatype": "INT64", "data": [30] * n},
            {"name": "country", "shape": [n], "datatype": "BYTES", "data": country},
        ]
    }


def test_settings_read_the_limits_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLOPS_SERVE_MAX_STRING_BYTES", "2048")
    monkeypatch.setenv("MLOPS_SERVE_MAX_TENSOR_ELEMENTS", "99")
    settings = ServeSettings()
    assert (settings.max_string_bytes, settings.max_tensor_elements) == (2048, 99)
    assert ServeSettings.model_fields["max_string_bytes"].default == 64 * 1024


def test_a_long_string_is_a_413_that_names_it_and_is_never_logged(server: str) -> None:
    huge = "x" * 10_000_000
    with httpx.Client(base_url=server, timeout=60) as client:
        r = client.post("/v1/models/fraud/predict", json=[{"amount": 1.0, "age": 30, "country": huge}])
        assert r.status_code == 413
        message = r.json()["error"]
        assert "feature 'country'" in message and "instance 0" in message and "10000000 bytes" in message
        assert len(message) < 300
        r = client.post("/v2/models/fraud/infer", json=_tensors(["NL", "é" * 600]))  # 1,200 bytes
        assert (
            r.status_code == 413 and "input 'country'" in r.json()["error"] and "row 1" in r.json()["error"]
        )
        single = {"inputs": [{"name": "t", "shape": [1, 3], "datatype": "BYTES", "data": [1.0, 30, huge]}]}
        r = client.post("/v2/models/fraud/infer", json=single)
        assert r.status_code == 413 and "1000 per value" in r.json()["error"]
        ok = client.post("/v2/models/fraud/infer", json=_tensors(["y" * LIMIT], 1))
        assert ok.status_code == 200, ok.text
    log, deadline = PredictionLog.from_settings(), time.monotonic() + 60
    while (frame := log.read("fraud")).empty and time.monotonic() < deadline:
        time.sleep(0.1)  # the writer flushes every 0.1 s
    assert len(frame) == 1  # only the request within the limits
    assert frame["features"].str.len().max() < LIMIT + 200


def test_a_tensor_over_the_element_limit_is_a_413(server: str) -> None:
    with httpx.Client(base_url=server, timeout=60) as client:
        r = client.post("/v2/models/fraud/infer", json=_tensors(["NL"] * (ELEMENTS + 1)))
        assert r.status_code == 413 and f"at most {ELEMENTS} per tensor" in r.json()["error"]
        big = {"inputs": [{"name": "t", "shape": [20, 3], "datatype": "BYTES", "data": [1.0, 30, "NL"] * 20}]}
        r = client.post("/v2/models/fraud/infer", json=big)
        assert r.status_code == 413 and "holds 60 values" in r.json()["error"]
        assert client.post("/v2/models/fraud/infer", json=_tensors(["NL"] * ELEMENTS)).status_code == 200


def test_unknown_names_in_urls_do_not_grow_the_metrics_without_bound(server: str) -> None:
    with httpx.Client(base_url=server, timeout=60) as client:
        good = [{"amount": 1.0, "age": 30, "country": "NL"}]
        assert client.post("/v1/models/fraud/predict", json=good).status_code == 200
        before = len(client.get("/metrics").text)
        for i in range(300):
            assert client.post(f"/v2/models/nope-{i}-{'x' * 300}/infer", json={}).status_code == 404
        assert client.post("/v1/models/fraud/predict", json=[{"amount": 1.0}]).status_code == 400
        text = client.get("/metrics").text
    assert len(text) < before + 200_000  # 300 names of 300 characters made 1 MB of series before
    assert 'endpoint="(other)"' in text and "x" * 200 not in text
    # a model that answered keeps its name in error labels
    assert 'mlops_errors_total{code="400",endpoint="fraud",model="fraud"' in text


def test_a_body_over_the_limit_still_reads_its_413(_isolated_home: Path) -> None:
    """A client still sending its body when the server has decided gets the 413, not a reset."""
    registry = Registry.from_settings()
    register_demo(registry, "fraud", "sklearn")
    thread = ServerThread(create_app(ServeSettings(max_body_bytes=1 << 20), registry=registry)).start()
    try:
        json = {"Content-Type": "application/json"}
        head = send_declared_body(thread.url, "POST", "/v1/models/fraud/predict", json, (4 << 20) + 1)
    finally:
        thread.stop()
    assert head.startswith(b"HTTP/1.1 413"), head
