"""Reference profiles: exact chunked merges, the sample's error bound, JSON round trips, bad input."""

from __future__ import annotations

import itertools
import json
from functools import reduce
from typing import Any

import numpy as np
import pandas as pd
import pytest

from storage.errors import ValidationError
from tasks.monitoring.profiles import (
    CategoricalProfile,
    NumericProfile,
    ReferenceProfile,
    build_profile,
    build_profile_task,
    merge_profiles,
    merge_profiles_task,
    profile_from_dict,
    sample_error_bound,
)


def _frame(rows: int, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=rows)
    x[rng.random(rows) < 0.05] = np.nan
    ints = rng.integers(0, 50, rows)  # many ties
    colour = rng.choice(
        np.array(["red", "green", "blue", None], dtype=object), rows, p=[0.5, 0.3, 0.15, 0.05]
    )
    return pd.DataFrame(
        {
            "x": x,
            "ints": ints,
            "colour": colour,
            "code": rng.integers(0, 4, rows),
            "label": rng.integers(0, 2, rows),
            "score": rng.random(rows),
        }
    )


def _profile(frame: pd.DataFrame, **kw: Any) -> ReferenceProfile:
    return build_profile(
        frame, categorical=["code", "label"], target="label", prediction="score", sample_size=3000, **kw
    )


def _assert_same(a: ReferenceProfile, b: ReferenceProfile) -> None:
    assert list(a.columns) == list(b.columns)
    assert (a.rows, a.sample_size, a.seed, a.target, a.prediction) == (
        b.rows,
        b.sample_size,
        b.seed,
        b.target,
        b.prediction,
    )
    for name, pa in a.columns.items():
        pb = b.columns[name]
        if isinstance(pa, CategoricalProfile):
            assert pa == pb, name
            continue
        assert isinstance(pb, NumericProfile)
        # exact: counts, histograms, extremes and the very same sample
        assert (pa.count, pa.nulls, pa.min, pa.max, pa.below, pa.above) == (
            pb.count,
            pb.nulls,
            pb.min,
            pb.max,
            pb.below,
            pb.above,
        ), name
        np.testing.assert_array_equal(pa.counts, pb.counts)
        np.testing.assert_array_equal(pa.edges, pb.edges)
        np.testing.assert_array_equal(pa.sample, pb.sample)
        np.testing.assert_array_equal(pa.sample_keys, pb.sample_keys)
        # floating-point sums: equal up to rounding
        assert pa.mean == pytest.approx(pb.mean, rel=1e-12, abs=1e-14)
        assert pa.m2 == pytest.approx(pb.m2, rel=1e-12)


def test_chunks_merged_equal_profile_at_once() -> None:
    frame = _frame(40_000)
    whole = _profile(frame)
    edges = whole.edges()
    cuts = [0, 1, 7_000, 7_001, 22_000, 40_000]  # uneven chunks, one of a single row
    parts = [_profile(frame.iloc[a:b], edges=edges, offset=a) for a, b in itertools.pairwise(cuts)]
    _assert_same(reduce(merge_profiles, parts), whole)
    # the merge order does not matter (a tree, as Dask would reduce)
    tree = merge_profiles(
        merge_profiles(parts[4], parts[0]), merge_profiles(parts[2], merge_profiles(parts[1], parts[3]))
    )
    _assert_same(tree, whole)
    assert whole.columns["x"].sample.size == 3000  # sampling really happened


def test_at_most_sample_size_values_are_all_kept_and_sorted() -> None:
    frame = _frame(2_000)
    p = build_profile(frame, sample_size=5_000)
    x = p.columns["x"]
    assert isinstance(x, NumericProfile)
    expected = np.sort(frame["x"].dropna().to_numpy())
    np.testing.assert_array_equal(x.sample, expected)
    assert x.count == expected.size and x.nulls == frame["x"].isna().sum()
    assert x.mean == pytest.approx(expected.mean()) and x.std == pytest.approx(expected.std(ddof=1))
    assert (x.min, x.max) == (expected[0], expected[-1])
    assert isinstance(p.columns["colour"], CategoricalProfile)
    assert p.columns["colour"].categories == frame["colour"].dropna().value_counts().sort_index().to_dict()
    assert p.columns["ints"].kind == "numeric"


