"""The model registry, end to end, as a Prefect flow.

Two candidate models for breast-cancer diagnosis are trained on scikit-learn's
bundled data, registered with their metrics, data hash and skops files,
compared, and the winner is moved to staging with the ``challenger`` alias
(production needs reviewers: see ``examples/promotion_walkthrough.py``). Every
artifact is then re-verified and the audit chain checked.

Run it with ``python -m examples.registry_walkthrough`` (or ``make demo``).
"""

from __future__ import annotations

import hashlib
from typing import Any

import skops.io as sio
from prefect import flow, task
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from storage.audit import AuditLog
from storage.registry.core import Registry
from tasks.registry.steps import (
    compare_model_versions,
    register_model_version,
    transition_version_stage,
    verify_model_version,
)

MODEL = "breast-cancer"


@task
def train_candidate(kind: str, seed: int = 0) -> dict[str, Any]:
    """Fit one candidate and return its skops bytes, metrics and data hash."""
    data = load_breast_cancer(as_frame=True)
    x_train, x_test, y_train, y_test = train_test_split(
        data.data, data.target, test_size=0.25, stratify=data.target, random_state=seed
    )
    if kind == "logistic":
        estimator: Any = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500, C=0.5))
    else:
        estimator = GradientBoostingClassifier(n_estimators=60, max_depth=2, random_state=seed)
    estimator.fit(x_train, y_train)
    scores = estimator.predict_proba(x_test)[:, 1]
    frame_bytes = data.frame.to_csv(index=False).encode()
    return {
        "kind": kind,
        "model": sio.dumps(estimator),
        "metrics": {
            "auc_roc": float(roc_auc_score(y_test, scores)),
            "accuracy": float(accuracy_score(y_test, scores > 0.5)),
        },
        "params": {k: v for k, v in estimator.get_params().items() if isinstance(v, int | float | str)},
        "signature": {"inputs": [{"name": str(c), "type": "float"} for c in data.data.columns]},
        "dataset_hash": hashlib.sha256(frame_bytes).hexdigest(),
    }


@flow(name="registry-walkthrough")
def registry_walkthrough() -> dict[str, Any]:
    """Train two candidates, register both, stage the better one as challenger."""
    numbers = []
    for kind in ("logistic", "boosting"):
        cand = train_candidate(kind)
        version = register_model_version(
            MODEL,
            framework="sklearn",
            metrics=cand["metrics"],
            hyperparameters=cand["params"],
            artifacts={"model.skops": cand["model"]},
            signature=cand["signature"],
            dataset_uri="sklearn://datasets/breast_cancer",
            dataset_hash=cand["dataset_hash"],
            tags={"candidate": kind},
            changelog=f"{kind} candidate",
        )
        numbers.append(version.number)
    comparison = compare_model_versions(MODEL, numbers, primary="auc_roc", min_improvement=0.0)
    winner = comparison.winner if comparison.winner is not None else numbers[-1]
    staged = transition_version_stage(MODEL, winner, "staging", reason=comparison.reason, alias="challenger")
    report = verify_model_version(MODEL, winner)
    return {
        "versions": numbers,
        "winner": winner,
        "reason": comparison.reason,
        "stage": staged.stage,
        "verified": report.ok,
    }


def main() -> dict[str, Any]:
    """Run the walk-through and print where everything is."""
    result = registry_walkthrough()
    registry = Registry.from_settings()
    audit = AuditLog(registry.db).verify()
    print(f"registered versions {result['versions']} of {MODEL!r}")
    print(f"winner: version {result['winner']} ({result['reason']})")
    print(f"staging + challenger: version {result['winner']}; artifacts verified: {result['verified']}")
    print(f"audit chain intact: {audit.ok} ({audit.checked} entries)")
    print(f"metadata database: {registry.db.url}")
    print(f"artifacts: {registry.artifacts.url}")
    if not (result["verified"] and audit.ok and result["stage"] == "staging"):
        raise SystemExit("registry walk-through failed")
    return result


if __name__ == "__main__":
    main()
