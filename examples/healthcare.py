"""Use case 3, healthcare diagnosis on scikit-learn's breast-cancer data: a high bar, explained.

Two candidates are trained by the ``train-model`` flow with 10-fold
cross-validation; a candidate is eligible only when its cross-validated AUC
is at least 0.97 with a fold spread under 0.03 and its holdout AUC at least
0.97. The better one becomes ``challenger``, is promoted to production by two
reviewers (``examples.promotion_walkthrough``), serves predictions each with
its explanation (the server's explain endpoint: the features that pushed this
patient's score up or down) behind API keys, is monitored for drift
(``examples.monitoring_walkthrough``), and, declared a high-risk diagnosis
model, is checked against HIPAA, the EU AI Act and GDPR with the officers'
attestations on record (``examples.governance_walkthrough``).

Run it with ``python -m examples.healthcare`` (``make demo`` runs it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from sklearn.datasets import load_breast_cancer

from blocks.settings import get_settings
from examples import governance_walkthrough, monitoring_walkthrough, promotion_walkthrough
from examples.serving_helpers import HEADERS, model_server, records
from flows.training import train_model
from storage.governance.attestations import AttestationStore
from storage.registry.core import Registry
from tasks.governance.compliance import known_rules, load_frameworks

MODEL = "breast-cancer"
#: The validation bar a diagnosis candidate must clear.
BAR = {"cv_auc_roc_mean": 0.97, "auc_roc": 0.97}
MAX_CV_SPREAD = 0.03


def write_data(folder: Path) -> Path:
    """The bundled data set as a CSV (features and ``target``: 1 = benign)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "breast-cancer.csv"
    load_breast_cancer(as_frame=True).frame.to_csv(path, index=False)
    return path


def candidates(data: Path) -> list[dict[str, Any]]:
    """Two pipeline configs, both with 10-fold cross-validation."""
    base = {
        "name": MODEL,
        "data_source": str(data),
        "target_column": "target",
        "cross_validation_folds": 10,
        "test_size": 0.25,
        "tags": {"domain": "healthcare"},
    }
    return [
        {**base, "model_class": "LogisticRegression", "model_params": {"C": 0.5, "max_iter": 1000}},
        {**base, "model_class": "GradientBoosting", "model_params": {"n_estimators": 60, "max_depth": 2}},
    ]


def clears_the_bar(metrics: dict[str, float]) -> bool:
    """Whether a candidate's metrics meet :data:`BAR` and the fold spread limit."""
    return all(metrics.get(k, 0.0) >= v for k, v in BAR.items()) and (
        metrics.get("cv_auc_roc_std", 1.0) <= MAX_CV_SPREAD
    )


def stage_challenger(registry: Registry, runs: list[dict[str, Any]]) -> int:
    """Compare the eligible candidates; the winner goes to staging as ``challenger``."""
    eligible = [r["version"] for r in runs if clears_the_bar(r["metrics"])]
    if not eligible:
        raise SystemExit(f"no candidate clears the validation bar {BAR} (fold spread <= {MAX_CV_SPREAD})")
    comparison = registry.compare(MODEL, eligible, primary="cv_auc_roc_mean")
    winner = comparison.winner if comparison.winner is not None else eligible[0]
    registry.transition_stage(MODEL, winner, "staging", alias="challenger", reason=comparison.reason)
    return int(winner)


#: What people vouch for (the rules that cannot be verified from the platform's own records).
ATTESTATIONS = [
    ("HIPAA", "hipaa-risk-analysis", "security officer", "risk analysis of the diagnosis service done"),
    ("HIPAA", "hipaa-baa", "privacy officer", "business associate agreements signed with the hospitals"),
    ("EU_AI_ACT", "aiact-art9-risk-management", "risk owner", "risk management system in place"),
    ("EU_AI_ACT", "aiact-art43-conformity", "compliance officer", "conformity assessment passed"),
    ("GDPR", "gdpr-art35-dpia", "data protection officer", "DPIA for diagnosis support signed"),
]


def attest(registry: Registry) -> None:
    """Record the officers' attestations for this model, valid for a year."""
    store = AttestationStore(registry, known_rules=known_rules(load_frameworks()))
    for framework, rule, who, statement in ATTESTATIONS:
        store.attest(framework, rule, attested_by=who, statement=statement, expires_in_days=365, model=MODEL)


def explained_predictions(url: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each patient's prediction with the top three factors behind it."""
    out = []
    with httpx.Client(base_url=url, headers=HEADERS, timeout=60) as client:
        for row in rows:
            predicted = client.post(f"/v1/models/{MODEL}/predict", json={"instances": [row]})
            explained = client.post(f"/v1/models/{MODEL}/explain", json={"instances": [row]})
            predicted.raise_for_status()
            explained.raise_for_status()
            out.append({"prediction": predicted.json(), "explanation": explained.json()})
    return out


def _factors(explanation: dict[str, Any]) -> str:
    factors = explanation["factors"]
    return ", ".join(f"{f['input']} ({f['contribution']:+.2f})" for f in factors[:3])


def main() -> dict[str, Any]:
    """Run the healthcare use case and print where every result is."""
    data = write_data(get_settings().resolved_home() / "healthcare")
    runs = [train_model(config=cfg) for cfg in candidates(data)]
    for run in runs:
        m = run["metrics"]
        print(
            f"version {run['version']} ({run['hyperparameters'] or 'defaults'}): "
            f"10-fold AUC {m['cv_auc_roc_mean']:.4f} ± {m['cv_auc_roc_std']:.4f}, "
            f"holdout AUC {m['auc_roc']:.4f}, "
            f"clears the bar: {clears_the_bar(m)}"
        )
    registry = Registry.from_settings()
    challenger = stage_challenger(registry, runs)
    print(f"challenger: version {challenger}")
    promotion_walkthrough.main()
    patients = load_breast_cancer(as_frame=True).data.sample(5, random_state=4)
    with model_server() as url:
        explained = explained_predictions(url, records(patients, list(patients.columns)))
    for i, item in enumerate(explained, start=1):
        label = "benign" if item["prediction"]["predictions"][0] == 1 else "malignant"
        print(f"patient {i}: {label}; because of {_factors(item['explanation'])}")
    monitoring = monitoring_walkthrough.main()
    attest(registry)
    governance = governance_walkthrough.main()
    return {"challenger": challenger, "explained": len(explained), "monitoring": monitoring, **governance}


if __name__ == "__main__":
    main()