def test_sample_ecdf_stays_within_the_stated_bound() -> None:
    rng = np.random.default_rng(11)
    values = np.concatenate([rng.lognormal(size=150_000), rng.normal(size=50_000)])
    k = 8_000
    x = build_profile(pd.DataFrame({"v": values}), sample_size=k).columns["v"]
    assert isinstance(x, NumericProfile)
    full = np.sort(values)
    grid = np.quantile(full, np.linspace(0, 1, 2001))
    ecdf_full = np.searchsorted(full, grid, side="right") / full.size
    ecdf_sample = np.searchsorted(x.sample, grid, side="right") / k
    error = np.abs(ecdf_full - ecdf_sample).max()
    assert error <= sample_error_bound(k, 1e-6)  # 0.029 for k = 8000
    # and it is a fair sample, not a prefix: keys come from all over the frame
    assert x.sample_keys.min() < 10_000 and x.sample_keys.max() > 190_000


def test_histogram_uses_frozen_edges_with_overflow_bins() -> None:
    values = np.array([-5.0, 0.0, 0.5, 1.0, 1.5, 2.0, 9.0, np.nan, np.inf])
    x = build_profile(pd.DataFrame({"v": values}), edges={"v": [0.0, 1.0, 2.0]}).columns["v"]
    assert isinstance(x, NumericProfile)
    finite = values[np.isfinite(values)]
    expected, _ = np.histogram(finite[(finite >= 0) & (finite <= 2)], bins=[0.0, 1.0, 2.0])
    assert x.counts.tolist() == expected.tolist() == [2, 3]
    assert (x.below, x.above, x.nulls, x.count) == (1, 1, 2, 7)


def test_constant_and_all_null_columns_profile_without_error() -> None:
    p = build_profile(pd.DataFrame({"k": [3.0] * 5, "n": [np.nan] * 5}))
    k, n = p.columns["k"], p.columns["n"]
    assert isinstance(k, NumericProfile) and isinstance(n, NumericProfile)
    assert k.edges.tolist() == [3.0, 4.0] and k.counts.tolist() == [5]
    assert (n.count, n.nulls, n.min, n.max) == (0, 5, None, None)


def test_json_round_trip() -> None:
    p = _profile(_frame(5_000))
    data = json.loads(json.dumps(p.to_dict()))
    back = profile_from_dict(data)
    assert back.to_dict() == p.to_dict()
    _assert_same(back, p)
    assert back.target == "label" and back.prediction == "score"
    assert back.columns["label"].kind == "categorical"


def test_an_all_null_chunk_takes_the_other_chunks_kind() -> None:
    frame = pd.DataFrame({"c": ["a", "b", "a", None, None]})
    whole = build_profile(frame)
    first = build_profile(frame.iloc[:3])
    second = build_profile(frame.iloc[3:].astype(float))  # a chunk of nulls looks numeric
    merged = merge_profiles(first, second)
    assert merged.columns["c"] == whole.columns["c"]


def test_bad_input_names_the_column() -> None:
    frame = _frame(100)
    with pytest.raises(ValidationError, match="'nope'"):
        build_profile(frame, columns=["x", "nope"])
    with pytest.raises(ValidationError, match="'missing'"):
        build_profile(frame, target="missing")
    with pytest.raises(ValidationError, match="'x'.*edges"):
        build_profile(frame, edges={"x": [1.0]})
    a = build_profile(frame.iloc[:50])
    b = build_profile(frame.iloc[50:], offset=50)  # edges of its own
    with pytest.raises(ValidationError, match="'x'.*edges differ"):
        merge_profiles(a, b)
    c = build_profile(frame.iloc[50:], categorical=["x"], edges=a.edges(), offset=50)
    with pytest.raises(ValidationError, match="'x' is numeric in one profile and categorical"):
        merge_profiles(a, c)
    with pytest.raises(ValidationError, match="sample_size"):
        merge_profiles(a, build_profile(frame.iloc[50:], edges=a.edges(), sample_size=10))
    with pytest.raises(ValidationError, match="format"):
        profile_from_dict({"format": 99})
    broken = a.to_dict()
    del broken["columns"]["x"]["histogram"]
    with pytest.raises(ValidationError, match="'x'"):
        profile_from_dict(broken)


def test_task_wrappers_return_json_ready_dicts() -> None:
    frame = _frame(1_000)
    first = build_profile_task.fn(frame.iloc[:400], sample_size=100)
    edges = profile_from_dict(first).edges()
    second = build_profile_task.fn(frame.iloc[400:], sample_size=100, edges=edges, offset=400)
    merged = merge_profiles_task.fn([first, second])
    json.dumps(merged)
    whole = build_profile(frame, sample_size=100, edges=edges)
    _assert_same(profile_from_dict(merged), whole)
    with pytest.raises(ValidationError):
        merge_profiles_task.fn([])
