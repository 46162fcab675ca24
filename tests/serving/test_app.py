"""The model server over real HTTP on 127.0.0.1: inference, errors, logging, feedback, routing, metrics."""

from __future__ import annotations

import json
import pickle
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from serving.app import create_app
from serving.config import ServeSettings
from serving.server import ServerThread
from serving.testing import demo_frame, demo_pipeline, demo_target, register_demo
from serving.traffic import Route, Target
from storage.governance.reports import ReportStore
from storage.monitoring.ground_truth import read_labels
from storage.monitoring.prediction_log import PredictionLog
from storage.registry.core import Registry
from storage.registry.model_format import signature_for

KEY, ADMIN = "k-123", "adm-456"
ROWS = demo_frame(20, seed=5)


class FailingModel:
    """A model that fails on every prediction (a deliberately broken version)."""

    classes_ = np.array([0, 1])

    def predict_proba(self, x: Any) -> Any:
        raise RuntimeError("deliberate failure")


#: How long the slow shadow takes: far above a request's time even on a loaded machine.
SLOW_S = 2.0


class SlowModel:
    """A model that answers after a delay."""

    classes_ = np.array([0, 1])

    def predict_proba(self, x: Any) -> Any:
        time.sleep(SLOW_S)
        return np.tile([0.5, 0.5], (len(x), 1))


class FakeRouter:
    """Routes endpoint ``shop`` to fraud v1, mirrored to a slow and a failing shadow."""

    def __init__(self) -> None:
        self.observed: list[tuple[Any, ...]] = []
        self.keys: list[str | None] = []

    def route(self, name: str, request_key: str | None) -> Route | None:
        if name != "shop":
            return None
        self.keys.append(request_key)
        return Route("shop", "blue", Target("fraud", "1"), (Target("slow", "1"), Target("broken", "1")))

    def observe(self, endpoint: str, variant: str, target: Target, latency_ms: float, ok: bool) -> None:
        self.observed.append((endpoint, variant, target, ok))

    def close(self) -> None:
        pass


class Env:
    def __init__(self, url: str, registry: Registry, home: Path, server: ServerThread, router: FakeRouter):
        self.url, self.registry, self.home, self.server, self.router = url, registry, home, server, router
        self.client = httpx.Client(base_url=url, headers={"X-API-Key": KEY}, timeout=30)

    def log(self) -> Any:
        self.server.server.config.app.state.serving.writer.flush()
        return PredictionLog(self.home / "predictions").read()


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    home = tmp_path_factory.mktemp("serve-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLOPS_HOME", str(home))
        registry = Registry.open(f"sqlite:///{home}/mlops.db", str(home / "artifacts"), actor="tester")
        register_demo(registry, "fraud", "onnx")
        register_demo(registry, "fraud", "sklearn")
        registry.set_alias("fraud", "champion", 1)
        register_demo(registry, "fraud-xgb", "xgboost")
        register_demo(registry, "fraud-torch", "pytorch")
        register_demo(registry, "price", "regression")
        sig = signature_for(demo_frame(2), "classification", [0, 1])
        for name, model in (("broken", FailingModel()), ("slow", SlowModel())):
            registry.create_model(name)
            registry.create_version(name, framework="custom", artifacts={"model.pkl": pickle.dumps(model)},
                                    signature=sig)  # fmt: skip
        settings = ServeSettings(
            api_keys=[KEY], admin_key=ADMIN, trust_pickle=True, refresh_s=0.2, log_flush_s=0.1,
            max_body_bytes=2_000_000, max_batch_rows=20_000,
        )  # fmt: skip
        app = create_app(settings, registry=registry)
        router = FakeRouter()
        real = app.state.serving.router
        app.state.serving.router = router
        server = ServerThread(app).start()
        try:
            yield Env(server.url, registry, home, server, router)
        finally:
            server.stop()
            if real is not None:
                real.close()


def oip(frame: Any, rid: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "inputs": [
            {
                "name": "amount",
                "shape": [len(frame), 1],
                "datatype": "FP64",
                "data": frame["amount"].tolist(),
            },
            {"name": "age", "shape": [len(frame)], "datatype": "INT64", "data": frame["age"].tolist()},
            {
                "name": "country",
                "shape": [len(frame), 1],
                "datatype": "BYTES",
                "data": frame["country"].tolist(),
            },
        ]
    }
    if rid:
        body["id"] = rid
    return body


def outputs(body: dict[str, Any]) -> dict[str, Any]:
    return {o["name"]: np.asarray(o["data"]).reshape(o["shape"]) for o in body["outputs"]}


