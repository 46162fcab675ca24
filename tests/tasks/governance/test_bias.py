"""Bias detection against fairlearn as the oracle, small groups, intervals, bad input."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import (
    MetricFrame,
    demographic_parity_difference,
    demographic_parity_ratio,
    equal_opportunity_difference,
    equalized_odds_difference,
    false_positive_rate,
    selection_rate,
    true_positive_rate,
)
from sklearn.datasets import load_breast_cancer, load_diabetes
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from storage.errors import ValidationError
from tasks.governance.bias import BiasThresholds, detect_bias, detect_bias_task
from tasks.governance.bias_bootstrap import (
    METRICS,
    eligible_groups,
    group_rates,
    metric_values,
    percentile_interval,
    resample_counts,
)

TOL = 1e-9


def _oracle(y_true: np.ndarray, y_pred: np.ndarray, features: pd.DataFrame) -> dict[str, float]:
    """fairlearn's value of each of our metrics for one grouping."""
    dpr = demographic_parity_ratio(y_true, y_pred, sensitive_features=features)
    return {
        "statistical_parity_difference": demographic_parity_difference(
            y_true, y_pred, sensitive_features=features
        ),
        "statistical_parity_ratio": dpr,
        "disparate_impact": dpr,
        "equal_opportunity_difference": equal_opportunity_difference(
            y_true, y_pred, sensitive_features=features
        ),
        "equalized_odds_difference": equalized_odds_difference(y_true, y_pred, sensitive_features=features),
    }


def _assert_matches_fairlearn(
    y_true: np.ndarray, y_pred: np.ndarray, protected: Mapping[str, np.ndarray]
) -> None:
    report = detect_bias(y_true, y_pred, protected=protected, min_group_size=1, n_resamples=0)
    names = list(protected)
    groupings = [(n,) for n in names] + ([tuple(names)] if len(names) > 1 else [])
    assert [r.attributes for r in report.results] == groupings
    for attrs in groupings:
        features = pd.DataFrame({a: protected[a] for a in attrs})
        ours = report.get(*attrs)
        expected = _oracle(y_true, y_pred, features)
        for metric in METRICS:
            assert ours.metric(metric).value == pytest.approx(expected[metric], abs=TOL), (attrs, metric)
        frame = MetricFrame(
            metrics={"sr": selection_rate, "tpr": true_positive_rate, "fpr": false_positive_rate},
            y_true=y_true,
            y_pred=y_pred,
            sensitive_features=features,
        )
        by_group = frame.by_group.dropna()  # fairlearn lists unobserved combinations as NaN
        rows = {
            tuple(str(v) for v in (key if isinstance(key, tuple) else (key,))): row
            for key, row in by_group.iterrows()
        }
        assert len(rows) == len(ours.groups)
        for group in ours.groups:
            row = rows[tuple(group.values[a] for a in attrs)]
            assert group.selection_rate == pytest.approx(row["sr"], abs=TOL)
            assert group.true_positive_rate == pytest.approx(row["tpr"], abs=TOL)
            assert group.false_positive_rate == pytest.approx(row["fpr"], abs=TOL)
        assert ours.metric("equal_opportunity_difference").value == pytest.approx(
            frame.difference()["tpr"], abs=TOL
        )


@pytest.mark.parametrize("seed", range(8))
def test_every_metric_equals_fairlearn_on_random_data(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(300, 3000))
    k_a, k_b = int(rng.integers(2, 4)), int(rng.integers(2, 6))
    a = rng.choice([f"a{i}" for i in range(k_a)], n, p=rng.dirichlet(np.ones(k_a) * 5))
    b = rng.integers(0, k_b, n)  # integer groups work as well as strings
    y_true = (rng.random(n) < rng.uniform(0.2, 0.7)).astype(int)
    bias = rng.uniform(-0.3, 0.3, k_b)[b]
    y_pred = (rng.random(n) < np.clip(0.3 + 0.4 * y_true + bias, 0.01, 0.99)).astype(int)
    _assert_matches_fairlearn(y_true, y_pred, {"a": a, "b": b})


