"""Models from other frameworks: imported, served through the real app, and compared with their framework.

Each model is built here with its own framework (torch.onnx, skl2onnx,
onnxmltools, XGBoost, skops, TorchScript, a PyTorch state dict, Keras), with
one and with two outputs, imported with :func:`tasks.registry.importing.import_model`,
served over HTTP by the model server, and its answers compared with the
framework's own. Ambiguous graphs are refused at import and at load.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import torch

from serving.app import create_app
from serving.config import ServeSettings
from serving.server import ServerThread
from storage.errors import ValidationError
from storage.monitoring.prediction_log import PredictionLog
from storage.registry.core import Registry
from storage.registry.onnx_outputs import AmbiguousOutputs
from tasks.registry.importing import import_model

KEY = "k-import"
RNG = np.random.default_rng(7)
COLUMNS = ["a", "b", "c", "d"]
X = RNG.normal(size=(120, 4)).astype(np.float32)
Y3 = (X[:, 0] > 0.3).astype(int) + (X[:, 1] > 0.5).astype(int)  # three classes
Y2 = (X[:, 0] + X[:, 2] > 0).astype(int)
SAMPLE = pd.DataFrame(X[:40].astype(np.float64), columns=COLUMNS)


class Env:
    def __init__(self, registry: Registry, server: ServerThread, home: Path) -> None:
        self.registry, self.server, self.home = registry, server, home
        self.client = httpx.Client(base_url=server.url, headers={"X-API-Key": KEY}, timeout=60)

    def predict(self, model: str, frame: pd.DataFrame) -> dict[str, Any]:
        body = {"instances": frame.to_dict("records")}
        response = self.client.post(f"/v1/models/{model}/predict", json=body)
        assert response.status_code == 200, response.text
        return dict(response.json())

    def infer(self, model: str, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        body = {
            "inputs": [
                {"name": c, "shape": [len(frame)], "datatype": "FP64", "data": frame[c].tolist()}
                for c in frame.columns
            ]
        }
        response = self.client.post(f"/v2/models/{model}/infer", json=body)
        assert response.status_code == 200, response.text
        return {o["name"]: np.asarray(o["data"]).reshape(o["shape"]) for o in response.json()["outputs"]}

    def log(self, model: str) -> pd.DataFrame:
        self.server.server.config.app.state.serving.writer.flush()
        return PredictionLog(self.home / "predictions").read(model=model)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    home = tmp_path_factory.mktemp("import-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLOPS_HOME", str(home))
        registry = Registry.open(f"sqlite:///{home}/mlops.db", str(home / "artifacts"), actor="tester")
        app = create_app(ServeSettings(api_keys=[KEY], refresh_s=0.1, log_flush_s=0.1), registry=registry)
        server = ServerThread(app).start()
        try:
            yield Env(registry, server, home)
        finally:
            server.stop()


def _torch_net(outputs: int, softmax: bool) -> torch.nn.Module:
    torch.manual_seed(0)
    layers: list[torch.nn.Module] = [torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, outputs)]
    if softmax:
        layers.append(torch.nn.Softmax(dim=1))
    return torch.nn.Sequential(*layers).eval()


def _export(module: torch.nn.Module, path: Path, outputs: list[str]) -> Path:
    axes = {"x": {0: "N"}, **{o: {0: "N"} for o in outputs}}
    torch.onnx.export(
        module,
        (torch.zeros(1, 4),),
        path,
        input_names=["x"],
        output_names=outputs,
        dynamic_axes=axes,
        dynamo=False,
    )
    return path


def _own(module: torch.nn.Module, frame: pd.DataFrame) -> np.ndarray:
    with torch.no_grad():
        out = module(torch.as_tensor(frame.to_numpy(dtype=np.float32)))
    return np.asarray((out[1] if isinstance(out, tuple) else out).numpy(), dtype=np.float64)


# ---------------------------------------------------------------- torch.onnx
def test_single_softmax_output_is_served_as_label_and_probabilities(env: Env, tmp_path: Path) -> None:
    """The issue's case: one softmax output [N, C] must not come back as flattened probabilities."""
    net = _torch_net(3, softmax=True)
    path = _export(net, tmp_path / "m.onnx", ["dense_1"])
    result = import_model(env.registry, "softmax", path, sample=SAMPLE)
    assert result.runtime == "onnx" and result.parity is None
    assert result.version.signature["task"] == "classification"
    assert result.version.signature["classes"] == [0, 1, 2]
    rows = SAMPLE.iloc[:5]
    body = env.predict("softmax", rows)
    own = _own(net, rows)
    assert len(body["predictions"]) == 5
    assert body["predictions"] == own.argmax(axis=1).tolist()
    np.testing.assert_allclose(body["probabilities"], own, atol=1e-6)
    out = env.infer("softmax", rows)
    assert out["label"].shape == (5,) and out["probabilities"].shape == (5, 3)
    logged = env.log("softmax")
    assert len(logged) == 10  # two requests of five rows, every row logged: none dropped
    assert not logged["prediction"].str.contains('"label":null').any()