def test_health_and_server_metadata(env: Env) -> None:
    assert httpx.get(f"{env.url}/v2/health/live").json() == {"live": True}
    assert httpx.get(f"{env.url}/v2/health/ready").json() == {"ready": True}
    assert env.client.get("/v2").json()["name"] == "dwcp-mlops"


def test_model_metadata(env: Env) -> None:
    meta = env.client.get("/v2/models/fraud").json()
    assert meta["versions"] == ["1", "2"] and meta["platform"] == "onnx"
    assert [(i["name"], i["datatype"]) for i in meta["inputs"]] == [
        ("amount", "FP64"), ("age", "INT64"), ("country", "BYTES"),
    ]  # fmt: skip
    assert [(o["name"], o["datatype"]) for o in meta["outputs"]] == [
        ("label", "INT64"),
        ("probabilities", "FP64"),
    ]
    assert env.client.get("/v2/models/fraud/versions/2").json()["platform"] == "sklearn"
    assert env.client.get("/v2/models/price").json()["outputs"][0]["name"] == "variable"
    assert env.client.get("/v2/models/fraud/versions/2/ready").json()["ready"] is True
    assert env.client.get("/v2/models/fraud/ready").json() == {"name": "fraud", "version": "1", "ready": True}


def test_infer_matches_the_scikit_learn_pipeline(env: Env) -> None:
    pipeline = demo_pipeline(demo_frame(400), demo_target(demo_frame(400)))
    for path in ("/v2/models/fraud/infer", "/v2/models/fraud/versions/2/infer"):
        r = env.client.post(path, json=oip(ROWS, "req-1"))
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["id"] == "req-1" and r.headers["x-request-id"] == "req-1"
        out = outputs(body)
        np.testing.assert_allclose(out["probabilities"], pipeline.predict_proba(ROWS), atol=1e-5)
        np.testing.assert_array_equal(out["label"], pipeline.predict(ROWS))
    assert body["model_version"] == "2"
    only = env.client.post(
        "/v2/models/fraud/infer", json={**oip(ROWS), "outputs": [{"name": "label"}]}
    ).json()
    assert [o["name"] for o in only["outputs"]] == ["label"]


def test_records_endpoint_for_every_runtime(env: Env) -> None:
    records = ROWS.to_dict("records")
    for name, version in (("fraud", "1"), ("fraud-xgb", "1"), ("fraud-torch", "1")):
        r = env.client.post(f"/v1/models/{name}/predict", json={"instances": records})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["model_version"] == version and len(body["predictions"]) == 20
        assert set(body["predictions"]) <= {0, 1} and np.allclose(np.sum(body["probabilities"], axis=1), 1)
    values = env.client.post("/v1/models/price/predict", json=records[:3]).json()["predictions"]
    assert len(values) == 3 and all(isinstance(v, float) for v in values)


def test_request_id_from_header_or_generated(env: Env) -> None:
    r = env.client.post("/v2/models/fraud/infer", json=oip(ROWS[:1]), headers={"X-Request-Id": "hdr-7"})
    assert r.json()["id"] == "hdr-7"
    generated = env.client.post("/v2/models/fraud/infer", json=oip(ROWS[:1])).json()["id"]
    assert len(generated) == 32


def _bad(body: dict[str, Any], **change: Any) -> dict[str, Any]:
    inputs = [dict(t) for t in body["inputs"]]
    for i, t in enumerate(inputs):
        if t["name"] in change:
            inputs[i] = {**t, **change[t["name"]]} if change[t["name"]] is not None else None  # type: ignore[assignment]
    return {**body, "inputs": [t for t in inputs if t is not None]}