def test_three_attributes_and_chosen_intersections_equal_fairlearn() -> None:
    rng = np.random.default_rng(42)
    n = 4000
    protected = {
        "a": rng.choice(["x", "y"], n),
        "b": rng.choice(["p", "q", "r"], n),
        "c": rng.integers(0, 2, n),
    }
    y_true = rng.integers(0, 2, n)
    y_pred = rng.integers(0, 2, n)
    report = detect_bias(
        y_true, y_pred, protected=protected, intersections=[["a", "b"], ["b", "c"]], n_resamples=0
    )
    assert [r.name for r in report.results] == ["a", "b", "c", "a & b", "b & c"]
    for attrs in [("a", "b"), ("b", "c")]:
        features = pd.DataFrame({k: protected[k] for k in attrs})
        expected = _oracle(y_true, y_pred, features)
        for metric in METRICS:
            assert report.get(*attrs).metric(metric).value == pytest.approx(expected[metric], abs=TOL)
    assert len(report.get("a", "b").groups) == 6
    everything = detect_bias(y_true, y_pred, protected=protected, n_resamples=0)
    assert everything.results[-1].name == "a & b & c" and len(everything.results[-1].groups) == 12
    assert [r.name for r in detect_bias(y_true, y_pred, protected=protected, intersections=[]).results] == [
        "a",
        "b",
        "c",
    ]


@pytest.mark.parametrize("loader", [load_breast_cancer, load_diabetes])
def test_bundled_data_set_equals_fairlearn(loader: Callable[..., Any]) -> None:
    X, target = loader(return_X_y=True)
    y = (target > np.median(target)).astype(int) if loader is load_diabetes else target
    rng = np.random.default_rng(7)
    # a synthetic protected attribute tied to the first feature, and an unrelated one with 3 groups
    group = np.where(X[:, 0] > np.median(X[:, 0]), "high", "low")
    region = rng.choice(["north", "south", "west"], len(y))
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(X[::2], y[::2])
    _assert_matches_fairlearn(y, model.predict(X), {"group": group, "region": region})
    scores = model.predict_proba(X)[:, 1]
    from_scores = detect_bias(y, scores=scores, protected={"group": group}, n_resamples=0)
    from_labels = detect_bias(y, (scores >= 0.5).astype(int), protected={"group": group}, n_resamples=0)
    assert from_scores.to_dict() == from_labels.to_dict()


def test_verdicts_use_the_thresholds_and_say_why() -> None:
    sex = np.repeat(["F", "M"], 1000)
    y_true = np.tile([0, 1], 1000)
    y_pred = np.concatenate([np.tile([0, 0, 0, 1], 250), np.tile([0, 1], 500)])  # F: 25%, M: 50% selected
    report = detect_bias(y_true, y_pred, protected={"sex": sex}, n_resamples=0)
    result = report.get("sex")
    di = result.metric("disparate_impact")
    assert (di.value, di.threshold, di.comparison, di.verdict) == (0.5, 0.8, ">=", "biased")
    assert "sex=F (50%)" in di.detail and di.group_values == {"sex=F": 0.5, "sex=M": 1.0}
    spd = result.metric("statistical_parity_difference")
    assert (spd.value, spd.threshold, spd.verdict) == (0.25, 0.1, "biased")
    assert "sex=F" in spd.detail and "sex=M" in spd.detail
    assert report.verdict == "biased" and not report.passed
    assert {m.metric for _, m in report.failures} == {
        "statistical_parity_difference",
        "statistical_parity_ratio",
        "disparate_impact",
        "equal_opportunity_difference",
        "equalized_odds_difference",
    }
    lenient = BiasThresholds(0.3, 0.5, 0.5, 0.6, 0.6)
    relaxed = detect_bias(y_true, y_pred, protected={"sex": sex}, thresholds=lenient, n_resamples=0)
    assert relaxed.passed and relaxed.verdict == "fair"
    assert relaxed.get("sex").metric("disparate_impact").verdict == "fair"  # 0.5 >= 0.5 passes
    as_json = json.loads(json.dumps(report.to_dict()))
    assert as_json["results"][0]["metrics"]["disparate_impact"]["threshold"] == 0.8


