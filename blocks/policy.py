"""Approval policy per lifecycle stage: reviewers, roles, expiry, evidence gates.

Plain pydantic models (the Block that carries them is in
:mod:`blocks.approvals`). Without a saved policy the defaults apply: one
approval for staging, two for production (which also moves the ``champion``
alias), no self-approval, requests expire after 72 hours.

Example:
    >>> from blocks.policy import ApprovalPolicy, MetricGate, StagePolicy
    >>> policy = ApprovalPolicy()
    >>> policy.for_stage("production").required_approvals
    2
    >>> strict = ApprovalPolicy(stages={"production": StagePolicy(
    ...     required_approvals=3, gates=[MetricGate(metric="auc_roc", threshold=0.9)])})
    >>> strict.for_stage("production").gates[0].name
    'auc_roc >= 0.9'
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

Operator = Literal[">=", "<=", ">", "<"]


class MetricGate(BaseModel):
    """The version's metric must meet a threshold, e.g. ``auc_roc >= 0.9``."""

    kind: Literal["metric"] = "metric"
    metric: str
    op: Operator = ">="
    threshold: float

    @property
    def name(self) -> str:
        return f"{self.metric} {self.op} {self.threshold:g}"


class ChampionGate(BaseModel):
    """The version must beat the current holder of ``alias`` on ``metric``."""

    kind: Literal["beats_champion"] = "beats_champion"
    metric: str
    direction: Literal["max", "min"] = "max"
    min_improvement: float = Field(default=0.0, ge=0)
    alias: str = "champion"

    @property
    def name(self) -> str:
        return f"beats {self.alias} on {self.metric} by >= {self.min_improvement:g}"


class EvidenceGate(BaseModel):
    """A recent, passing report of a kind (bias, compliance) must exist for the version."""

    kind: Literal["bias_report", "compliance"]
    max_age_days: float = Field(default=30.0, gt=0)
    framework: str | None = None

    @property
    def name(self) -> str:
        suffix = f" ({self.framework})" if self.framework else ""
        return f"{self.kind.replace('_', ' ')}{suffix} passes, at most {self.max_age_days:g} days old"


Gate = Annotated[MetricGate | ChampionGate | EvidenceGate, Field(discriminator="kind")]


class StagePolicy(BaseModel):
    """What moving a version into one stage requires."""

    required_approvals: int = Field(default=1, ge=1)
    allowed_roles: list[str] = Field(default_factory=list)
    allow_self_approval: bool = False
    expiry_hours: float = Field(default=72.0, gt=0)
    alias: str | None = None
    gates: list[Gate] = Field(default_factory=list)


def _default_stages() -> dict[str, StagePolicy]:
    return {
        "development": StagePolicy(),
        "staging": StagePolicy(required_approvals=1),
        "production": StagePolicy(required_approvals=2, alias="champion"),
        "archived": StagePolicy(),
    }


class ApprovalPolicy(BaseModel):
    """Stage policies by target stage."""

    stages: dict[str, StagePolicy] = Field(default_factory=_default_stages)

    def for_stage(self, stage: str) -> StagePolicy:
        """The policy for moving into ``stage`` (the default policy when unset)."""
        return self.stages.get(stage) or _default_stages().get(stage) or StagePolicy()
