"""Approval requests for stage moves: N-of-M reviewers, roles, expiry, gates.

A request is opened with its evidence-gate results; reviewers approve or
reject it (never their own request unless the policy allows it, and only with
an allowed role); it ends approved, rejected (one rejection is enough) or
expired. Applying an approved request moves the stage, demotes the previous
holder, moves the alias, marks the request promoted and writes the audit
entries in one transaction.

Example:
    >>> import tempfile
    >>> from blocks.policy import StagePolicy
    >>> from storage.registry.core import Registry
    >>> from storage.registry.approvals import ApprovalStore, GateOutcome
    >>> home = tempfile.mkdtemp()
    >>> reg = Registry.open(f"sqlite:///{home}/m.db", f"{home}/a", actor="ana")
    >>> _ = reg.create_model("fraud"); _ = reg.create_version("fraud", framework="sklearn")
    >>> store = ApprovalStore(reg)
    >>> req = store.open_request("fraud", 1, "staging", requested_by="ana",
    ...                          policy=StagePolicy(required_approvals=1), gates=[])
    >>> store.decide(req.id, "bo", "approve").status
    'approved'
    >>> store.apply(req.id, actor="bo").status
    'promoted'
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from blocks.policy import StagePolicy
from storage import schema as t
from storage.audit import append_entry
from storage.db import inserted_id
from storage.errors import AlreadyExistsError, NotFoundError, TransitionError, ValidationError
from storage.registry.core import Registry
from storage.registry.reads import VersionRef
from storage.registry.records import Record

Decision = Literal["approve", "reject"]
PENDING, APPROVED, PROMOTED = "pending", "approved", "promoted"
REJECTED, EXPIRED, GATES_FAILED, FAILED = "rejected", "expired", "gates_failed", "failed"
FINAL = frozenset({PROMOTED, REJECTED, EXPIRED, GATES_FAILED, FAILED})


@dataclass(frozen=True)
class GateOutcome(Record):
    """The result of one evidence gate."""

    name: str
    passed: bool
    detail: str


@dataclass(frozen=True)
class ReviewDecision(Record):
    """One reviewer's decision on a request."""

    reviewer: str
    decision: str
    comment: str
    at: datetime


@dataclass(frozen=True)
class ApprovalRequest(Record):
    """A request to move a version into a stage, with its gates and decisions."""

    id: int
    model: str
    version: int
    target_stage: str
    requested_by: str
    reason: str
    required_approvals: int
    allowed_roles: list[str]
    allow_self_approval: bool
    alias: str | None
    status: str
    outcome: str
    flow_run_id: str | None
    created_at: datetime
    expires_at: datetime | None
    decided_at: datetime | None
    gates: list[GateOutcome]
    decisions: list[ReviewDecision]

    @property
    def approvals(self) -> int:
        """How many reviewers approved."""
        return sum(d.decision == "approve" for d in self.decisions)


