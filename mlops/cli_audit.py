"""``mlops audit``: verify and read the tamper-evident audit log."""

from __future__ import annotations

from typing import Annotated

import typer

from mlops import _render as render
from mlops._cli_common import JsonOpt, fail, open_audit_log, say
from storage.errors import ValidationError

audit_app = typer.Typer(no_args_is_help=True, help="The tamper-evident audit log.")


# ------------------------------------------------------------------ audit
@audit_app.command("verify")
def verify_audit(as_json: JsonOpt = False) -> None:
    """Recompute the audit log's hash chain; exit code 1 at the first bad entry."""
    with open_audit_log() as log:
        report = log.verify()
    if as_json:
        render.emit_json(report.to_dict())
    if not report.ok:
        fail(f"audit chain broken at entry {report.first_bad_seq}: {report.problem}")
    if not as_json:
        say(f"audit chain intact: {report.checked} entries")


@audit_app.command("log")
def audit_log(
    entity_type: Annotated[str | None, typer.Option(help="model or model_version.")] = None,
    entity_id: Annotated[str | None, typer.Option(help="e.g. fraud or fraud/3.")] = None,
    action: Annotated[str | None, typer.Option(help="e.g. version.stage.")] = None,
    after: Annotated[int, typer.Option(help="Only entries after this sequence number.")] = 0,
    limit: Annotated[int, typer.Option(help="At most this many entries.")] = 100,
    as_json: JsonOpt = False,
) -> None:
    """List audit entries in order, filtered."""
    if limit < 1:
        raise ValidationError(f"limit {limit} must be at least 1")
    if after < 0:
        raise ValidationError(f"after {after} must be 0 or more")
    with open_audit_log() as log:
        entries = log.entries(
            entity_type=entity_type, entity_id=entity_id, action=action, after_seq=after, limit=limit
        )
    if as_json:
        render.emit_json([e.to_dict() for e in entries])
    else:
        render.console().print(render.audit_table(entries))