def test_small_groups_are_too_small_to_judge_and_left_out() -> None:
    rng = np.random.default_rng(3)
    n = 3000
    race = rng.choice(["a", "b", "c"], n, p=[0.6, 0.39, 0.01])  # c: about 30 rows
    race[:10] = "d"  # d: 10 rows, always selected
    y_true = rng.integers(0, 2, n)
    y_pred = (rng.random(n) < np.where(race == "b", 0.5, 0.4)).astype(int)
    y_pred[race == "d"] = 1
    report = detect_bias(y_true, y_pred, protected={"race": race}, min_group_size=50, n_resamples=0)
    result = report.get("race")
    for metric in METRICS:
        assert set(result.metric(metric).groups_too_small) >= {"race=c", "race=d"}
    sizes = {g.label: g for g in result.groups}
    assert sizes["race=d"].status == "too small to judge" and sizes["race=a"].status == "judged"
    # the verdict is the one of the large groups alone: fairlearn on those rows agrees
    keep = np.isin(race, ["a", "b"])
    expected = _oracle(y_true[keep], y_pred[keep], pd.DataFrame({"race": race[keep]}))
    for metric in METRICS:
        assert result.metric(metric).value == pytest.approx(expected[metric], abs=TOL)
    # equal opportunity counts positives, so a group can be large enough for parity only
    y_true2 = y_true.copy()
    y_true2[race == "b"] = 0
    y_true2[np.flatnonzero(race == "b")[:20]] = 1
    eo = detect_bias(y_true2, y_pred, protected={"race": race}, min_group_size=50, n_resamples=0).get("race")
    assert "race=b" in eo.metric("equal_opportunity_difference").groups_too_small
    assert "race=b" in eo.metric("statistical_parity_difference").groups_judged
    assert eo.metric("equal_opportunity_difference").verdict == "insufficient data"
    assert "1 group(s) large enough" in eo.metric("equal_opportunity_difference").detail


def test_a_group_without_positives_is_too_small_for_equal_opportunity() -> None:
    """fairlearn counts its TPR as 0; here it is left out, and fairlearn on the rest agrees."""
    rng = np.random.default_rng(8)
    n = 900
    g = np.repeat(["a", "b", "c"], 300)
    y_true = rng.integers(0, 2, n)
    y_true[g == "c"] = 0
    y_pred = rng.integers(0, 2, n)
    result = detect_bias(y_true, y_pred, protected={"g": g}, min_group_size=1, n_resamples=0).get("g")
    eo = result.metric("equal_opportunity_difference")
    assert eo.groups_too_small == ("g=c",) and np.isnan(result.groups[2].true_positive_rate)
    assert result.metric("statistical_parity_difference").groups_too_small == ()
    keep = g != "c"
    expected = equal_opportunity_difference(y_true[keep], y_pred[keep], sensitive_features=g[keep])
    assert eo.value == pytest.approx(expected, abs=TOL)
    assert result.to_dict()["groups"][2]["true_positive_rate"] is None


def test_the_prefect_task_wraps_the_same_function() -> None:
    assert detect_bias_task.name == "detect-bias" and detect_bias_task.fn is detect_bias


def test_small_intersections_are_reported_not_judged() -> None:
    rng = np.random.default_rng(5)
    n = 2000
    sex = rng.choice(["F", "M"], n)
    age = rng.choice(["young", "old"], n)
    sex[:15], age[:15] = "X", "young"  # 15 rows of a rare sex, all young
    y_true, y_pred = rng.integers(0, 2, n), rng.integers(0, 2, n)
    report = detect_bias(
        y_true, y_pred, protected={"sex": sex, "age": age}, min_group_size=30, n_resamples=100
    )
    inter = report.get("sex", "age")
    assert "sex=X & age=young" in inter.metric("statistical_parity_difference").groups_too_small
    assert len(inter.metric("statistical_parity_difference").groups_judged) == 4
    assert {g.label for g in inter.groups if g.status == "too small to judge"} == {"sex=X & age=young"}


