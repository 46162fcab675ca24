"""``mlops approve | reject | approvals | reviewers`` and ``mlops registry rollback``.

Decisions made here are recorded in the metadata database; a ``promote-model``
run that waits for the request is then resumed through Prefect's API and
carries out the promotion. A request opened from the command line (no run
waits) is carried out here once it has enough approvals. Through the platform
service (``MLOPS_API_URL``) the service does all of this, and the API key's
owner is the reviewer.
"""

from __future__ import annotations

import contextlib
from typing import Annotated

import typer
from rich.table import Table

from mlops import _render as render
from mlops._cli_common import ActorOpt, JsonOpt, NameArg, ReasonOpt, open_registry, say
from mlops._remote import approvals_of, decide_request, open_promotion_request
from storage.registry.approvals import ApprovalRequest, Decision

approvals_app = typer.Typer(no_args_is_help=True, help="Approval requests for stage moves.")
reviewers_app = typer.Typer(no_args_is_help=True, help="Reviewers and their roles.")

RequestArg = Annotated[int, typer.Argument(help="Approval request id.")]
ReviewerOpt = Annotated[
    str | None,
    typer.Option(
        "--reviewer",
        help="Your reviewer name (required locally; through the platform service, the API key's owner).",
    ),
]
CommentOpt = Annotated[str, typer.Option("--comment", help="Why: kept in the audit log.")]
PolicyOpt = Annotated[str | None, typer.Option("--policy-block", help="Saved MLOps Approval Policy block.")]


def _requests_table(requests: list[ApprovalRequest]) -> Table:
    table = Table(title="approval requests")
    for column in ("id", "model", "version", "to stage", "status", "approvals", "requested by", "expires"):
        table.add_column(column)
    for r in requests:
        table.add_row(
            str(r.id),
            render.text(r.model),
            str(r.version),
            r.target_stage,
            r.status,
            f"{r.approvals}/{r.required_approvals}",
            render.text(r.requested_by),
            f"{r.expires_at:%Y-%m-%d %H:%M}" if r.expires_at else "-",
        )
    return table


def _decide(request_id: int, reviewer: str | None, decision: Decision, comment: str, as_json: bool) -> None:
    with open_registry() as registry:
        request, run_state, reviewer = decide_request(registry, request_id, reviewer, decision, comment)
    if as_json:
        render.emit_json(request.to_dict() | {"flow_run": run_state})
        return
    say(
        f"{reviewer} {decision}d request {request.id}: {request.status} ({request.approvals}/"
        f"{request.required_approvals} approvals)"
    )
    if run_state == "resumed":
        say(f"resumed the waiting promote-model run {request.flow_run_id}")
    elif run_state == "unreachable":
        say(
            f"promote-model run {request.flow_run_id} waits for this request but no Prefect API is "
            "configured here (PREFECT_API_URL); it will see the decision when it next wakes"
        )


def approve(
    request_id: RequestArg, reviewer: ReviewerOpt = None, comment: CommentOpt = "", as_json: JsonOpt = False
) -> None:
    """Approve a pending request (resumes the promote-model run that waits for it)."""
    _decide(request_id, reviewer, "approve", comment, as_json)


def reject(
    request_id: RequestArg, reviewer: ReviewerOpt = None, comment: CommentOpt = "", as_json: JsonOpt = False
) -> None:
    """Reject a pending request: one rejection ends it."""
    _decide(request_id, reviewer, "reject", comment, as_json)


@approvals_app.command("request")
def request_promotion(
    name: NameArg,
    ref: Annotated[str, typer.Argument(help="Version to move (REF).")],
    stage: Annotated[str, typer.Option("--stage", help="Target stage.")],
    reason: ReasonOpt = "",
    policy_block: PolicyOpt = None,
    actor: ActorOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Open a request without a flow: gates are checked now, reviewers decide with `mlops approve`."""
    with open_registry() as registry:
        request = open_promotion_request(
            registry, name, ref, stage, requested_by=actor, reason=reason, policy_block=policy_block
        )
    if as_json:
        render.emit_json(request.to_dict())
        return
    say(f"request {request.id}: {name} version {request.version} → {stage}, {request.status}")
    for gate in request.gates:
        say(f"  gate {gate.name}: {'pass' if gate.passed else 'FAIL'} — {gate.detail}")


@approvals_app.command("list")
def list_requests(
    pending: Annotated[
        bool, typer.Option("--pending", help="Only requests that wait for reviewers.")
    ] = False,
    model: Annotated[str | None, typer.Option(help="Only this model's requests.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """List approval requests, newest first."""
    with open_registry() as registry:
        requests = approvals_of(registry).list(status="pending" if pending else None, model=model)
    if as_json:
        render.emit_json([r.to_dict() for r in requests])
    else:
        render.console().print(_requests_table(requests))


@approvals_app.command("show")
def show_request(request_id: RequestArg, as_json: JsonOpt = False) -> None:
    """Show one request: gates, reviewers, outcome."""
    from tasks.registry.promotion import promotion_markdown

    with open_registry() as registry:
        request = approvals_of(registry).get(request_id)
    if as_json:
        render.emit_json(request.to_dict())
    else:
        render.console().print(promotion_markdown(request), markup=False)


@reviewers_app.command("add")
def add_reviewer(
    name: Annotated[str, typer.Argument(help="Reviewer name.")],
    role: Annotated[list[str], typer.Option("--role", help="Role (repeatable), e.g. ml-lead.")],
    actor: ActorOpt = None,
) -> None:
    """Register a reviewer with roles."""
    with open_registry() as registry:
        approvals_of(registry).set_reviewer(name, role, actor=actor)
    say(f"reviewer {name}: {', '.join(role)}")


@reviewers_app.command("list")
def list_reviewers(as_json: JsonOpt = False) -> None:
    """List reviewers and their roles."""
    with open_registry() as registry:
        found = approvals_of(registry).reviewers()
    if as_json:
        render.emit_json(found)
        return
    for name, roles in sorted(found.items()):
        say(f"{name}: {', '.join(roles) or '-'}")


def rollback(
    name: NameArg,
    stage: Annotated[str, typer.Option("--stage", help="Stage to roll back.")] = "production",
    alias: Annotated[
        str, typer.Option("--alias", help="Alias whose history names the previous version.")
    ] = "champion",
    reason: ReasonOpt = "",
    actor: ActorOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Return a stage and its alias to the version that held them before."""
    from tasks.registry.promotion import emit_rolled_back_event

    with open_registry() as registry:
        who = actor or registry.actor
        done = registry.rollback(name, stage=stage, alias=alias, reason=reason, actor=who)
    with contextlib.suppress(Exception):  # the rollback is done and audited; events need a Prefect API
        emit_rolled_back_event(done, who)
    if as_json:
        render.emit_json(done.to_dict())
        return
    say(f"rolled back {name} {stage}: version {done.replaced_version} → version {done.restored_version}")
