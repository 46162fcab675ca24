"""The ``mlops`` command through the platform service: which commands work remotely, and their backends.

With ``MLOPS_API_URL`` set (and ``MLOPS_API_KEY``), the registry, approvals,
reviewers, audit, lineage reads and keys commands talk to ``mlops server``
and need no database URL and no artifact store. The key's owner is who acts:
an ``--actor`` or ``--reviewer`` naming someone else is refused. Commands that
work on this machine's database or files (train, serve, up, features, ...)
are refused with an error naming ``MLOPS_API_URL``, before they open anything.

The backends keep the local stores' method names, so command bodies read the
same either way: :class:`RemoteApprovals` for
:class:`~storage.registry.approvals.ApprovalStore`, :class:`RemoteAuditLog`
for :class:`~storage.audit.AuditLog`, :class:`RemoteLineage` for
:class:`~storage.governance.lineage.LineageStore`.

Example:
    >>> remote_ready(("registry", "versions")), remote_ready(("lineage", "register"))
    (True, False)
"""

from __future__ import annotations

import builtins
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

from storage.audit import AuditEntry, AuditReport
from storage.errors import ValidationError
from storage.governance.lineage import DataAsset, LineageStore
from storage.registry.approvals import ApprovalRequest, ApprovalStore, Decision
from storage.registry.core import Registry

if TYPE_CHECKING:  # the client (httpx) is imported only when a command goes remote
    from mlops.client_extras import ServiceClient

API_URL_ENV = "MLOPS_API_URL"
API_KEY_ENV = "MLOPS_API_KEY"

#: Commands (and groups: every command under them) that work through the platform service.
REMOTE_COMMANDS = frozenset(
    {
        ("registry",),
        ("approvals",),
        ("approve",),
        ("reject",),
        ("reviewers",),
        ("audit",),
        ("lineage", "model"),
        ("lineage", "datasets"),
        ("lineage", "dataset"),
        ("keys",),
        ("whoami",),
    }
)
#: Commands that touch neither the metadata database nor the artifact store of this machine.
ANYWHERE_COMMANDS = frozenset({("version",), ("server",), ("ui",), ("status",), ("down",)})


def api_url() -> str | None:
    """The platform service's URL (``MLOPS_API_URL``), or None to work on the local database."""
    url = os.environ.get(API_URL_ENV, "").strip()
    return url or None


def _covered(path: Sequence[str], table: frozenset[tuple[str, ...]]) -> bool:
    return any(tuple(path[: len(prefix)]) == prefix for prefix in table)


def remote_ready(path: Sequence[str]) -> bool:
    """Whether the command at ``path`` (``("registry", "versions")``) works through the service."""
    return _covered(path, REMOTE_COMMANDS)


def refuse_local_command(path: Sequence[str]) -> None:
    """Raise when ``MLOPS_API_URL`` is set and the command at ``path`` needs this machine's state."""
    url = api_url()
    if url is None or not path or remote_ready(path) or _covered(path, ANYWHERE_COMMANDS):
        return
    raise ValidationError(
        f"`mlops {' '.join(path)}` works on the metadata database and artifact store of the machine it "
        f"runs on, not through the platform service: {API_URL_ENV} is set ({url}). Run it where the "
        f"service's state lives, or unset {API_URL_ENV} to work on a local MLOPS_HOME"
    )


def open_client() -> ServiceClient:
    """The client ``MLOPS_API_URL``, ``MLOPS_API_KEY`` and ``MLOPS_API_CA_BUNDLE`` describe."""
    if not os.environ.get(API_KEY_ENV, "").strip():
        raise ValidationError(
            f"{API_KEY_ENV} is not set: {API_URL_ENV} names a platform service, which needs an API key "
            "(an admin makes one with `mlops keys create OWNER --role ROLE`)"
        )
    from mlops.client_extras import ServiceClient

    return cast(ServiceClient, ServiceClient.from_env())  # from_env builds the class it is called on


def key_owner() -> str:
    """Who ``MLOPS_API_KEY`` belongs to, as the service says."""
    with open_client() as client:
        return client.actor


def check_acting_as(name: str | None, option: str) -> str | None:
    """``name`` when it is the API key's owner (or None); otherwise a ValidationError saying so."""
    if name is None or api_url() is None:
        return name
    owner = key_owner()
    if name != owner:
        raise ValidationError(
            f"{option} {name!r} is not the owner of MLOPS_API_KEY ({owner!r}): through the platform service "
            f"({API_URL_ENV}) you act as the key's owner; leave {option} out, or use {name}'s own key"
        )
    return name