def test_no_group_large_enough_gives_insufficient_data() -> None:
    report = detect_bias([0, 1, 0, 1], [0, 1, 1, 1], protected={"g": ["a", "a", "b", "b"]}, n_resamples=50)
    for metric in report.get("g").metrics:
        assert metric.verdict == "insufficient data" and metric.interval is None
    assert report.verdict == "insufficient data" and not report.passed


def test_bootstrap_is_seeded_and_brackets_the_estimate() -> None:
    rng = np.random.default_rng(11)
    n = 5000
    g = rng.choice(["a", "b", "c"], n)
    y_true = rng.integers(0, 2, n)
    y_pred = (rng.random(n) < np.where(g == "a", 0.3, 0.5)).astype(int)
    one = detect_bias(y_true, y_pred, protected={"g": g}, n_resamples=300, seed=1)
    two = detect_bias(y_true, y_pred, protected={"g": g}, n_resamples=300, seed=1)
    other = detect_bias(y_true, y_pred, protected={"g": g}, n_resamples=300, seed=2)
    assert one.to_dict() == two.to_dict() and one.to_dict() != other.to_dict()
    for m in one.get("g").metrics:
        assert m.interval is not None and m.interval.low <= m.value <= m.interval.high
        assert (m.interval.confidence, m.interval.resamples) == (0.95, 300)
    assert percentile_interval(np.array([np.nan, np.nan]), 0.9) is None


def test_multinomial_cell_resampling_matches_resampling_rows() -> None:
    """Drawing cell counts directly has the distribution of counting rows drawn with replacement."""
    rng = np.random.default_rng(13)
    n, draws = 2000, 2000
    g = rng.integers(0, 3, n)
    y_true = rng.integers(0, 2, n)
    y_pred = (rng.random(n) < 0.3 + 0.1 * g + 0.3 * y_true).astype(int)
    cell = g * 4 + y_true * 2 + y_pred
    counts = np.bincount(cell, minlength=12).reshape(3, 4)
    eligible = eligible_groups(group_rates(counts), 30)
    rows = rng.integers(0, n, size=(draws, n))  # classic bootstrap: resample the rows themselves
    by_rows = np.stack([np.bincount(cell[r], minlength=12).reshape(3, 4) for r in rows])
    by_cells = resample_counts(counts, draws, rng)
    assert by_cells.shape == (draws, 3, 4) and (by_cells.sum(axis=(1, 2)) == n).all()
    rows_values = metric_values(group_rates(by_rows), eligible)
    cells_values = metric_values(group_rates(by_cells), eligible)
    for metric in METRICS:
        a, b = rows_values[metric], cells_values[metric]
        assert abs(a.mean() - b.mean()) < 0.1 * a.std(), metric
        assert b.std() == pytest.approx(a.std(), rel=0.1), metric
        assert np.quantile(b, 0.05) == pytest.approx(np.quantile(a, 0.05), abs=0.25 * a.std()), metric


