"""Governance of the champion: lineage, bias, EU AI Act risk, compliance, model card, erasure.

Runs inside the healthcare use case (``examples.healthcare``), after the
champion was promoted, served and monitored. The breast-cancer champion is
declared a high-risk diagnosis model and gets its explainer (SHAP) and global
feature importance; its training data is registered with its PII flag and
retention; a bias check scores the screened patients with the registered
version across a synthetic age-group attribute; compliance is checked against
evidence (a rule whose evidence does not exist fails and says so);
a governance report and model card are written; and one card holder from the
feature store walk-through is erased everywhere.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.datasets import load_breast_cancer

from blocks.settings import get_settings
from flows.governance import bias_check, governance_report_flow
from storage.errors import AlreadyExistsError
from storage.governance.erasure import erase_entity
from storage.governance.lineage import LineageStore
from storage.registry.core import Registry
from tasks.governance.compliance import check_compliance, record_compliance
from tasks.monitoring.explain import explain_prediction, global_importance, make_explainer
from tasks.scoring import load_sklearn_model

MODEL = "breast-cancer"
DATASET = "breast-cancer-wisconsin"


def declare(registry: Registry, version: int) -> None:
    """Intended use, domain and use case on the model; the training data and its use."""
    for key, value in {
        "domain": "healthcare",
        "use_case": "medical diagnosis support",
        "intended_use": "second reader for biopsy classification; never the sole basis of a diagnosis",
    }.items():
        registry.set_model_tag(MODEL, key, value)
    lineage = LineageStore(registry)
    with contextlib.suppress(AlreadyExistsError):  # registered by an earlier run
        lineage.register_dataset(
            DATASET,
            uri="sklearn://datasets/breast_cancer",
            source="UCI breast cancer Wisconsin (diagnostic)",
            owner="clinical-data",
            contains_pii=True,
            retention_days=3650,
            transformations=["standard scaling (logistic) or none (boosting)"],
        )
    lineage.record_usage(DATASET, user_kind="model_version", user_name=f"{MODEL}/{version}")


def explain(registry: Registry, version: int) -> str:
    """Attach the explainer and global importance to the version; explain one prediction."""
    data = load_breast_cancer(as_frame=True).data
    estimator = load_sklearn_model(registry, MODEL, version)
    explainer = make_explainer(estimator, data.sample(100, random_state=0))
    registry.set_version_extra(MODEL, version, "explainer", explainer.explainer_config())
    registry.set_version_extra(MODEL, version, "global_importance", global_importance(explainer, data))
    first = explain_prediction(explainer, data.iloc[[0]], top=3)
    return ", ".join(f"{f.feature} ({f.direction})" for f in first.factors)


def screened_with_age_groups(folder: Path) -> Path:
    """The screened patients with a synthetic age-group attribute (the data set has none)."""
    data = load_breast_cancer(as_frame=True)
    frame = data.frame.copy()
    frame["age_group"] = np.random.default_rng(0).choice(["<50", "50-65", ">65"], len(frame))
    path = folder / "breast-cancer-screened.csv"
    frame.to_csv(path, index=False)
    return path


def main() -> dict[str, Any]:
    """Run the governance steps and print where every result is."""
    registry = Registry.from_settings()
    champion = registry.get_version(MODEL, "@champion")
    declare(registry, champion.number)
    out = get_settings().resolved_home() / "governance"
    out.mkdir(parents=True, exist_ok=True)
    bias = bias_check(
        MODEL,
        str(champion.number),
        str(screened_with_age_groups(out)),
        "target",
        ["age_group"],
        min_group_size=30,
    )
    factors = explain(registry, champion.number)
    erased = erase_entity({"card_id": 7}, requested_by="privacy-officer", reason="GDPR Art. 17 request")
    report = check_compliance(registry, MODEL, champion.number, ["HIPAA", "EU_AI_ACT", "GDPR"])
    record_compliance(registry, report)
    paths = governance_report_flow(MODEL, str(champion.number), str(out))
    verdict = "passed" if bias["passed"] else "FAILED"
    print(f"bias check of version {champion.number}: {verdict} — {bias['summary']}")
    print(f"explainer stored; top factors of the first patient: {factors}")
    print(f"EU AI Act risk level: {report.risk_level}")
    for fw in report.frameworks:
        failing = [r.rule_id for r in fw.results if r.status == "failed"]
        print(f"{fw.framework}: {fw.score:.0%} — failing: {', '.join(failing) or 'none'}")
    print(f"governance report: {paths['json']}\nmodel card: {paths['model_card']}")
    print(f"erasure of card_id=7: removed {erased.removed}, verified: {erased.verified}")
    if not (erased.verified and Path(paths["model_card"]).exists() and report.risk_level == "high"):
        raise SystemExit("governance walk-through failed")
    return {"bias": bias, "compliance": {f.framework: f.score for f in report.frameworks}, **paths}


if __name__ == "__main__":
    main()
