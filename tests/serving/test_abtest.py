"""A/B statistics against SciPy and statsmodels; SRM; reports and promote-winner on a real store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from statsmodels.stats.proportion import proportions_ztest

from serving.abtest import (
    ab_report,
    compare_outcomes,
    outcomes_from_ground_truth,
    promote_winner,
    srm_chi_square,
    two_proportion_z_test,
    welch_t_test,
)
from storage.audit import AuditLog
from storage.db import Database
from storage.endpoints.store import EndpointStore, LatencyHistogram, StatsRow, VariantSpec
from storage.errors import ValidationError


@pytest.mark.parametrize(
    ("s_a", "n_a", "s_b", "n_b"), [(120, 1000, 150, 1000), (30, 400, 22, 610), (5, 50, 5, 50)]
)
def test_two_proportion_z_matches_statsmodels(s_a: int, n_a: int, s_b: int, n_b: int) -> None:
    z, p = two_proportion_z_test(s_a, n_a, s_b, n_b)
    z_ref, p_ref = proportions_ztest([s_b, s_a], [n_b, n_a])
    assert z == pytest.approx(z_ref, rel=1e-9) and p == pytest.approx(p_ref, rel=1e-9)


def test_welch_matches_scipy() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.normal(10, 2, 80), rng.normal(10.8, 5, 50)
    t, df, p = welch_t_test(list(a), list(b))
    ref = stats.ttest_ind(b, a, equal_var=False)
    assert t == pytest.approx(ref.statistic, rel=1e-9) and p == pytest.approx(ref.pvalue, rel=1e-9)
    assert df == pytest.approx(ref.df, rel=1e-9)


@pytest.mark.parametrize(("observed", "weights"), [([5100, 4900], [50, 50]), ([900, 80, 20], [90, 5, 5])])
def test_srm_matches_scipy_chisquare(observed: list[int], weights: list[float]) -> None:
    chi2, p = srm_chi_square(observed, weights)
    expected = [sum(observed) * w / sum(weights) for w in weights]
    ref = stats.chisquare(observed, expected)
    assert chi2 == pytest.approx(ref.statistic, rel=1e-9) and p == pytest.approx(ref.pvalue, rel=1e-9)


def test_confidence_interval_of_a_difference_in_proportions() -> None:
    rng = np.random.default_rng(2)
    a = list(rng.binomial(1, 0.10, 5000).astype(float))
    b = list(rng.binomial(1, 0.13, 5000).astype(float))
    c = compare_outcomes("a", a, "b", b)
    assert c.test == "two-proportion z" and c.significant and c.ci_low < 0.03 < c.ci_high
    same = compare_outcomes("a", a, "b", list(rng.binomial(1, 0.10, 5000).astype(float)))
    assert not same.significant or same.p_value > 0.01


@pytest.fixture
def store(tmp_path: Path) -> EndpointStore:
    db = Database(f"sqlite:///{tmp_path / 'm.db'}")
    s = EndpointStore(db, actor="ops")
    s.create("ep", [VariantSpec("a", "m", "1", 50), VariantSpec("b", "m", "2", 50)], policy="ab")
    return s


def _traffic(store: EndpointStore, a: int, b: int) -> None:
    hist = LatencyHistogram({50: 1})
    store.flush_stats(
        [StatsRow("ep", "a", "r1", a, 1, a * 2.0, {50: a}), StatsRow("ep", "b", "r1", b, 0, b * 2.0, {50: b})]
    )
    assert hist.total == 1


def test_report_and_promote_the_winner(store: EndpointStore) -> None:
    _traffic(store, 5000, 5020)
    rng = np.random.default_rng(3)
    store.record_outcomes("ep", [(f"a{i}", "a", float(x)) for i, x in enumerate(rng.binomial(1, 0.10, 3000))])
    store.record_outcomes("ep", [(f"b{i}", "b", float(x)) for i, x in enumerate(rng.binomial(1, 0.14, 3000))])
    report = ab_report(store, "ep")
    assert report.srm_ok and report.traffic["a"]["requests"] == 5000
    (comparison,) = report.comparisons
    assert comparison.variant == "b" and comparison.significant and comparison.difference > 0
    winner, _ = promote_winner(store, "ep")
    assert winner == "b" and store.get("ep").weights() == {"a": 0.0, "b": 100.0}
    assert [e.kind for e in store.events("ep")][-2:] == ["traffic.set", "decision.promote_winner"]
    assert AuditLog(store.db).entries(action="decision.promote_winner")[0].entity_id == "ep"


def test_promote_refuses_without_a_significant_winner_or_with_srm(store: EndpointStore) -> None:
    _traffic(store, 5000, 5000)
    store.record_outcomes("ep", [("r1", "a", 1), ("r2", "a", 0), ("r3", "b", 1), ("r4", "b", 0)])
    with pytest.raises(ValidationError, match="beats the control significantly"):
        promote_winner(store, "ep")
    _traffic(store, 0, 900)  # b now has far more than its half
    assert not ab_report(store, "ep").srm_ok
    with pytest.raises(ValidationError, match="sample ratio mismatch"):
        promote_winner(store, "ep")
    assert store.get("ep").weights() == {"a": 50.0, "b": 50.0}
    assert promote_winner(store, "ep", force="a")[0] == "a"


def test_outcomes_from_ground_truth_join() -> None:
    log = pd.DataFrame(
        {
            "request_id": ["r1", "r2", "r3", "r4", "r4"],
            "endpoint": ["ep"] * 5,
            "variant": ["a", "a", "b", "b", "shadow:m:3"],
            "prediction": ["[1]", "[0]", "[1]", "[1]", "[0]"],
            "status": ["ok"] * 5,
        }
    )
    labels = pd.DataFrame({"request_id": ["r1", "r2", "r3", "r4"], "label": [1, 1, 0, 1]})
    assert outcomes_from_ground_truth(log, labels, endpoint="ep") == {"a": [1.0, 0.0], "b": [0.0, 1.0]}
    with pytest.raises(ValidationError, match="metric 'auc'"):
        outcomes_from_ground_truth(log, labels, endpoint="ep", metric="auc")


@pytest.mark.slow
def test_ab_outcomes_from_ground_truth_through_the_real_server(tmp_path: Path) -> None:
    """Sticky A/B on a real server, labels reported to /v1/feedback, accuracy per variant in the report."""
    import time

    import httpx

    from serving.testing import demo_frame, demo_target, register_demo
    from tests.serving.canary_models import ADMIN, served_registry

    with served_registry(tmp_path, log_predictions=True) as (url, reg):
        register_demo(reg, "fraud", "sklearn", n_estimators=3, seed=7)  # v3
        admin = httpx.Client(base_url=f"{url}/admin", headers=ADMIN, timeout=30)
        variants = [
            {"name": "a", "model": "fraud", "version": "1", "weight": 50},
            {"name": "b", "model": "fraud", "version": "3", "weight": 50},
        ]
        assert (
            admin.post("/endpoints", json={"name": "ab", "policy": "ab", "variants": variants}).status_code
            == 201
        )
        frame = demo_frame(80, seed=11)
        labels = demo_target(frame, seed=11)
        served: dict[str, str] = {}
        with httpx.Client(base_url=url, timeout=30) as client:
            for i, row in enumerate(frame.to_dict(orient="records")):
                r = client.post(
                    "/v1/models/ab/predict", json={"instances": [row]}, headers={"X-Request-Key": f"u{i}"}
                )
                assert r.status_code == 200
                served[r.headers["X-Request-Id"]] = r.json()["variant"]
                again = client.post(
                    "/v1/models/ab/predict", json={"instances": [row]}, headers={"X-Request-Key": f"u{i}"}
                )
                assert again.json()["variant"] == served[r.headers["X-Request-Id"]]  # sticky
            feedback = [{"request_id": rid, "label": int(y)} for rid, y in zip(served, labels, strict=True)]
            assert client.post("/v1/feedback", json=feedback).status_code == 200
        deadline = time.monotonic() + 20
        report: dict = {}
        while time.monotonic() < deadline:
            report = admin.get("/endpoints/ab/ab-report", params={"outcomes": "accuracy"}).json()
            if (
                report.get("comparisons")
                and report["comparisons"][0]["n"] + report["comparisons"][0]["n_control"] == 80
            ):
                break
            time.sleep(0.3)
        bad = admin.get("/endpoints/ab/ab-report", params={"outcomes": "auc"})
        admin.close()
    (comparison,) = report["comparisons"]
    assert (comparison["n_control"], comparison["n"]) == (
        sum(v == "a" for v in served.values()),
        sum(v == "b" for v in served.values()),
    )
    assert comparison["test"] == "two-proportion z" and 0.5 < comparison["mean_control"] <= 1.0
    assert bad.status_code == 400 and "'auc'" in bad.json()["error"]
