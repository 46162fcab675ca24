"""Stage 3: the ColumnTransformer and the interaction/ratio transformer."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from sklearn.base import clone

from blocks.pipeline import FeatureEngineering
from storage.errors import ValidationError
from tasks.scoring import TRUSTED_PREFIXES
from tasks.training.engineering import (
    InteractionFeatures,
    build_preprocessor,
    feature_spec,
    needs_scaling,
    prepare_inputs,
)

FRAME = pd.DataFrame(
    {
        "a": [1.0, 2.0, np.nan, 4.0],
        "b": [10, 20, 30, 40],
        "c": ["x", None, "y", "x"],
        "flag": [True, False, True, True],
    }
)


def test_spec_and_prepared_inputs() -> None:
    spec = feature_spec(FRAME, categorical=["b"], drop=["flag"])
    assert spec.numeric == ["a"] and spec.categorical == ["b", "c"]
    prepared = prepare_inputs(FRAME, spec)
    assert prepared["c"].tolist() == ["x", "", "y", "x"] and prepared["b"].tolist() == [
        "10",
        "20",
        "30",
        "40",
    ]
    with pytest.raises(ValidationError, match="'nope'"):
        feature_spec(FRAME, drop=["nope"])


def test_preprocessor_imputes_scales_and_encodes() -> None:
    spec = feature_spec(FRAME.drop(columns=["flag"]))
    X = prepare_inputs(FRAME, spec)
    out = build_preprocessor(spec, FeatureEngineering(scale=True)).fit_transform(X)
    assert out.shape == (4, 2 + 3)  # a, b scaled; c one-hot: "", x, y
    assert np.allclose(out[:, :2].mean(axis=0), 0) and not np.isnan(out).any()
    raw = build_preprocessor(spec, FeatureEngineering(), scale_default=False).fit_transform(X)
    assert raw[2, 0] == 2.0  # median of 1, 2, 4 imputed, not scaled
    assert needs_scaling("TabularMLP") and not needs_scaling("XGBClassifier")


def test_interaction_features_match_a_direct_computation() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 3)) * [1.0, 5.0, 2.0]
    t = InteractionFeatures(interactions=True, ratios=True, max_generated=4).fit(X)
    assert t.pairs_ == [(1, 2), (0, 1)]  # most variable columns first
    out = t.transform(X)
    expected = np.column_stack(
        [
            X,
            X[:, 1] * X[:, 2],
            X[:, 1] / (np.abs(X[:, 2]) + 1e-6),
            X[:, 0] * X[:, 1],
            X[:, 0] / (np.abs(X[:, 1]) + 1e-6),
        ]
    )
    assert np.allclose(out, expected)
    assert list(t.get_feature_names_out(["p", "q", "r"]))[3:] == ["q*r", "q/r", "p*q", "p/q"]
    # the scikit-learn contract: parameters in __init__, clone-able, learned state ends in "_"
    assert clone(t).get_params() == t.get_params() and not hasattr(clone(t), "pairs_")
    with pytest.raises(ValidationError, match="expected 3 columns"):
        t.transform(X[:, :2])


def test_pipeline_with_interactions_round_trips_through_skops_trusted_types() -> None:
    spec = feature_spec(FRAME.drop(columns=["flag"]))
    X = prepare_inputs(FRAME, spec)
    pre = build_preprocessor(spec, FeatureEngineering(interactions=True, ratios=True)).fit(X)
    data = sio.dumps(pre)
    untrusted = sio.get_untrusted_types(data=data)
    assert all(t.startswith(TRUSTED_PREFIXES) for t in untrusted)
    assert "tasks.training.engineering.InteractionFeatures" in untrusted
    again = sio.loads(data, trusted=untrusted)
    assert np.allclose(again.transform(X), pre.transform(X))