# ------------------------------------------------------------- approvals
class RemoteApprovals:
    """:class:`~storage.registry.approvals.ApprovalStore`'s read and reviewer methods, through the service."""

    def __init__(self, client: ServiceClient) -> None:
        self.client = client

    def list(
        self, *, status: str | None = None, model: str | None = None, limit: int = 100
    ) -> builtins.list[ApprovalRequest]:
        """Requests, newest first."""
        return self.client.approvals(status=status, model=model, limit=limit)

    def get(self, request_id: int) -> ApprovalRequest:
        """One request."""
        return self.client.approval(request_id)

    def reviewers(self) -> dict[str, builtins.list[str]]:
        """Registered reviewers and their roles."""
        return self.client.reviewers()

    def set_reviewer(self, name: str, roles: Sequence[str], *, actor: str | None = None) -> None:
        """Register a reviewer (admin keys; the key's owner is the actor)."""
        self.client.set_reviewer(name, roles)


def approvals_of(registry: Registry | ServiceClient) -> ApprovalStore | RemoteApprovals:
    """The approval store next to ``registry``, or the service's approvals."""
    if isinstance(registry, Registry):
        return ApprovalStore(registry)
    return RemoteApprovals(registry)


def open_promotion_request(
    registry: Registry | ServiceClient,
    model: str,
    ref: str,
    stage: str,
    *,
    requested_by: str | None,
    reason: str,
    policy_block: str | None,
) -> ApprovalRequest:
    """Open a request (gates checked now); through the service the requester is the key's owner."""
    if not isinstance(registry, Registry):
        return registry.request_promotion(model, ref, stage, reason=reason, policy_block=policy_block)
    from tasks.registry.promotion import request_promotion

    return request_promotion(
        registry,
        model,
        ref,
        stage,
        requested_by=requested_by or registry.actor,
        reason=reason,
        policy_block=policy_block,
    )


def decide_request(
    registry: Registry | ServiceClient,
    request_id: int,
    reviewer: str | None,
    decision: Decision,
    comment: str,
) -> tuple[ApprovalRequest, str, str]:
    """Record a decision; returns the request, what happened to a waiting run, and the reviewer.

    Locally ``reviewer`` is required; through the service it is the key's
    owner, and a different name is refused.
    """
    if not isinstance(registry, Registry):
        owner = registry.actor
        if reviewer is not None and reviewer != owner:
            raise ValidationError(
                f"--reviewer {reviewer!r} is not the owner of MLOPS_API_KEY ({owner!r}): through the "
                f"platform service ({API_URL_ENV}) you decide as the key's owner; leave --reviewer out, "
                f"or use {reviewer}'s own key"
            )
        request, run_state = registry.decide(request_id, decision, comment)
        return request, run_state, owner
    if not reviewer:
        raise ValidationError(
            f"--reviewer is required: name who decides (through the platform service, with {API_URL_ENV} "
            "and MLOPS_API_KEY, the key's owner decides)"
        )
    from tasks.registry.promotion import decide

    request, run_state = decide(ApprovalStore(registry), request_id, reviewer, decision, comment)
    return request, run_state, reviewer


# ------------------------------------------------------------- audit, lineage
class RemoteAuditLog:
    """:class:`~storage.audit.AuditLog`'s ``entries`` and ``verify``, through the service."""

    def __init__(self, client: ServiceClient) -> None:
        self.client = client

    def entries(self, **filters: Any) -> list[AuditEntry]:
        """Entries in order (``entity_type``, ``entity_id``, ``action``, ``after_seq``, ``limit``)."""
        return self.client.audit_entries(**filters)

    def verify(self) -> AuditReport:
        """The service re-checks the hash chain."""
        return self.client.verify_audit()


class RemoteLineage:
    """:class:`~storage.governance.lineage.LineageStore`'s reads, through the service."""

    def __init__(self, client: ServiceClient) -> None:
        self.client = client

    def list_datasets(self) -> list[DataAsset]:
        """Registered datasets."""
        return self.client.datasets()

    def dataset_lineage(self, name: str) -> dict[str, Any]:
        """A dataset and the feature groups, model versions and datasets that used it."""
        return self.client.dataset_lineage(name)

    def model_lineage(self, model: str) -> dict[str, Any]:
        """Each version's datasets, feature groups, run and approvals."""
        return self.client.model_lineage(model)


def lineage_of(registry: Registry | ServiceClient) -> LineageStore | RemoteLineage:
    """The lineage store next to ``registry``, or the service's lineage reads."""
    if isinstance(registry, Registry):
        return LineageStore(registry)
    return RemoteLineage(registry)
