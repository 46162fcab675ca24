"""The Prefect Block that carries the approval policy.

Save an :class:`ApprovalPolicyBlock` in the Prefect UI (or in code) and pass its
name to the ``promote-model`` flow as ``policy_block``.

Example:
    >>> from blocks.approvals import ApprovalPolicyBlock
    >>> ApprovalPolicyBlock().policy.for_stage("production").alias
    'champion'
"""

from __future__ import annotations

from prefect.blocks.core import Block
from pydantic import Field

from blocks.policy import ApprovalPolicy


class ApprovalPolicyBlock(Block):
    """The approval policy used by the ``promote-model`` flow."""

    _block_type_name = "MLOps Approval Policy"
    _block_type_slug = "mlops-approval-policy"
    _description = "Required approvals, reviewer roles, expiry and evidence gates per stage."

    policy: ApprovalPolicy = Field(default_factory=ApprovalPolicy)