def test_intervals_cover_the_true_value_at_the_nominal_rate() -> None:
    """200 simulated data sets, 90% intervals: coverage within a binomial tolerance."""
    rng = np.random.default_rng(2024)
    sims, n, level = 200, 2000, 0.90
    # two groups (40% / 60% of rows), base rate 0.5, P(pred = 1 | group, y_true)
    p_group = np.array([0.4, 0.6])
    p_pred = np.array([[0.20, 0.60], [0.35, 0.85]])  # [group, y_true]
    truth = {
        "statistical_parity_difference": 0.5 * (p_pred[1].sum() - p_pred[0].sum()),
        "statistical_parity_ratio": p_pred[0].sum() / p_pred[1].sum(),
        "disparate_impact": p_pred[0].sum() / p_pred[1].sum(),
        "equal_opportunity_difference": p_pred[1, 1] - p_pred[0, 1],
        "equalized_odds_difference": max(p_pred[1, 1] - p_pred[0, 1], p_pred[1, 0] - p_pred[0, 0]),
    }
    covered = dict.fromkeys(METRICS, 0)
    for i in range(sims):
        g = (rng.random(n) < p_group[1]).astype(int)
        y_true = rng.integers(0, 2, n)
        y_pred = (rng.random(n) < p_pred[g, y_true]).astype(int)
        report = detect_bias(y_true, y_pred, protected={"g": g}, n_resamples=1000, confidence=level, seed=i)
        for m in report.get("g").metrics:
            assert m.interval is not None
            covered[m.metric] += m.interval.low <= truth[m.metric] <= m.interval.high
    tolerance = 3 * np.sqrt(level * (1 - level) / sims)  # 3 binomial standard errors: 0.064
    for metric, hits in covered.items():
        assert abs(hits / sims - level) <= tolerance, (metric, hits / sims)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"y_true": [0, 1, 1], "y_pred": [0, 1]}, "y_true has 3 values but y_pred has 2"),
        ({"y_pred": None, "scores": [0.2, 0.9]}, "y_true has 3 values but scores has 2"),
        ({"protected": {"sex": ["F", "M"]}}, "protected attribute 'sex' has 2 values but y_true has 3"),
        ({"protected": {"sex": ["F", "F", "F"]}}, "protected attribute 'sex' has a single group 'F'"),
        ({"y_true": [0, 1, 2]}, r"y_true must be binary \(0/1\); found values \[0, 1, 2\]"),
        ({"y_pred": ["no", "yes", "no"]}, r"y_pred must be binary \(0/1\); found values \['no', 'yes'\]"),
        ({"y_true": [0.0, np.nan, 1.0]}, r"y_true has 1 missing values \(NaN\)"),
        ({"protected": {"sex": ["F", None, "M"]}}, "protected attribute 'sex' has 1 missing values"),
        ({"protected": {}}, "no protected attributes given"),
        ({"y_pred": None}, "give either y_pred or scores"),
        ({"scores": [0.1, 0.2, 0.3]}, "give either y_pred or scores"),
        ({"y_true": []}, "y_true is empty"),
        ({"min_group_size": 0}, "min_group_size must be at least 1"),
        ({"confidence": 1.5}, "confidence must be between 0 and 1"),
        ({"intersections": [["sex", "age"]]}, r"names unknown attributes \['age'\]"),
        ({"intersections": [["sex"]]}, "an intersection names at least two attributes"),
    ],
)
def test_bad_input_is_named(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {
        "y_true": [0, 1, 1],
        "y_pred": [0, 1, 0],
        "protected": {"sex": ["F", "M", "F"]},
    }
    args.update(kwargs)
    with pytest.raises(ValidationError, match=message):
        detect_bias(**args)  # type: ignore[arg-type]


def test_booleans_categoricals_and_dataframes_are_accepted() -> None:
    rng = np.random.default_rng(9)
    n = 500
    frame = pd.DataFrame(
        {"sex": pd.Categorical(rng.choice(["F", "M"], n)), "age": rng.choice([20, 40, 60], n)}
    )
    y_true, y_pred = rng.random(n) < 0.5, rng.random(n) < 0.4
    report = detect_bias(y_true, y_pred, protected=frame, min_group_size=1, n_resamples=0)
    expected = _oracle(y_true.astype(int), y_pred.astype(int), frame[["sex", "age"]])
    assert report.get("sex", "age").metric("equalized_odds_difference").value == pytest.approx(
        expected["equalized_odds_difference"], abs=TOL
    )
    assert report.get("age").groups[0].values == {"age": "20"}
    with pytest.raises(ValidationError, match="no bias results for 'race'"):
        report.get("race")
