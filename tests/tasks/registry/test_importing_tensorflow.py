"""TensorFlow models via tf2onnx: ONNX files it wrote (one and two outputs) and a SavedModel, served right.

TensorFlow is the optional ``tensorflow`` extra (tensorflow-cpu, tf2onnx),
which ``make test`` installs; without it these tests skip with the reason. The
models are built and converted in a child process, so TensorFlow never loads
into the test process (as it never loads into the importing one).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from serving.app import create_app
from serving.config import ServeSettings
from serving.server import running_server
from storage.registry.core import Registry
from tasks.registry.converters import tensorflow_missing
from tasks.registry.importing import import_model

Built = tuple[Path, pd.DataFrame, np.ndarray]
Served = tuple[Registry, httpx.Client]
pytestmark = pytest.mark.skipif(tensorflow_missing() is not None, reason=str(tensorflow_missing()))

BUILD = r"""
import os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import numpy as np, tensorflow as tf, tf2onnx
out = sys.argv[1]
rng = np.random.default_rng(0)
spec = tf.TensorSpec([None, 4], tf.float32, name="features")

class Net(tf.Module):
    def __init__(self):
        self.w1 = tf.Variable(rng.normal(size=(4, 8)).astype("float32"))
        self.w2 = tf.Variable(rng.normal(size=(8, 3)).astype("float32"))

    @tf.function(input_signature=[spec])
    def probabilities(self, x):
        return tf.nn.softmax(tf.matmul(tf.nn.relu(tf.matmul(x, self.w1)), self.w2))

    @tf.function(input_signature=[spec])
    def both(self, x):
        p = self.probabilities(x)
        return {"label": tf.argmax(p, axis=1), "probabilities": p}

net = Net()
serving = {"serving_default": net.probabilities.get_concrete_function()}
tf.saved_model.save(net, f"{out}/saved", signatures=serving)
for name, fn in (("one", net.probabilities), ("two", net.both)):
    proto, _ = tf2onnx.convert.from_function(fn, input_signature=[spec], opset=15)
    open(f"{out}/{name}.onnx", "wb").write(proto.SerializeToString())
x = np.load(f"{out}/x.npy")
np.save(f"{out}/ref.npy", net.probabilities(x).numpy())
"""


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    folder = tmp_path_factory.mktemp("tf")
    x = np.random.default_rng(3).normal(size=(30, 4)).astype(np.float32)
    np.save(folder / "x.npy", x)
    command = [sys.executable, "-c", BUILD, str(folder)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    frame = pd.DataFrame(x.astype(np.float64), columns=["a", "b", "c", "d"])
    return folder, frame, np.load(folder / "ref.npy")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    registry = Registry.open(f"sqlite:///{tmp_path}/m.db", str(tmp_path / "a"), actor="tester")
    app = create_app(ServeSettings(refresh_s=0.1), registry=registry)
    with running_server(app) as url, httpx.Client(base_url=url, timeout=60) as client:
        yield registry, client


def _predict(client: httpx.Client, model: str, frame: pd.DataFrame) -> dict[str, list[float]]:
    response = client.post(f"/v1/models/{model}/predict", json={"instances": frame.to_dict("records")})
    assert response.status_code == 200, response.text
    return dict(response.json())


@pytest.mark.slow
def test_tf2onnx_files_with_one_and_two_outputs(built: Built, served: Served) -> None:
    folder, frame, ref = built
    registry, client = served
    for name in ("one", "two"):
        result = import_model(registry, f"tf-{name}", folder / f"{name}.onnx", sample=frame)
        assert result.version.signature["task"] == "classification"
        body = _predict(client, f"tf-{name}", frame)
        assert body["predictions"] == ref.argmax(axis=1).tolist()
        np.testing.assert_allclose(body["probabilities"], ref, atol=1e-5)


@pytest.mark.slow
def test_saved_model_is_converted_checked_and_served(built: Built, served: Served) -> None:
    folder, frame, ref = built
    registry, client = served
    result = import_model(registry, "tf-saved", folder / "saved", sample=frame)
    assert result.framework == "tensorflow" and result.parity is not None and result.parity < 1e-5
    body = _predict(client, "tf-saved", frame)
    assert body["predictions"] == ref.argmax(axis=1).tolist()
    np.testing.assert_allclose(body["probabilities"], ref, atol=1e-5)