@pytest.mark.parametrize(
    ("path", "content", "status", "reason"),
    [
        ("/v2/models/fraud/infer", b"{not json", 400, "malformed JSON"),
        ("/v2/models/fraud/infer", b"", 400, "no body"),
        (
            "/v2/models/fraud/infer",
            _bad(oip(ROWS[:2]), amount={"shape": [3, 1]}),
            400,
            "shape [3, 1] needs 3",
        ),
        (
            "/v2/models/fraud/infer",
            _bad(oip(ROWS[:2]), age={"datatype": "FP32"}),
            400,
            "does not fit the int",
        ),
        ("/v2/models/fraud/infer", _bad(oip(ROWS[:2]), country=None), 400, "missing input 'country'"),
        (
            "/v2/models/fraud/infer",
            _bad(oip(ROWS[:2]), amount={"data": [1.0, None]}),
            400,
            "missing (null/NaN)",
        ),
        ("/v2/models/nope/infer", oip(ROWS[:1]), 404, "model 'nope' does not exist"),
        ("/v2/models/fraud/versions/9/infer", oip(ROWS[:1]), 404, "has no version 9"),
        ("/v1/models/fraud/predict", {"instances": [{"amount": 1}]}, 400, "lacks feature 'age'"),
        ("/v2/models/fraud/infer", {"id": ["x"], **oip(ROWS[:1])}, 400, "request id"),
        ("/v2/models/fraud/infer", {"id": "r\u0100", **oip(ROWS[:1])}, 400, "printable ASCII"),
        ("/v2/models/nope/infer", {"id": "r\u0100", **oip(ROWS[:1])}, 400, "printable ASCII"),
    ],
)
def test_bad_input_gets_a_reason_and_the_server_keeps_serving(
    env: Env, path: str, content: Any, status: int, reason: str
) -> None:
    data = content if isinstance(content, bytes) else json.dumps(content).encode()
    r = env.client.post(path, content=data, headers={"Content-Type": "application/json"})
    assert r.status_code == status, r.text
    assert reason in r.json()["error"]
    assert env.client.post("/v2/models/fraud/infer", json=oip(ROWS[:1])).status_code == 200


def test_payload_too_large_and_too_many_rows(env: Env) -> None:
    big = b'{"inputs": [' + b" " * 2_100_000 + b"]}"
    r = env.client.post("/v2/models/fraud/infer", content=big)
    assert r.status_code == 413 and "payload too large" in r.json()["error"]
    rows = demo_frame(20_001, seed=2)
    single = {"inputs": [{"name": "x", "shape": [20_001, 3], "datatype": "BYTES",
                          "data": rows.to_numpy().tolist()}]}  # fmt: skip
    r = env.client.post("/v2/models/fraud/infer", content=json.dumps(single).encode()[:1_900_000])
    assert r.status_code == 400  # cut short: malformed, not a crash


def test_large_batch_as_one_tensor(env: Env) -> None:
    rows = demo_frame(10_000, seed=3)
    body = {
        "inputs": [{"name": "x", "shape": [10_000, 3], "datatype": "BYTES", "data": rows.to_numpy().tolist()}]
    }
    r = env.client.post("/v2/models/fraud/infer", json=body)
    assert r.status_code == 200, r.text
    assert outputs(r.json())["probabilities"].shape == (10_000, 2)


def test_api_keys(env: Env) -> None:
    plain = httpx.Client(base_url=env.url)
    r = plain.post("/v2/models/fraud/infer", json=oip(ROWS[:1]))
    assert r.status_code == 401 and "API key is required" in r.json()["error"]
    r = plain.post("/v2/models/fraud/infer", json=oip(ROWS[:1]), headers={"X-API-Key": "wrong"})
    assert r.status_code == 403
    r = plain.post("/v2/models/fraud/infer", json=oip(ROWS[:1]), headers={"Authorization": f"Bearer {KEY}"})
    assert r.status_code == 200
    assert plain.get("/v2/models/fraud").status_code == 401
    assert plain.get("/v2/health/ready").status_code == 200 and plain.get("/metrics").status_code == 200


def test_admin_routes_need_the_admin_key(env: Env) -> None:
    plain = httpx.Client(base_url=env.url)
    assert plain.get("/admin/endpoints").status_code == 401
    assert plain.get("/admin/endpoints", headers={"X-API-Key": KEY}).status_code == 403
    assert plain.get("/admin/endpoints", headers={"Authorization": f"Bearer {ADMIN}"}).status_code == 200


def test_failing_model_is_a_500_naming_it_and_logged(env: Env) -> None:
    r = env.client.post("/v2/models/broken/infer", json=oip(ROWS[:1], "fail-1"))
    assert r.status_code == 500 and "broken version 1 failed to predict" in r.json()["error"]
    assert env.client.post("/v2/models/fraud/infer", json=oip(ROWS[:1])).status_code == 200
    rows = env.log()
    assert rows.loc[rows["request_id"] == "fail-1", "status"].tolist() == ["error"]


def test_predictions_are_logged(env: Env) -> None:
    env.client.post("/v2/models/fraud/infer", json=oip(ROWS[:3], "log-3"))
    env.client.post(
        "/v1/models/fraud-xgb/predict", json=ROWS[:1].to_dict("records"), headers={"X-Request-Id": "x1"}
    )
    rows = env.log().set_index("request_id")
    assert rows.loc[["log-3:0", "log-3:1", "log-3:2"], "version"].tolist() == [1, 1, 1]
    assert json.loads(rows.loc["log-3:1", "features"]) == {
        "amount": ROWS["amount"][1], "age": int(ROWS["age"][1]), "country": ROWS["country"][1],
    }  # fmt: skip
    prediction = json.loads(rows.loc["x1", "prediction"])
    assert set(prediction) == {"label", "score"} and 0 <= prediction["score"] <= 1
    assert rows.loc["x1", "model"] == "fraud-xgb" and rows.loc["x1", "latency_ms"] > 0