def test_two_outputs_label_and_probabilities(env: Env, tmp_path: Path) -> None:
    net = _torch_net(2, softmax=True)

    class Head(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            probs = self.net(x)
            return torch.argmax(probs, dim=1), probs

    path = _export(Head().eval(), tmp_path / "two.onnx", ["label", "probabilities"])
    result = import_model(env.registry, "two", path, sample=SAMPLE)
    assert result.outputs == "classification: label from 'label', probabilities from 'probabilities'"
    body = env.predict("two", SAMPLE)
    own = _own(net, SAMPLE)
    assert body["predictions"] == own.argmax(axis=1).tolist()
    np.testing.assert_allclose(body["probabilities"], own, atol=1e-6)


def test_logits_are_refused_as_probabilities_until_declared(env: Env, tmp_path: Path) -> None:
    net = _torch_net(3, softmax=False)
    path = _export(net, tmp_path / "logits.onnx", ["scores"])
    with pytest.raises(ValidationError, match="does not hold probabilities.*logits"):
        import_model(env.registry, "logits", path, sample=SAMPLE)
    sig = {"outputs": [{"name": "scores", "role": "logits"}]}
    import_model(env.registry, "logits", path, signature=sig, sample=SAMPLE)
    body = env.predict("logits", SAMPLE.iloc[:3])
    own = torch.softmax(torch.as_tensor(_own(net, SAMPLE.iloc[:3])), dim=1).numpy()
    np.testing.assert_allclose(body["probabilities"], own, atol=1e-6)


def test_an_ambiguous_graph_is_refused_at_import_and_at_load(env: Env, tmp_path: Path) -> None:
    net = _torch_net(1, softmax=False)
    path = _export(net, tmp_path / "one.onnx", ["out"])
    with pytest.raises(AmbiguousOutputs, match=r'"role": "label\|probabilities\|logits\|regression'):
        import_model(env.registry, "ambiguous", path)
    # registered around the import (as any client could): the server refuses it, with the same advice
    env.registry.create_model("ambiguous")
    env.registry.create_version(
        "ambiguous",
        framework="onnx",
        artifacts={"model.onnx": path.read_bytes()},
        signature={"inputs": [{"name": c, "type": "float"} for c in COLUMNS]},
    )
    body = {"instances": SAMPLE.iloc[:2].to_dict("records")}
    response = env.client.post("/v1/models/ambiguous/predict", json=body)
    assert response.status_code == 503
    assert "role" in response.json()["error"] and "regression" in response.json()["error"]
    # declared, it serves: the task settles it
    import_model(env.registry, "ambiguous", path, task="regression", sample=SAMPLE)  # the newest version
    time.sleep(0.3)  # the server resolves "latest" again after refresh_s
    body = env.predict("ambiguous", SAMPLE.iloc[:4])
    np.testing.assert_allclose(body["predictions"], _own(net, SAMPLE.iloc[:4])[:, 0], atol=1e-6)


# ---------------------------------------------------------------- skl2onnx, onnxmltools
def test_skl2onnx_classifier_and_regressor(env: Env, tmp_path: Path) -> None:
    from skl2onnx import to_onnx
    from sklearn.linear_model import LinearRegression, LogisticRegression

    clf = LogisticRegression().fit(X, np.array(["no", "yes"])[Y2])
    onx = to_onnx(clf, X[:1], options={id(clf): {"zipmap": False}}, target_opset=15)
    (tmp_path / "clf.onnx").write_bytes(onx.SerializeToString())
    result = import_model(env.registry, "skl-clf", tmp_path / "clf.onnx", sample=SAMPLE)
    assert result.version.signature["classes"] == ["no", "yes"]
    cols = result.version.signature["inputs"]
    assert [c["name"] for c in cols] == COLUMNS  # the sample names the matrix's columns
    body = env.predict("skl-clf", SAMPLE)
    assert body["predictions"] == clf.predict(X[:40]).tolist()
    np.testing.assert_allclose(body["probabilities"], clf.predict_proba(X[:40]), atol=1e-5)

    reg = LinearRegression().fit(X, X @ np.array([1.0, 2.0, -1.0, 0.5]))
    (tmp_path / "reg.onnx").write_bytes(to_onnx(reg, X[:1], target_opset=15).SerializeToString())
    result = import_model(env.registry, "skl-reg", tmp_path / "reg.onnx", sample=SAMPLE)
    assert result.version.signature["task"] == "regression"
    np.testing.assert_allclose(env.predict("skl-reg", SAMPLE)["predictions"], reg.predict(X[:40]), atol=1e-4)


def test_onnxmltools_xgboost_and_native_xgboost(env: Env, tmp_path: Path) -> None:
    import onnxmltools
    import xgboost as xgb
    from onnxmltools.convert.common.data_types import FloatTensorType

    model = xgb.XGBClassifier(n_estimators=20, max_depth=3, n_jobs=1).fit(X, Y3)
    types = [("input", FloatTensorType([None, 4]))]
    onx = onnxmltools.convert_xgboost(model, initial_types=types, target_opset=15)
    (tmp_path / "xgb.onnx").write_bytes(onx.SerializeToString())
    import_model(env.registry, "xgb-onnx", tmp_path / "xgb.onnx", sample=SAMPLE)
    body = env.predict("xgb-onnx", SAMPLE)
    assert body["predictions"] == model.predict(X[:40]).tolist()
    np.testing.assert_allclose(body["probabilities"], model.predict_proba(X[:40]), atol=1e-5)

    model.save_model(tmp_path / "xgb.json")
    result = import_model(env.registry, "xgb-native", tmp_path / "xgb.json", sample=SAMPLE)
    assert result.runtime == "xgboost" and result.version.signature["classes"] == [0, 1, 2]
    body = env.predict("xgb-native", SAMPLE)
    np.testing.assert_allclose(body["probabilities"], model.predict_proba(X[:40]), atol=1e-6)


def test_skops_pipeline(env: Env, tmp_path: Path) -> None:
    import skops.io as sio
    from sklearn.ensemble import RandomForestClassifier

    frame = pd.DataFrame(X, columns=COLUMNS)
    clf = RandomForestClassifier(n_estimators=10, random_state=0).fit(frame, Y2)
    sio.dump(clf, tmp_path / "rf.skops")
    result = import_model(env.registry, "skops", tmp_path / "rf.skops")
    assert result.runtime == "sklearn"
    assert [c["name"] for c in result.version.signature["inputs"]] == COLUMNS
    body = env.predict("skops", SAMPLE)
    np.testing.assert_allclose(body["probabilities"], clf.predict_proba(SAMPLE), atol=1e-9)


# ---------------------------------------------------------------- PyTorch files, Keras
def test_torchscript_and_state_dict(env: Env, tmp_path: Path) -> None:
    net = _torch_net(2, softmax=True)
    torch.jit.script(net).save(str(tmp_path / "net.pt"))
    result = import_model(env.registry, "script", tmp_path / "net.pt", sample=SAMPLE)
    assert result.parity is not None and result.parity < 1e-5
    np.testing.assert_allclose(env.predict("script", SAMPLE)["probabilities"], _own(net, SAMPLE), atol=1e-6)

    from storage.registry.torch_mlp import TabularMLP

    torch.manual_seed(1)
    mlp = TabularMLP(n_features=4, n_outputs=3, hidden_dims=[8]).eval()
    buffer = io.BytesIO()
    torch.save(mlp.state_dict(), buffer)
    (tmp_path / "state.pt").write_bytes(buffer.getvalue())
    args = {"n_features": 4, "n_outputs": 3, "hidden_dims": [8]}
    with pytest.raises(ValidationError, match="TorchScript.*--module"):
        import_model(env.registry, "state", tmp_path / "state.pt", sample=SAMPLE)
    result = import_model(
        env.registry,
        "state",
        tmp_path / "state.pt",
        sample=SAMPLE,
        module_args=args,
        module="storage.registry.torch_mlp:TabularMLP",
        signature={"outputs": [{"name": "output", "role": "logits"}]},
    )
    own = torch.softmax(torch.as_tensor(_own(mlp, SAMPLE)), dim=1).numpy()
    np.testing.assert_allclose(env.predict("state", SAMPLE)["probabilities"], own, atol=1e-6)


def test_keras_file(env: Env, tmp_path: Path) -> None:
    from storage.registry.keras_model import keras_module, keras_predict

    keras = keras_module()
    inputs = keras.Input(shape=(4,))
    hidden = keras.layers.Dense(8, activation="relu")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(hidden))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(X, Y3, epochs=2, verbose=0)
    model.save(tmp_path / "m.keras")
    result = import_model(env.registry, "keras", tmp_path / "m.keras", sample=SAMPLE)
    assert result.framework == "keras" and result.parity is not None and result.parity < 1e-5
    assert {a.name for a in result.version.artifacts} == {"model.onnx", "model.keras"}
    own = keras_predict(model, X[:40])
    body = env.predict("keras", SAMPLE)
    assert body["predictions"] == own.argmax(axis=1).tolist()
    np.testing.assert_allclose(body["probabilities"], own, atol=1e-5)


def test_a_sample_that_does_not_fit_is_refused(env: Env, tmp_path: Path) -> None:
    path = _export(_torch_net(2, softmax=True), tmp_path / "m.onnx", ["p"])
    with pytest.raises(ValidationError, match="no column"):
        import_model(
            env.registry,
            "bad",
            path,
            signature={"inputs": [{"name": n, "type": "float"} for n in "wxyz"]},
            sample=SAMPLE,
        )
    with pytest.raises(ValidationError, match="cannot tell the framework"):
        import_model(env.registry, "bad", tmp_path / "model.bin")
