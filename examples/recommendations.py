"""Use case 2, recommendations: two versions behind a 90/10 A/B test, a winner by statistics.

Version 1 is a quick, shallow RandomForest; version 2 is an XGBoost model
deep enough to learn how user affinity interacts with the item category. Both are served behind the
``recs`` endpoint, 90% of users to version 1 and 10% to version 2, assigned
sticky by user id. Recorded impressions are replayed as live traffic; each
request's outcome (did the prediction match the click?) is reported back;
the A/B report compares the variants with a two-proportion z-test and checks
the sample ratio; the winner gets all the traffic and becomes ``champion``.

Run it with ``python -m examples.recommendations`` (``make demo`` runs it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from blocks.settings import get_settings
from examples.serving_helpers import ADMIN_KEY, model_server, records, replay
from examples.use_case_data import impressions
from flows.training import train_model
from storage.registry.core import Registry

MODEL = "recs"
INPUTS = ["price", "category", "position", "past_clicks", "user_affinity"]
REPLAYED = 3_000


def configs(train: Path) -> list[dict[str, Any]]:
    """Version 1 (a shallow RandomForest) and version 2 (XGBoost)."""
    base = {"name": MODEL, "data_source": str(train), "target_column": "clicked", "cross_validation_folds": 3}
    return [
        {
            **base,
            "model_class": "RandomForest",
            "model_params": {"n_estimators": 50, "max_depth": 2},
            "feature_engineering": {"drop_columns": ["user_id"]},
            "description": "click model: a quick shallow forest",
        },
        {
            **base,
            "model_type": "xgboost",
            "model_class": "XGBClassifier",
            "model_params": {"n_estimators": 80, "max_depth": 4},
            "feature_engineering": {"drop_columns": ["user_id"]},
            "description": "click model: boosted trees with affinity x category interactions",
        },
    ]


def ab_test(url: str, control: int, treatment: int) -> dict[str, Any]:
    """Create the 90/10 endpoint, replay impressions, report outcomes, promote the winner."""
    admin = httpx.Client(base_url=f"{url}/admin", headers={"X-API-Key": ADMIN_KEY}, timeout=30)
    admin.post(
        "/endpoints",
        json={
            "name": MODEL,
            "policy": "ab",
            "variants": [
                {"name": "control", "model": MODEL, "version": str(control), "weight": 90},
                {"name": "treatment", "model": MODEL, "version": str(treatment), "weight": 10},
            ],
        },
    ).raise_for_status()
    shown = impressions(REPLAYED, seed=31)
    answers = replay(url, MODEL, records(shown, INPUTS), shown["user_id"].tolist())
    outcomes = [
        {
            "request_id": a["request_id"],
            "variant": a["variant"],
            "value": float(a["predictions"][0] == clicked),
        }
        for a, clicked in zip(answers, shown["clicked"], strict=True)
    ]
    admin.post(f"/endpoints/{MODEL}/outcomes", json={"outcomes": outcomes}).raise_for_status()
    report = admin.get(f"/endpoints/{MODEL}/ab-report", params={"control": "control"}).json()
    promoted = admin.post(f"/endpoints/{MODEL}/promote-winner", json={"control": "control"})
    admin.close()
    return {"report": report, "promoted": promoted.json() if promoted.is_success else promoted.text}


def main() -> dict[str, Any]:
    """Run the recommendations use case and print where every result is."""
    home = get_settings().resolved_home() / "recs"
    home.mkdir(parents=True, exist_ok=True)
    train = home / "impressions.csv"
    impressions(6_000, seed=30).to_csv(train, index=False)
    trained = [train_model(config=cfg) for cfg in configs(train)]
    for run in trained:
        print(f"version {run['version']} ({run['framework']}): accuracy {run['metrics']['accuracy']:.3f}")
    with model_server() as url:
        result = ab_test(url, trained[0]["version"], trained[1]["version"])
    report = result["report"]
    for variant, traffic in report["traffic"].items():
        print(f"variant {variant}: {traffic['requests']} requests, p99 {traffic['p99_ms']:.2f} ms")
    print(
        f"sample ratio check: chi2 {report['srm_chi2']:.2f}, "
        f"p {report['srm_p_value']:.3f}, ok {report['srm_ok']}"
    )
    for c in report["comparisons"]:
        print(
            f"{c['variant']} vs {c['control']} ({c['test']}): "
            f"correct {c['mean']:.3f} vs {c['mean_control']:.3f}, difference {c['difference']:+.3f} "
            f"[{c['ci_low']:+.3f}, {c['ci_high']:+.3f}], p {c['p_value']:.2g}"
        )
    winner = result["promoted"]["winner"] if isinstance(result["promoted"], dict) else None
    registry = Registry.from_settings()
    if winner == "treatment":
        registry.transition_stage(MODEL, trained[1]["version"], "staging", reason="won the A/B test")
        print(f"winner: {winner} (version {trained[1]['version']}) now gets all traffic, stage staging")
    else:
        raise SystemExit(f"recommendations use case failed: winner {winner!r}, {result['promoted']}")
    return {"winner": winner, "report": report}


if __name__ == "__main__":
    main()