def test_feedback_is_stored_as_ground_truth(env: Env) -> None:
    r = env.client.post("/v1/feedback", json={"request_id": "log-3:0", "label": 1})
    assert r.status_code == 200 and r.json()["stored"] == 1
    labels = [{"request_id": "x1", "label": 0}, {"request_id": "log-3:0", "label": 0}]
    r = env.client.post("/v2/models/fraud/feedback", json=labels)
    assert r.json()["stored"] == 2
    labels = read_labels(env.home / "ground_truth").set_index("request_id")["label"]
    assert labels.to_dict() == {"log-3:0": 0, "x1": 0}
    bad = env.client.post("/v1/feedback", json={"request_id": "", "label": 1})
    assert bad.status_code == 400 and "request_id" in bad.json()["error"]


def test_routed_requests_with_slow_and_failing_shadows(env: Env) -> None:
    env.router.observed.clear()
    start = time.perf_counter()
    r = env.client.post("/v2/models/shop/infer", json={**oip(ROWS[:2], "shop-1"),
                                                        "parameters": {"request_key": "user-9"}})  # fmt: skip
    elapsed = time.perf_counter() - start
    assert r.status_code == 200 and elapsed < SLOW_S - 0.5  # the answer never waits for the slow shadow
    assert r.json()["parameters"] == {"model": "fraud", "endpoint": "shop", "variant": "blue"}
    records = env.client.post("/v1/models/shop/predict", json=ROWS[:1].to_dict("records"),
                              headers={"X-Request-Key": "user-3", "X-Request-Id": "shop-2"})  # fmt: skip
    assert records.status_code == 200 and records.json()["variant"] == "blue"
    assert env.router.keys[-2:] == ["user-9", "user-3"]
    deadline = time.monotonic() + 60  # generous: a busy machine delays the router
    while len(env.router.observed) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert env.router.observed[-1] == ("shop", "blue", Target("fraud", "1"), True)
    deadline = time.monotonic() + 60  # the shadows finish in the background, then the writer flushes
    while True:
        rows = env.log()
        shop = rows[rows["request_id"].str.startswith("shop-1")]
        if len(shop) >= 6 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    by_variant = shop.groupby("variant")["status"].apply(sorted).to_dict()
    assert by_variant == {
        "blue": ["ok", "ok"],
        "shadow:slow:1": ["ok", "ok"],
        "shadow:broken:1": ["error", "error"],
    }
    assert set(shop["endpoint"]) == {"shop"}


def test_serving_config_report_and_metrics(env: Env) -> None:
    env.client.post("/v2/models/fraud/infer", json=oip(ROWS[:1]))
    report = ReportStore(env.registry).latest("serving_config", "fraud", 1)
    assert report is not None and report.payload["api_keys_required"] is True
    text = env.client.get("/metrics").text
    assert 'mlops_requests_total{endpoint="fraud",model="fraud",status="ok",variant="",version="1"}' in text
    assert 'mlops_errors_total{code="404",endpoint="nope",model="nope",variant=""}' in text
    assert (
        'mlops_requests_total{endpoint="broken",model="broken",status="error",variant="",version="1"}' in text
    )
    assert "mlops_request_latency_seconds_bucket" in text and "mlops_in_flight_requests 0.0" in text
    assert 'mlops_shadow_predictions_total{endpoint="shop",model="broken",outcome="error"}' in text


def test_explain_adds_up_to_the_model_output(env: Env) -> None:
    record = ROWS[:1].to_dict("records")
    r = env.client.post("/v1/models/fraud-xgb/explain", json=record)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["method"] == "shap.TreeExplainer" and len(body["factors"]) <= 10
    assert {f["input"] for f in body["factors"]} <= set(record[0])  # each factor names its input column
    r = env.client.post("/v1/models/fraud/explain", json=record)  # the champion is ONNX-only
    assert r.status_code == 400 and "no native model" in r.json()["error"]
    env.registry.set_alias("fraud", "champion", 2)
    time.sleep(0.3)  # refresh_s = 0.2: the moved alias is seen
    body = env.client.post("/v1/models/fraud/explain", json=record).json()
    pipeline = demo_pipeline(demo_frame(400), demo_target(demo_frame(400)))
    total = body["base_value"] + sum(f["contribution"] for f in body["factors"])
    assert body["model_version"] == "2"
    assert total == pytest.approx(float(pipeline.decision_function(ROWS[:1])[0]), abs=1e-6)
    assert env.client.get("/v2/models/fraud").json()["platform"] == "sklearn"
    env.registry.set_alias("fraud", "champion", 1)


