"""Runtimes: each file layout loads the right runtime, and its predictions match the native model."""

from __future__ import annotations

import io
import json
import pickle

import numpy as np
import pytest
import skops.io as sio

from serving.protocol import decode_records
from serving.runtimes import load_runtime, load_skops, runtime_kind
from serving.testing import demo_files, demo_frame, demo_pipeline, demo_target
from storage.errors import ValidationError
from storage.registry.model_format import signature_for

FRAME = demo_frame(400)
TARGET = demo_target(FRAME)
SIG = signature_for(FRAME, "classification", [0, 1])
ROWS = demo_frame(50, seed=7)


def runtime_of(files: dict[str, bytes], sig: dict = SIG, **kw: object):  # type: ignore[no-untyped-def]
    return load_runtime(sig, files.__getitem__, set(files), **kw)  # type: ignore[arg-type]


def batch():  # type: ignore[no-untyped-def]
    return decode_records(ROWS.to_dict("records"), SIG)


def test_runtime_choice_follows_the_files() -> None:
    assert runtime_kind({"model.onnx", "model.skops"}) == "onnx"
    assert runtime_kind({"preprocess.skops", "model.ubj"}) == "xgboost"
    assert runtime_kind({"preprocess.skops", "model.pt", "model_config.json"}) == "pytorch"
    assert runtime_kind({"model.pkl"}) == "pickle"
    assert runtime_kind({"readme.md"}) is None


def test_onnx_matches_the_scikit_learn_pipeline() -> None:
    pipeline = demo_pipeline(FRAME, TARGET)
    onnx = runtime_of(demo_files("onnx"))
    native = runtime_of(demo_files("sklearn"))
    assert onnx.platform == "onnx" and native.platform == "sklearn"
    got, want = onnx.predict(batch()), native.predict(batch())
    expected = pipeline.predict_proba(ROWS)
    np.testing.assert_allclose(want.probabilities, expected, atol=1e-12)
    np.testing.assert_allclose(got.probabilities, expected, atol=1e-5)
    np.testing.assert_array_equal(got.labels, pipeline.predict(ROWS))
    np.testing.assert_array_equal(want.labels, pipeline.predict(ROWS))


def test_xgboost_matches_the_booster() -> None:
    import xgboost as xgb

    files = demo_files("xgboost")
    runtime = runtime_of(files)
    pre = sio.loads(
        files["preprocess.skops"], trusted=sio.get_untrusted_types(data=files["preprocess.skops"])
    )
    booster = xgb.Booster()
    booster.load_model(bytearray(files["model.ubj"]))
    p1 = booster.predict(xgb.DMatrix(np.asarray(pre.transform(ROWS), dtype=np.float32)))
    got = runtime.predict(batch())
    assert runtime.platform == "xgboost"
    np.testing.assert_allclose(got.probabilities[:, 1], p1, atol=1e-6)
    np.testing.assert_array_equal(got.labels, (p1 > 0.5).astype(int))


def test_pytorch_matches_the_network() -> None:
    from storage.registry.torch_mlp import load_tabular_mlp, predict_output

    files = demo_files("pytorch")
    runtime = runtime_of(files)
    pre = load_skops(files["preprocess.skops"], "pre")
    net = load_tabular_mlp(json.loads(files["model_config.json"]), files["model.pt"])
    expected = predict_output(net, np.asarray(pre.transform(ROWS), dtype=np.float32))
    got = runtime.predict(batch())
    assert runtime.platform == "pytorch"
    np.testing.assert_allclose(got.probabilities, expected, atol=1e-6)
    assert (got.labels == expected.argmax(axis=1)).all()
    assert (runtime.predict(decode_records(FRAME.to_dict("records"), SIG)).labels == TARGET).mean() > 0.6


def test_regression_values() -> None:
    files = demo_files("regression")
    sig = signature_for(FRAME, "regression")
    runtime = runtime_of(files, sig)
    values = runtime.predict(decode_records(ROWS.to_dict("records"), sig)).values
    assert values is not None and values.shape == (50,) and values.dtype == np.float64
    truth = ROWS["amount"].to_numpy() * 0.1 + ROWS["age"].to_numpy()
    assert np.abs(values - truth).mean() < 5


def test_untrusted_skops_types_are_refused() -> None:
    from sklearn.preprocessing import FunctionTransformer

    data = sio.dumps(FunctionTransformer(func=json.dumps))
    with pytest.raises(ValidationError, match="untrusted types: json.dumps"):
        runtime_of({"model.skops": data}, {"inputs": [{"name": "x", "type": "float"}]})
    assert load_skops(data, "t", trusted_types=["json.dumps"]).func is json.dumps


def test_pickle_only_with_trust() -> None:
    files = {"model.pkl": pickle.dumps(demo_pipeline(FRAME, TARGET))}
    with pytest.raises(ValidationError, match="explicit trust flag"):
        runtime_of(files)
    runtime = runtime_of(files, trust_pickle=True)
    assert runtime.platform == "pickle" and runtime.predict(batch()).labels.shape == (50,)


def test_no_model_file() -> None:
    with pytest.raises(ValidationError, match=r"no servable model file \(have: notes.txt\)"):
        runtime_of({"notes.txt": b"hello"})


def test_torch_state_is_loaded_without_pickle_code() -> None:
    files = demo_files("pytorch")
    buffer = io.BytesIO()
    pickle.dump({"net.0.weight": Exception("code")}, buffer)  # an arbitrary object: weights_only refuses it
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        runtime_of({**files, "model.pt": buffer.getvalue()})


def test_a_missing_string_reaches_onnx_as_empty_text() -> None:
    """ONNX string tensors hold no nulls: a nullable string input's null is fed as "" (unknown category)."""
    sig = {**SIG, "inputs": [{**f, "nullable": f["name"] == "country"} for f in SIG["inputs"]]}
    rows = ROWS.head(3).to_dict("records")
    rows[1]["country"] = None
    decoded = decode_records(rows, sig)
    got = runtime_of(demo_files("onnx"), sig).predict(decoded)
    expected = demo_pipeline(FRAME, TARGET).predict_proba(
        ROWS.head(3).assign(country=["x", "", "y"]).iloc[[1]]
    )
    np.testing.assert_allclose(got.probabilities[1], expected[0], atol=1e-5)
