"""Features filled at serving time from the online store (SQLite and Redis): fill, policies, log."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import numpy as np
import orjson
import pandas as pd
import pytest

from serving.app import create_app
from serving.config import ServeSettings
from serving.features import declare_features
from serving.models import ModelCache
from serving.protocol import Batch
from serving.server import ServerThread
from serving.testing import register_demo
from storage.errors import ValidationError
from storage.features.store import FeatureStore
from storage.registry.core import Registry

NOW = datetime.now(UTC)
FEATURES = ["card_stats:age", "card_stats:country"]


@pytest.fixture
def world(online_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    monkeypatch.setenv("MLOPS_ONLINE_STORE_URL", online_url)
    registry = Registry.from_settings()
    register_demo(registry, "fraud", "onnx")  # version 1: reject
    register_demo(registry, "fraud", "onnx")  # version 2: default
    register_demo(registry, "fraud", "onnx")  # version 3: flag
    store = FeatureStore.from_settings()
    store.definitions.create_entity("card", join_keys=["card_id"])
    store.definitions.create_group("card_stats", entity="card", event_time_column="ts", ttl_seconds=3600)
    store.definitions.register_feature("card_stats", "age", "int")
    store.definitions.register_feature("card_stats", "country", "string")
    store.ingest(
        "card_stats",
        pd.DataFrame(
            {
                "card_id": [1, 2, 3],
                "ts": [NOW - timedelta(minutes=5), NOW - timedelta(days=2), NOW - timedelta(minutes=1)],
                "age": [31, 54, 22],
                "country": ["NL", "US", "DE"],
            }
        ),
    )
    store.materialize("card_stats", end=NOW + timedelta(seconds=1))
    declare_features(registry, "fraud", 1, FEATURES)
    declare_features(registry, "fraud", 2, FEATURES, policy="default", defaults={"age": 40, "country": "FR"})
    declare_features(registry, "fraud", 3, FEATURES, policy="flag", defaults={"age": 40, "country": "FR"})
    app = create_app(ServeSettings(log_flush_s=0.05), registry=registry)
    server = ServerThread(app).start()
    try:
        yield {"url": server.url, "registry": registry, "app": app}
    finally:
        server.stop()
        store.close()


def expected(registry: Registry, rows: list[dict[str, Any]]) -> np.ndarray:
    loaded = ModelCache(registry).get("fraud", "1")
    frame = pd.DataFrame(rows)
    columns = {
        "amount": frame["amount"].to_numpy(dtype=np.float64),
        "age": frame["age"].to_numpy(dtype=np.int64),
        "country": frame["country"].to_numpy(dtype=object),
    }
    return np.asarray(loaded.runtime.predict(Batch(columns, len(rows))).probabilities)


def predict(url: str, version: int, instances: list[dict[str, Any]]) -> httpx.Response:
    return httpx.post(f"{url}/v2/models/fraud/versions/{version}/infer", json=records_to_oip(instances))


def records_to_oip(instances: list[dict[str, Any]]) -> dict[str, Any]:
    names = list(dict.fromkeys(k for row in instances for k in row))
    types = {"card_id": "INT64", "amount": "FP64", "age": "INT64", "country": "BYTES"}
    return {
        "inputs": [
            {
                "name": n,
                "shape": [len(instances)],
                "datatype": types[n],
                "data": [r.get(n) for r in instances],
            }
            for n in names
        ]
    }


def test_records_are_filled_from_the_online_store_and_logged(world: dict[str, Any]) -> None:
    url, registry = world["url"], world["registry"]
    rows = [{"card_id": 1, "amount": 120.0}, {"card_id": 3, "amount": 15.0, "age": 70}]  # age given: it wins
    r = httpx.post(
        f"{url}/v1/models/fraud/predict", json={"instances": rows}, headers={"X-Request-Id": "f-1"}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    filled = [{"amount": 120.0, "age": 31, "country": "NL"}, {"amount": 15.0, "age": 70, "country": "DE"}]
    np.testing.assert_allclose(body["probabilities"], expected(registry, filled), atol=1e-12)
    assert body["features"] == {"refs": ["card_stats:age@1", "card_stats:country@1"], "flagged": []}
    writer = world["app"].state.serving.writer
    assert writer.flush()
    log = writer.log.read(model="fraud").sort_values("request_id")
    assert log["request_id"].tolist() == ["f-1:0", "f-1:1"]
    assert log["entity_key"].tolist() == ["card_id=1", "card_id=3"]
    assert [orjson.loads(f) for f in log["features"]] == filled


def test_oip_tensors_without_the_features(world: dict[str, Any]) -> None:
    r = predict(world["url"], 1, [{"card_id": 1, "amount": 120.0}])
    assert r.status_code == 200, r.text
    body = r.json()
    probs = next(o for o in body["outputs"] if o["name"] == "probabilities")["data"]
    want = expected(world["registry"], [{"amount": 120.0, "age": 31, "country": "NL"}])
    np.testing.assert_allclose(probs, want.reshape(-1), atol=1e-12)
    assert body["parameters"]["features"]["refs"] == ["card_stats:age@1", "card_stats:country@1"]


def test_reject_policy_names_the_entity_and_feature(world: dict[str, Any]) -> None:
    url = world["url"]
    missing = predict(url, 1, [{"card_id": 999, "amount": 1.0}])
    assert missing.status_code == 422
    assert missing.json()["error"] == (
        "entity card_id=999: feature card_stats:age@1 is not in the online store (policy: reject)"
    )
    stale = predict(url, 1, [{"card_id": 2, "amount": 1.0}])
    assert stale.status_code == 422 and "card_id=2" in stale.json()["error"]
    assert "older than its group's TTL" in stale.json()["error"]
    no_key = predict(url, 1, [{"amount": 1.0}])
    assert no_key.status_code == 400 and "missing input 'card_id'" in no_key.json()["error"]
    bad_key = httpx.post(f"{url}/v2/models/fraud/versions/1/infer", json={"inputs": [
        {"name": "card_id", "shape": [1], "datatype": "FP64", "data": [1.5]}]})  # fmt: skip
    assert bad_key.status_code == 400


def test_default_and_flag_policies(world: dict[str, Any]) -> None:
    url, registry = world["url"], world["registry"]
    r = predict(url, 2, [{"card_id": 999, "amount": 50.0}, {"card_id": 2, "amount": 50.0}])
    assert r.status_code == 200, r.text
    probs = next(o for o in r.json()["outputs"] if o["name"] == "probabilities")["data"]
    defaults = {"amount": 50.0, "age": 40, "country": "FR"}
    np.testing.assert_allclose(probs, expected(registry, [defaults, defaults]).reshape(-1), atol=1e-12)
    assert r.json()["parameters"]["features"]["flagged"] == []
    flagged = predict(url, 3, [{"card_id": 2, "amount": 50.0}, {"card_id": 999, "amount": 50.0}])
    assert flagged.status_code == 200, flagged.text
    probs = next(o for o in flagged.json()["outputs"] if o["name"] == "probabilities")["data"]
    served = [{"amount": 50.0, "age": 54, "country": "US"}, defaults]  # stale values served as they are
    np.testing.assert_allclose(probs, expected(registry, served).reshape(-1), atol=1e-12)
    assert flagged.json()["parameters"]["features"]["flagged"] == [
        {"row": 0, "feature": "age", "status": "stale"},
        {"row": 1, "feature": "age", "status": "missing"},
        {"row": 0, "feature": "country", "status": "stale"},
        {"row": 1, "feature": "country", "status": "missing"},
    ]


def test_grpc_fills_features_too(world: dict[str, Any]) -> None:
    grpcclient = pytest.importorskip("tritonclient.grpc")
    settings = ServeSettings(grpc_port=0, log_predictions=False)
    app = create_app(settings, registry=world["registry"])
    server = ServerThread(app).start()
    try:
        client = grpcclient.InferenceServerClient(f"127.0.0.1:{app.state.serving.grpc_port}")
        card = grpcclient.InferInput("card_id", [1], "INT64")
        card.set_data_from_numpy(np.array([1], dtype=np.int64))
        amount = grpcclient.InferInput("amount", [1], "FP64")
        amount.set_data_from_numpy(np.array([120.0]))
        result = client.infer("fraud", [card, amount], model_version="1")
        want = expected(world["registry"], [{"amount": 120.0, "age": 31, "country": "NL"}])
        np.testing.assert_allclose(result.as_numpy("probabilities"), want, atol=1e-12)
        summary = orjson.loads(result.get_response().parameters["features"].string_param)
        assert summary["refs"] == ["card_stats:age@1", "card_stats:country@1"]
        client.close()
    finally:
        server.stop()


def test_declarations_are_checked(world: dict[str, Any]) -> None:
    registry = world["registry"]
    with pytest.raises(ValidationError, match="no input 'nope'"):
        declare_features(registry, "fraud", 1, ["card_stats:nope"])
    with pytest.raises(ValidationError, match="needs a default for feature 'country'"):
        declare_features(registry, "fraud", 1, FEATURES, policy="default", defaults={"age": 1})
    with pytest.raises(ValidationError, match="policy 'later' is not one of"):
        declare_features(registry, "fraud", 1, FEATURES, policy="later")
    registry.set_version_extra("fraud", 1, "serving_features", {"features": ["nope:x"]})
    app = create_app(ServeSettings(log_predictions=False, refresh_s=0), registry=registry)
    server = ServerThread(app).start()
    try:
        r = predict(server.url, 1, [{"card_id": 1, "amount": 1.0}])
        assert r.status_code == 503 and "declares serving features badly" in r.json()["error"]
    finally:
        server.stop()


def test_the_versions_value_limits_hold_for_filled_requests(world: dict[str, Any]) -> None:
    from serving.features import FeatureFiller
    from serving.protocol import InputSpec

    spec = InputSpec(
        ("amount", "age", "country"), {"amount": "float", "age": "int", "country": "string"},
        frozenset(), max_string_bytes=16, max_elements=100,
    )  # fmt: skip
    filler = FeatureFiller(world["registry"], FeatureStore.from_settings)
    plan = filler.plan("fraud", 1, spec)
    assert plan is not None and plan.request_spec.names == ("card_id", "amount", "age", "country")
    assert (plan.request_spec.max_string_bytes, plan.request_spec.max_elements) == (16, 100)
    filler.close()