class ApprovalStore:
    """Approval requests and reviewers in the registry's metadata database."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.db = registry.db

    # -------------------------------------------------------------- reviewers
    def set_reviewer(self, name: str, roles: Sequence[str], *, actor: str | None = None) -> None:
        """Register a reviewer with roles (replacing earlier roles)."""
        if not name or not isinstance(name, str):
            raise ValidationError(f"reviewer name {name!r} must be a non-empty string")
        who = actor or self.registry.actor
        with self.db.write() as conn:
            old = conn.execute(sa.select(t.reviewers.c.roles).where(t.reviewers.c.name == name)).scalar()
            conn.execute(t.reviewers.delete().where(t.reviewers.c.name == name))
            conn.execute(
                t.reviewers.insert().values(name=name, roles=list(roles), added_by=who, added_at=t.utcnow())
            )
            append_entry(
                conn,
                actor=who,
                action="reviewer.set",
                entity_type="reviewer",
                entity_id=name,
                before={"roles": old},
                after={"roles": list(roles)},
            )

    def reviewers(self) -> dict[str, list[str]]:
        """Every registered reviewer and their roles."""
        with self.db.read() as conn:
            return {r.name: list(r.roles) for r in conn.execute(sa.select(t.reviewers))}

    # --------------------------------------------------------------- requests
    def open_request(
        self,
        model: str,
        version: VersionRef,
        target_stage: str,
        *,
        requested_by: str,
        policy: StagePolicy,
        gates: Sequence[GateOutcome],
        reason: str = "",
        flow_run_id: str | None = None,
    ) -> ApprovalRequest:
        """Open a request; it starts ``gates_failed`` when any gate failed, else ``pending``.

        Raises TransitionError when the stage move is not allowed, so an
        illegal request is never opened.
        """
        failed = [g for g in gates if not g.passed]
        status = GATES_FAILED if failed else PENDING
        outcome = "; ".join(f"gate '{g.name}' failed: {g.detail}" for g in failed)
        now = t.utcnow()
        mv = t.model_versions.c
        with self.db.write() as conn:
            model_id = self.registry._model_id(conn, model, lock=True)
            version_id = self.registry._version_id(conn, model_id, model, version)
            number, stage = conn.execute(sa.select(mv.number, mv.stage).where(mv.id == version_id)).one()
            self.registry.check_transition(model, number, stage, target_stage)
            request_id = inserted_id(
                conn,
                t.approval_requests.insert().values(
                    model_id=model_id,
                    version_id=version_id,
                    target_stage=target_stage,
                    requested_by=requested_by,
                    reason=reason,
                    required_approvals=policy.required_approvals,
                    allowed_roles=list(policy.allowed_roles),
                    alias=policy.alias,
                    allow_self_approval=policy.allow_self_approval,
                    status=status,
                    outcome=outcome,
                    flow_run_id=flow_run_id,
                    created_at=now,
                    expires_at=now + timedelta(hours=policy.expiry_hours),
                    decided_at=now if failed else None,
                ),
            )
            if gates:
                conn.execute(
                    t.gate_results.insert(),
                    [
                        {
                            "request_id": request_id,
                            "name": g.name,
                            "passed": g.passed,
                            "detail": g.detail,
                            "at": now,
                        }
                        for g in gates
                    ],
                )
            append_entry(
                conn,
                actor=requested_by,
                action="approval.request",
                entity_type="approval_request",
                entity_id=str(request_id),
                after={
                    "model": model,
                    "version": number,
                    "stage": target_stage,
                    "status": status,
                    "gates": {g.name: g.passed for g in gates},
                },
            )
            # read back in the same transaction: a connection lost after the commit cannot turn a
            # request that was opened into an error that invites opening it again
            return self._load(conn, request_id)

    def decide(
        self, request_id: int, reviewer: str, decision: Decision, comment: str = ""
    ) -> ApprovalRequest:
        """Record one reviewer's decision and return the request as it now stands.

        A reviewer repeating the same decision is a no-op (a retried call);
        changing one's decision, deciding on one's own request, deciding without
        an allowed role, or deciding after the request ended are refused.
        """
        if decision not in ("approve", "reject"):
            raise ValidationError(f"decision {decision!r} must be 'approve' or 'reject'")
        if not reviewer or not isinstance(reviewer, str):
            raise ValidationError(f"reviewer {reviewer!r} must be a non-empty name")
        self.expire_if_due(request_id)  # committed even when this decision is refused
        with self.db.write() as conn:
            req = self._locked(conn, request_id)
            earlier = conn.execute(
                sa.select(t.approval_decisions.c.decision).where(
                    t.approval_decisions.c.request_id == request_id,
                    t.approval_decisions.c.reviewer == reviewer,
                )
            ).scalar()
            if earlier == decision:
                return self._load(conn, request_id)
            if earlier is not None:
                raise AlreadyExistsError(f"{reviewer} already decided '{earlier}' on request {request_id}")
            status = self._expire_if_due(conn, req)
            if status != PENDING:
                raise TransitionError(f"request {request_id} is {status}, not pending: no more decisions")
            self._check_reviewer(conn, req, reviewer)
            now = t.utcnow()
            conn.execute(
                t.approval_decisions.insert().values(
                    request_id=request_id, reviewer=reviewer, decision=decision, comment=comment, at=now
                )
            )
            approvals = conn.execute(
                sa.select(sa.func.count()).where(
                    t.approval_decisions.c.request_id == request_id,
                    t.approval_decisions.c.decision == "approve",
                )
            ).scalar_one()
            status, outcome = PENDING, ""
            if decision == "reject":
                status, outcome = REJECTED, f"rejected by {reviewer}: {comment}".rstrip(": ")
            elif approvals >= req.required_approvals:
                status, outcome = APPROVED, f"{approvals} of {req.required_approvals} approvals"
            if status != PENDING:
                self._finish(conn, request_id, status, outcome, reviewer)
            append_entry(
                conn,
                actor=reviewer,
                action=f"approval.{decision}",
                entity_type="approval_request",
                entity_id=str(request_id),
                after={"comment": comment, "status": status},
            )
            return self._load(conn, request_id)

    def _check_reviewer(self, conn: Connection, req: Any, reviewer: str) -> None:
        if reviewer == req.requested_by and not req.allow_self_approval:
            raise ValidationError(
                f"self-approval is not allowed: {reviewer} requested this promotion (request {req.id})"
            )
        allowed = req.allowed_roles
        if allowed:
            roles = conn.execute(
                sa.select(t.reviewers.c.roles).where(t.reviewers.c.name == reviewer)
            ).scalar()
            if not roles or not set(roles) & set(allowed):
                raise ValidationError(
                    f"{reviewer} may not review request {req.id}: needs one of the roles "
                    f"{', '.join(allowed)}, has {', '.join(roles or []) or 'none'}"
                )

    def expire_if_due(self, request_id: int) -> ApprovalRequest:
        """Mark a pending request expired once its expiry has passed; return it."""
        with self.db.write() as conn:
            self._expire_if_due(conn, self._locked(conn, request_id))
            return self._load(conn, request_id)

    def _expire_if_due(self, conn: Connection, req: Any) -> str:
        """Expire ``req`` when due; returns its status afterwards."""
        expires = req.expires_at
        if req.status == PENDING and expires is not None and t.utcnow() >= expires:
            self._finish(conn, req.id, EXPIRED, f"expired at {expires.isoformat()}", "mlops")
            append_entry(
                conn,
                actor="mlops",
                action="approval.expire",
                entity_type="approval_request",
                entity_id=str(req.id),
                after={"status": EXPIRED},
            )
            return EXPIRED
        return str(req.status)

    def apply(self, request_id: int, *, actor: str) -> ApprovalRequest:
        """Carry out an approved request: stage, demotion, alias, audit — one transaction."""
        try:
            with self.db.write() as conn:
                req = self._locked(conn, request_id)
                if req.status != APPROVED:
                    raise TransitionError(f"request {request_id} is {req.status}, not approved")
                model = conn.execute(
                    sa.select(t.models.c.name).where(t.models.c.id == req.model_id)
                ).scalar_one()
                number = self.registry._number(conn, req.version_id)
                self.registry.move_stage(
                    conn,
                    model,
                    number,
                    req.target_stage,
                    actor=actor,
                    alias=req.alias,
                    reason=f"approval request {request_id}: {req.reason}".rstrip(": "),
                )
                conn.execute(
                    t.approval_requests.update()
                    .where(t.approval_requests.c.id == request_id)
                    .values(status=PROMOTED)
                )
                append_entry(
                    conn,
                    actor=actor,
                    action="approval.apply",
                    entity_type="approval_request",
                    entity_id=str(request_id),
                    after={"status": PROMOTED},
                )
                return self._load(conn, request_id)  # in the transaction, as open_request
        except TransitionError as exc:
            if "not approved" in str(exc):
                raise
            self._fail(request_id, str(exc), actor)
            raise

    def _fail(self, request_id: int, why: str, actor: str) -> None:
        with self.db.write() as conn:
            self._finish(conn, request_id, FAILED, why, actor)
            append_entry(
                conn,
                actor=actor,
                action="approval.fail",
                entity_type="approval_request",
                entity_id=str(request_id),
                after={"status": FAILED, "why": why},
            )

    def _finish(self, conn: Connection, request_id: int, status: str, outcome: str, actor: str) -> None:
        conn.execute(
            t.approval_requests.update()
            .where(t.approval_requests.c.id == request_id)
            .values(status=status, outcome=outcome, decided_at=t.utcnow())
        )

    # ------------------------------------------------------------------ reads
    def _locked(self, conn: Connection, request_id: int) -> Any:
        row = conn.execute(
            sa.select(t.approval_requests).where(t.approval_requests.c.id == request_id).with_for_update()
        ).first()
        if row is None:
            raise NotFoundError(f"approval request {request_id} does not exist")
        return row

    def get(self, request_id: int) -> ApprovalRequest:
        """One request with its gates and decisions."""
        with self.db.read() as conn:
            return self._load(conn, request_id)

    def list(
        self, *, status: str | None = None, model: str | None = None, limit: int = 100
    ) -> list[ApprovalRequest]:
        """Requests, newest first, filtered by status (``pending``...) and model."""
        r = t.approval_requests.c
        query = sa.select(r.id).order_by(r.id.desc()).limit(limit)
        if status is not None:
            query = query.where(r.status == status)
        with self.db.read() as conn:
            if model is not None:
                query = query.where(r.model_id == self.registry._model_id(conn, model))
            return [self._load(conn, i) for i in conn.execute(query).scalars()]

    def _load(self, conn: Connection, request_id: int) -> ApprovalRequest:
        r, mv = t.approval_requests.c, t.model_versions.c
        row = conn.execute(
            sa.select(t.approval_requests, t.models.c.name.label("model"), mv.number)
            .join(t.models, t.models.c.id == r.model_id)
            .join(t.model_versions, mv.id == r.version_id)
            .where(r.id == request_id)
        ).first()
        if row is None:
            raise NotFoundError(f"approval request {request_id} does not exist")
        gates = [
            GateOutcome(g.name, g.passed, g.detail)
            for g in conn.execute(
                sa.select(t.gate_results)
                .where(t.gate_results.c.request_id == request_id)
                .order_by(t.gate_results.c.id)
            )
        ]
        decisions = [
            ReviewDecision(d.reviewer, d.decision, d.comment, d.at)
            for d in conn.execute(
                sa.select(t.approval_decisions)
                .where(t.approval_decisions.c.request_id == request_id)
                .order_by(t.approval_decisions.c.id)
            )
        ]
        return ApprovalRequest(
            id=row.id,
            model=row.model,
            version=row.number,
            target_stage=row.target_stage,
            requested_by=row.requested_by,
            reason=row.reason,
            required_approvals=row.required_approvals,
            allowed_roles=list(row.allowed_roles),
            allow_self_approval=row.allow_self_approval,
            alias=row.alias,
            status=row.status,
            outcome=row.outcome,
            flow_run_id=row.flow_run_id,
            created_at=row.created_at,
            expires_at=row.expires_at,
            decided_at=row.decided_at,
            gates=gates,
            decisions=decisions,
        )
