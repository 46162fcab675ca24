"""The lifecycle in ten lines: train, stage, serve, predict, check drift, check bias, report.

The README shows the body of :func:`lifecycle`; ``tests/test_examples.py`` runs it.

Run it with ``python -m examples.lifecycle``.
"""

from __future__ import annotations

from typing import Any

from blocks.settings import get_settings
from examples.serving_helpers import ADMIN_KEY, model_server, records, replay
from examples.use_case_data import impressions


def lifecycle(data: str, holdout: str, out: str) -> dict[str, Any]:
    """Every step of the lifecycle on one model, ``clicks``, each a Prefect flow or a registry call."""
    from flows.governance import bias_check, governance_report_flow
    from flows.monitoring import check_drift
    from flows.rollout import canary_rollout
    from flows.training import train_model
    from mlops import Registry
    from storage.registry.model_format import input_columns

    run = train_model(config={"name": "clicks", "data_source": data, "target_column": "clicked"})
    version = Registry.from_settings().transition_stage("clicks", run["version"], "staging", reason="trained")
    with model_server() as url:  # the model server on a free 127.0.0.1 port
        canary_rollout("clicks", "clicks", str(run["version"]), server_url=url, admin_key=ADMIN_KEY)
        live = impressions(500, seed=2, shift_prices=0.5)  # prices went up by half
        replay(url, "clicks", records(live, input_columns(version.signature)), live["user_id"].tolist())
    drift = check_drift("clicks", str(run["version"]), window_hours=1)
    bias = bias_check("clicks", str(run["version"]), holdout, "clicked", ["category"], min_group_size=50)
    card = governance_report_flow("clicks", str(run["version"]), out)["model_card"]
    return {"version": version.number, "drift": drift["drifted_columns"], "bias": bias, "card": card}


def main() -> dict[str, Any]:
    """Write the data, run :func:`lifecycle`, print where the results are."""
    home = get_settings().resolved_home() / "lifecycle"
    home.mkdir(parents=True, exist_ok=True)
    impressions(3_000, seed=1).to_csv(home / "impressions.csv", index=False)
    impressions(3_000, seed=3).to_csv(home / "holdout.csv", index=False)
    result = lifecycle(str(home / "impressions.csv"), str(home / "holdout.csv"), str(home))
    print(f"clicks version {result['version']}: drifted {result['drift']}")
    print(f"bias across item categories: {result['bias']['summary']}")
    print(f"model card: {result['card']}")
    return result


if __name__ == "__main__":
    main()
