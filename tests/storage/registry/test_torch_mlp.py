"""The PyTorch network rebuilt from model_config.json + model.pt, as serving does."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import torch

from storage.registry.torch_mlp import TabularMLP, load_tabular_mlp, predict_output, state_bytes


def test_rebuilt_network_predicts_identically() -> None:
    torch.manual_seed(0)
    net = TabularMLP(n_features=5, n_outputs=3, hidden_dims=[8, 4], dropout=0.2, task="classification")
    config = json.loads(
        json.dumps(
            {"n_features": 5, "n_outputs": 3, "hidden_dims": [8, 4], "dropout": 0.2, "task": "classification"}
        )
    )
    again = load_tabular_mlp(config, state_bytes(net))
    X = np.random.default_rng(0).normal(size=(20, 5))
    a, b = predict_output(net, X), predict_output(again, X)
    assert a.shape == (20, 3) and np.array_equal(a, b)
    assert np.allclose(a.sum(axis=1), 1.0)
    # dropout is off at inference: two calls agree
    assert np.array_equal(predict_output(again, X), b)


def test_regression_output_is_one_value_per_row() -> None:
    net = TabularMLP(n_features=2, n_outputs=1, hidden_dims=[], task="regression")
    assert predict_output(net, np.zeros((3, 2))).shape == (3,)


def test_wrong_state_is_refused() -> None:
    net = TabularMLP(n_features=2, n_outputs=1, hidden_dims=[4], task="regression")
    try:
        load_tabular_mlp(
            {"n_features": 3, "n_outputs": 1, "hidden_dims": [4], "task": "regression"}, state_bytes(net)
        )
    except RuntimeError as exc:
        assert "size mismatch" in str(exc)
    else:
        raise AssertionError("a state dict of another shape loaded")


def test_bad_task_is_refused() -> None:
    try:
        TabularMLP(2, 1, task="ranking")
    except ValueError as exc:
        assert "ranking" in str(exc)
    else:
        raise AssertionError("unknown task accepted")


def test_storage_module_does_not_import_prefect() -> None:
    code = "import sys, storage.registry.torch_mlp; print('prefect' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
