"""Promotion to production with two reviewers, as a Prefect flow that waits for them.

The ``promote-model`` flow checks the challenger against a metric gate, opens
an approval request and pauses. Two reviewers then decide — here from a
thread, the way ``mlops approve`` does from a terminal; in the Prefect UI they
would press Resume on the paused run and fill the form. On the second
approval the version moves to production and becomes ``champion``.

It runs inside the healthcare use case (``examples.healthcare``), once a
challenger is staged.
"""

from __future__ import annotations

from typing import Any

from blocks.policy import ApprovalPolicy, MetricGate, StagePolicy
from examples.serving_helpers import reviewers
from flows.promotion import promote_model
from storage.audit import AuditLog
from storage.registry.approvals import ApprovalStore
from storage.registry.core import Registry

MODEL = "breast-cancer"
POLICY = ApprovalPolicy(
    stages={
        "production": StagePolicy(
            required_approvals=2, alias="champion", gates=[MetricGate(metric="auc_roc", threshold=0.95)]
        )
    }
)
REVIEWS = [("bo", "validation metrics hold on the holdout"), ("cy", "clinical risk review passed")]


def main() -> dict[str, Any]:
    """Promote the challenger to production through two approvals."""
    registry = Registry.from_settings()
    challenger = registry.get_version(MODEL, "@challenger")
    thread = reviewers(ApprovalStore(registry), MODEL, challenger.number, REVIEWS)
    result = promote_model(
        MODEL,
        str(challenger.number),
        "production",
        requested_by="ana",
        reason="challenger won the comparison",
        policy=POLICY,
        poll_interval_seconds=1,
    )
    thread.join(60)
    champion = registry.get_version(MODEL, "@champion")
    audit = AuditLog(registry.db).verify()
    print(f"request {result['id']}: {result['status']} with {result['approvals']} approvals")
    print(f"champion: {MODEL} version {champion.number} ({champion.stage})")
    print(f"audit chain intact: {audit.ok} ({audit.checked} entries)")
    if result["status"] != "promoted" or champion.number != challenger.number or not audit.ok:
        raise SystemExit("promotion walk-through failed")
    return result


if __name__ == "__main__":
    main()