def test_not_ready_until_models_load(tmp_path: Path) -> None:
    registry = Registry.open(f"sqlite:///{tmp_path}/m.db", str(tmp_path / "a"))
    app = create_app(ServeSettings(models=["missing"], log_predictions=False), registry=registry)
    server = ServerThread(app).start()
    try:
        time.sleep(0.3)
        r = httpx.get(f"{server.url}/v2/health/ready")
        assert r.status_code == 503 and "model 'missing' does not exist" in r.json()["error"]
        assert httpx.get(f"{server.url}/v2/health/live").json() == {"live": True}
    finally:
        server.stop()


def test_mlops_serve_command_end_to_end(tmp_path: Path) -> None:
    """``mlops serve`` in its own process: keys, a preloaded model, the log flushed at shutdown."""
    import os
    import subprocess
    import sys

    from serving.server import free_port

    home = tmp_path / "home"
    registry = Registry.open(f"sqlite:///{home}/mlops.db", str(home / "artifacts"))
    register_demo(registry, "fraud", "sklearn")
    port = free_port()
    env = {**os.environ, "MLOPS_HOME": str(home), "MLOPS_SERVE_LOG_FLUSH_S": "60"}
    command = [sys.executable, "-m", "mlops.cli", "serve", "--port", str(port), "--api-key", KEY,
               "--model", "fraud"]  # fmt: skip
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            try:
                if httpx.get(f"{url}/v2/health/ready").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "mlops serve did not become ready"
            time.sleep(0.2)
        r = httpx.post(f"{url}/v1/models/fraud/predict", json=ROWS[:2].to_dict("records"),
                       headers={"Authorization": f"Bearer {KEY}", "X-Request-Id": "cli-1"})  # fmt: skip
        assert r.status_code == 200 and len(r.json()["predictions"]) == 2
        assert httpx.post(f"{url}/v1/models/fraud/predict", json=[]).status_code == 401
    finally:
        proc.terminate()
        proc.wait(30)
    rows = PredictionLog(home / "predictions").read()  # written at shutdown, not by the 60 s timer
    assert rows["request_id"].tolist() == ["cli-1:0", "cli-1:1"]


def test_real_traffic_router_ab_and_shadow(tmp_path: Path) -> None:
    """With the platform's own router: sticky A/B variants and a 100 % shadow, all logged."""
    from storage.endpoints.store import EndpointStore, VariantSpec

    home = tmp_path / "home"
    registry = Registry.open(f"sqlite:///{home}/mlops.db", str(home / "artifacts"))
    register_demo(registry, "fraud", "onnx")
    register_demo(registry, "fraud", "sklearn")
    store = EndpointStore(registry.db)
    store.create(
        "checkout", [VariantSpec("a", "fraud", "1", 50), VariantSpec("b", "fraud", "2", 50)], policy="ab"
    )
    store.set_shadow("checkout", [VariantSpec("s", "fraud", "2")], 100)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLOPS_HOME", str(home))
        app = create_app(ServeSettings(log_flush_s=0.1), registry=registry)
    server = ServerThread(app).start()
    try:
        client = httpx.Client(base_url=server.url)
        seen: dict[str, str] = {}
        for i in range(40):
            key = f"user-{i % 10}"
            r = client.post(
                "/v2/models/checkout/infer", json=oip(ROWS[:1], f"ck-{i}"), headers={"X-Request-Key": key}
            )
            assert r.status_code == 200, r.text
            params = r.json()["parameters"]
            assert params["endpoint"] == "checkout"
            assert seen.setdefault(key, params["variant"]) == params["variant"]  # sticky per key
            assert r.json()["model_version"] == {"a": "1", "b": "2"}[params["variant"]]
        assert set(seen.values()) == {"a", "b"}
        time.sleep(0.5)
        app.state.serving.writer.flush()
    finally:
        server.stop()
    rows = PredictionLog(home / "predictions").read()
    live = rows[~rows["variant"].str.startswith("shadow:")]
    assert len(live) == 40 and set(live["endpoint"]) == {"checkout"}
    shadows = rows[rows["variant"] == "shadow:fraud:2"]
    assert len(shadows) == 40 and set(shadows["version"]) == {2}
