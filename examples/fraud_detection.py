"""Use case 1, fraud detection: from feature groups to a governed model behind a canary.

Card-activity feature groups are registered, ingested and materialized (the
feature store walk-through); a baseline XGBoost model and a tuned one (Optuna
trials fanned out to the Dask cluster) are trained by the ``train-model``
flow; the tuned version is approved by two reviewers and becomes
``champion``; the model server serves the baseline and the ``canary-rollout``
flow moves traffic to the champion step by step while requests keep coming;
a window of traffic whose amounts have drifted is checked by ``check-drift``;
bias across age groups is assessed; GDPR compliance is checked against the
evidence (training data registered with its PII flag and retention, a card
holder erased from every store, inference behind API keys, the DPIA attested
by the data protection officer); and the governance report is exported.

Run it with ``python -m examples.fraud_detection`` (``make demo`` runs it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from blocks.policy import ApprovalPolicy, MetricGate, StagePolicy
from blocks.settings import get_settings
from examples import features_walkthrough
from examples.serving_helpers import ADMIN_KEY, Traffic, model_server, records, replay, reviewers
from examples.use_case_data import transactions
from flows.governance import bias_check, governance_report_flow
from flows.monitoring import check_drift
from flows.promotion import promote_model
from flows.rollout import canary_rollout
from flows.training import train_model
from storage.governance.attestations import AttestationStore
from storage.governance.erasure import erase_entity
from storage.governance.lineage import LineageStore
from storage.registry.approvals import ApprovalStore
from storage.registry.core import Registry
from tasks.governance.compliance import check_compliance, known_rules, load_frameworks, record_compliance

MODEL = "fraud"
INPUTS = ["amount", "hour", "merchant_category", "tx_count_7d", "amount_mean_7d", "country"]
POLICY = ApprovalPolicy(
    stages={
        "production": StagePolicy(
            required_approvals=2, alias="champion", gates=[MetricGate(metric="auc_roc", threshold=0.7)]
        )
    }
)
REVIEWS = [("risk-lead", "recall on the holdout is acceptable"), ("compliance", "GDPR review done")]


def write_data(folder: Path) -> tuple[Path, Path]:
    """Training transactions and a held-out set (with the protected attribute ``age_group``)."""
    folder.mkdir(parents=True, exist_ok=True)
    train, holdout = folder / "transactions.csv", folder / "holdout.csv"
    transactions(4_000, seed=11).to_csv(train, index=False)
    transactions(20_000, seed=12).to_csv(holdout, index=False)
    return train, holdout


def config(train: Path, *, tuned: bool) -> dict[str, Any]:
    """The pipeline config of the baseline or the tuned XGBoost model."""
    cfg: dict[str, Any] = {
        "name": MODEL,
        "data_source": str(train),
        "target_column": "is_fraud",
        "model_type": "xgboost",
        "model_class": "XGBClassifier",
        "model_params": {"n_estimators": 60, "max_depth": 3},
        "cross_validation_folds": 3,
        "feature_engineering": {"drop_columns": ["card_id", "age_group"]},
        "description": "card fraud classifier" + (" (tuned)" if tuned else " (baseline)"),
        "tags": {"use_case": "fraud detection", "domain": "finance"},
    }
    if tuned:
        cfg.update(
            enable_tuning=True,
            tuning_trials=8,
            tuner="tpe",
            param_space={
                "max_depth": {"type": "int", "low": 2, "high": 6},
                "learning_rate": {"type": "float", "low": 0.03, "high": 0.3, "log": True},
                "n_estimators": {"type": "int", "low": 40, "high": 160},
            },
        )
    return cfg


def declare_personal_data(registry: Registry, version: int, train: Path) -> None:
    """GDPR evidence: the training data with its PII flag and retention, an erasure, the DPIA."""
    lineage = LineageStore(registry)
    lineage.register_dataset(
        "card-transactions",
        uri=train.as_uri(),
        source="payments.transactions",
        owner="risk-team",
        contains_pii=True,
        retention_days=730,
        transformations=["one-hot merchant category and country", "median imputation"],
    )
    lineage.record_usage("card-transactions", user_kind="model_version", user_name=f"{MODEL}/{version}")
    erased = erase_entity({"card_id": 7}, requested_by="privacy-officer", reason="GDPR Art. 17 request")
    print(f"erasure of card_id=7: removed {erased.removed}, verified: {erased.verified}")
    AttestationStore(registry, known_rules=known_rules(load_frameworks())).attest(
        "GDPR",
        "gdpr-art35-dpia",
        attested_by="data protection officer",
        statement="DPIA for card fraud scoring reviewed and signed",
        expires_in_days=365,
        model=MODEL,
    )


def promote(registry: Registry, version: int) -> dict[str, Any]:
    """Production through two approvals (the ``promote-model`` flow waits for them)."""
    registry.transition_stage(MODEL, version, "staging", reason="tuned model beat the baseline offline")
    thread = reviewers(ApprovalStore(registry), MODEL, version, REVIEWS)
    result = promote_model(
        MODEL,
        str(version),
        "production",
        requested_by="data-scientist",
        policy=POLICY,
        poll_interval_seconds=1,
    )
    thread.join(60)
    return result


def serve_and_roll_out(
    baseline: int, champion: int, live: list[dict[str, Any]], drifted: list[dict[str, Any]]
) -> dict[str, Any]:
    """Serve the baseline, canary the champion under live traffic, then send a drifted window."""
    with model_server() as url:
        created = canary_rollout(MODEL, MODEL, str(baseline), server_url=url, admin_key=ADMIN_KEY)
        traffic = Traffic(url, MODEL, live, delay_s=0.005)
        traffic.start()
        try:
            rollout = canary_rollout(
                MODEL,
                MODEL,
                str(champion),
                steps=[10, 50, 100],
                step_seconds=2,
                server_url=url,
                admin_key=ADMIN_KEY,
                min_requests=10,
                max_p99_ratio=5.0,
                poll_seconds=0.5,
            )
        finally:
            traffic.stop()
        answers = replay(url, MODEL, drifted, range(len(drifted)))
    print(
        f"endpoint {MODEL!r}: {created['status']} with version {baseline}; "
        f"canary of version {champion}: {rollout['status']}"
    )
    print(f"live traffic during the canary: {traffic.sent} requests, {traffic.failed} failed")
    return {"rollout": rollout["status"], "requests": traffic.sent + len(answers), "failed": traffic.failed}


def main() -> dict[str, Any]:
    """Run the fraud use case and print where every result is."""
    features_walkthrough.main()
    home = get_settings().resolved_home()
    train, holdout = write_data(home / "fraud")
    registry = Registry.from_settings()
    baseline = train_model(config=config(train, tuned=False))
    tuned = train_model(config=config(train, tuned=True))
    print(f"baseline: version {baseline['version']}, auc_roc {baseline['metrics']['auc_roc']:.3f}")
    print(
        f"tuned on Dask: version {tuned['version']}, auc_roc {tuned['metrics']['auc_roc']:.3f}, "
        f"{tuned['tuning']['trials']} trials, best {tuned['hyperparameters']}, ONNX kept: {tuned['onnx']}"
    )
    promoted = promote(registry, tuned["version"])
    print(f"promotion request {promoted['id']}: {promoted['status']} with {promoted['approvals']} approvals")
    live = records(transactions(400, seed=13), INPUTS)
    drifted = records(transactions(600, seed=14, amount_shift=1.5), INPUTS)
    served = serve_and_roll_out(baseline["version"], tuned["version"], live, drifted)
    drift = check_drift(MODEL, str(tuned["version"]), window_hours=1)
    print(
        f"drift check of version {tuned['version']} on {drift['rows']} requests: "
        f"drifted {drift['drifted_columns']}"
    )
    declare_personal_data(registry, tuned["version"], train)
    bias = bias_check(
        MODEL, str(tuned["version"]), str(holdout), "is_fraud", ["age_group"], min_group_size=50
    )
    print(f"bias across age groups: {'passed' if bias['passed'] else 'FAILED'} — {bias['summary']}")
    report = check_compliance(registry, MODEL, tuned["version"], ["GDPR"])
    record_compliance(registry, report)
    gdpr = report.frameworks[0]
    failing = [r.rule_id for r in gdpr.results if r.status == "failed"]
    print(f"GDPR: {gdpr.score:.0%} — failing: {', '.join(failing) or 'none'}")
    paths = governance_report_flow(MODEL, str(tuned["version"]), str(home / "governance"))
    print(f"governance report: {paths['json']}\nmodel card: {paths['model_card']}")
    ok = (
        promoted["status"] == "promoted"
        and served["rollout"] == "completed"
        and served["failed"] == 0
        and "amount" in drift["drifted_columns"]
        and gdpr.score == 1.0
    )
    if not ok:
        raise SystemExit("fraud detection use case failed")
    return {
        "baseline": baseline["version"],
        "champion": tuned["version"],
        **served,
        "drift": drift["drifted_columns"],
    }


if __name__ == "__main__":
    main()
