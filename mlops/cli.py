"""The ``mlops`` command: the model registry and the audit log from a shell.

Every read command takes ``--json`` and then prints only JSON on stdout;
without it, it prints tables for people. Errors the platform raises on purpose
(:class:`storage.errors.MlopsError`) become ``error: <message>`` on stderr and
exit code 1, without a traceback.

Example::

    mlops registry create fraud --owner risk-team --tag team=risk
    mlops registry register fraud --framework sklearn --file model.skops --metric auc=0.93
    mlops registry stage fraud 1 staging --reason "passed offline eval"
    mlops registry versions fraud --metric "auc>=0.9" --json
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Annotated, Any, NoReturn, cast

import typer
from rich.text import Text
from typer.core import TyperGroup

from blocks.settings import get_settings
from mlops import _render as render
from storage.audit import AuditLog
from storage.compare import Direction
from storage.db import Database
from storage.errors import MlopsError, ValidationError
from storage.records import FRAMEWORKS
from storage.registry import Registry
from storage.semver import Bump

PACKAGE = "dwcp-mlops"


class _ErrorReportingGroup(TyperGroup):
    """The root group: turns expected errors into ``error: ...`` and exit code 1."""

    # ``ctx`` is typer's vendored click Context; typer does not export that base class.
    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except (MlopsError, OSError) as exc:
            fail(str(exc))


app = typer.Typer(
    cls=_ErrorReportingGroup,
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    help="DWCP MLOps: the model registry and audit log from the command line.",
)
registry_app = typer.Typer(
    no_args_is_help=True, help="Models and versions: register, search, compare, promote, verify."
)
audit_app = typer.Typer(no_args_is_help=True, help="The tamper-evident audit log.")
app.add_typer(registry_app, name="registry")
app.add_typer(audit_app, name="audit")

# ------------------------------------------------------------ shared options
NameArg = Annotated[str, typer.Argument(help="Model name.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print only JSON on stdout.")]
ActorOpt = Annotated[
    str | None, typer.Option("--actor", help="Who makes the change (default: $MLOPS_USER or the login name).")
]
TagsOpt = Annotated[list[str] | None, typer.Option("--tag", help="Tag as key=value (repeatable).")]
TagFilterOpt = Annotated[
    list[str] | None,
    typer.Option("--tag", help="Only with this tag: key=value, or key for any value (repeatable)."),
]
PageSizeOpt = Annotated[int, typer.Option("--page-size", help="Results per page.")]
PageTokenOpt = Annotated[str | None, typer.Option("--page-token", help="next_token of the previous page.")]
ReasonOpt = Annotated[str, typer.Option("--reason", help="Why, recorded in the history and audit log.")]


# ------------------------------------------------------------------ helpers
def fail(message: str, code: int = 1) -> NoReturn:
    """Print ``error: message`` on stderr and exit with ``code``."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def split_pair(item: str, what: str) -> tuple[str, str]:
    """Split ``key=value``; raise ValidationError naming ``item`` when malformed."""
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise ValidationError(f"{what} {item!r} is malformed: expected key=value")
    return key.strip(), value


def parse_pairs(items: Sequence[str] | None, what: str) -> dict[str, str]:
    """``["a=1", "b=x"]`` → ``{"a": "1", "b": "x"}``; a repeated key is an error."""
    pairs: dict[str, str] = {}
    for item in items or ():
        key, value = split_pair(item, what)
        if key in pairs:
            raise ValidationError(f"{what} {key!r} is given more than once")
        pairs[key] = value
    return pairs


def parse_tag_filters(items: Sequence[str] | None) -> dict[str, str | None]:
    """Tag filters: ``key=value`` matches that value, a bare ``key`` any value."""
    filters: dict[str, str | None] = {}
    for item in items or ():
        if "=" in item:
            key, value = split_pair(item, "tag filter")
            filters[key] = value
        elif item.strip():
            filters[item.strip()] = None
        else:
            raise ValidationError("tag filter '' is empty: expected key=value or key")
    return filters


def parse_metrics(items: Sequence[str] | None) -> dict[str, Any]:
    """Metric values as floats; a non-number is passed through for storage to reject by name."""
    metrics: dict[str, Any] = {}
    for key, raw in parse_pairs(items, "metric").items():
        try:
            metrics[key] = float(raw)
        except ValueError:
            metrics[key] = raw
    return metrics


def parse_params(items: Sequence[str] | None) -> dict[str, Any]:
    """Hyperparameters: JSON when the value parses (``5``, ``true``, ``[1,2]``), else the string."""
    params: dict[str, Any] = {}
    for key, raw in parse_pairs(items, "param").items():
        try:
            params[key] = json.loads(raw)
        except ValueError:
            params[key] = raw
    return params


def parse_files(items: Sequence[str] | None) -> dict[str, Path]:
    """Artifact files: ``PATH`` (named by its basename) or ``name=PATH``."""
    files: dict[str, Path] = {}
    for item in items or ():
        if "=" in item and not Path(item).exists():
            name, raw = split_pair(item, "file")
            path = Path(raw)
        else:
            path = Path(item)
            name = path.name
        if not path.is_file():
            raise ValidationError(f"artifact file {str(path)!r} does not exist or is not a file")
        if name in files:
            raise ValidationError(f"artifact name {name!r} is given more than once")
        files[name] = path
    return files


def check_choice(value: str, choices: Sequence[str], what: str) -> str:
    """``value`` when it is one of ``choices``; otherwise a ValidationError listing them."""
    if value not in choices:
        raise ValidationError(f"{what} {value!r} is not one of {', '.join(choices)}")
    return value


@contextmanager
def open_registry() -> Iterator[Registry]:
    """The registry ``MLOPS_*`` points at, closed again after the command."""
    registry = Registry.from_settings()
    try:
        yield registry
    finally:
        registry.db.dispose()


@contextmanager
def open_audit_log() -> Iterator[AuditLog]:
    """The audit log of the metadata database ``MLOPS_*`` points at."""
    db = Database(get_settings().resolved_database_url())
    try:
        yield AuditLog(db)
    finally:
        db.dispose()


def say(message: str) -> None:
    """One plain line for people on stdout (no rich markup)."""
    render.console().print(Text(message))


# ------------------------------------------------------------------- root
@app.command("version")
def version_cmd(as_json: JsonOpt = False) -> None:
    """Print the installed package version."""
    installed = metadata.version(PACKAGE)
    if as_json:
        render.emit_json({"package": PACKAGE, "version": installed})
    else:
        say(f"{PACKAGE} {installed}")


# ----------------------------------------------------------------- models
@registry_app.command("create")
def create_model(
    name: NameArg,
    description: Annotated[str, typer.Option(help="What the model does.")] = "",
    owner: Annotated[str | None, typer.Option(help="Owning team or person.")] = None,
    tag: TagsOpt = None,
    actor: ActorOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Register a new model name."""
    tags = parse_pairs(tag, "tag")
    with open_registry() as reg:
        model = reg.create_model(name, description=description, owner=owner, tags=tags, actor=actor)
    if as_json:
        render.emit_json(model.to_dict())
    else:
        say(f"created model {model.name}")


@registry_app.command("list")
def list_models(
    name_contains: Annotated[str | None, typer.Option(help="Only names containing this.")] = None,
    tag: TagFilterOpt = None,
    page_size: PageSizeOpt = 100,
    page_token: PageTokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List models by name."""
    with open_registry() as reg:
        page = reg.list_models(
            name_contains=name_contains,
            tags=parse_tag_filters(tag),
            page_size=page_size,
            page_token=page_token,
        )
    if as_json:
        render.emit_json(page.to_dict())
        return
    render.console().print(render.models_table(page.items))
    render.page_hint(page.next_token)


@registry_app.command("show")
def show_model(name: NameArg, as_json: JsonOpt = False) -> None:
    """Show a model: tags, aliases and its latest version."""
    with open_registry() as reg:
        model = reg.get_model(name)
        latest = reg.get_version(name, "latest") if model.latest_version is not None else None
    if as_json:
        render.emit_json(model.to_dict())
    else:
        render.console().print(render.model_panel(model, latest))


# --------------------------------------------------------------- versions
@registry_app.command("register")
def register_version(
    name: NameArg,
    framework: Annotated[str, typer.Option(help=f"One of: {', '.join(FRAMEWORKS)}.")],
    file: Annotated[
        list[str] | None,
        typer.Option("--file", help="Artifact PATH (named by its basename) or name=PATH (repeatable)."),
    ] = None,
    metric: Annotated[list[str] | None, typer.Option(help="Metric as key=number (repeatable).")] = None,
    param: Annotated[
        list[str] | None,
        typer.Option(help="Hyperparameter as key=value; JSON values are parsed (repeatable)."),
    ] = None,
    semver: Annotated[str | None, typer.Option(help="Explicit semantic version X.Y.Z.")] = None,
    bump: Annotated[
        str | None, typer.Option(help="Bump the newest semver: major, minor (default) or patch.")
    ] = None,
    dataset_uri: Annotated[str | None, typer.Option(help="Training data location.")] = None,
    dataset_hash: Annotated[str | None, typer.Option(help="Training data content hash.")] = None,
    parent: Annotated[str | None, typer.Option(help="Version this one was derived from (REF).")] = None,
    code_version: Annotated[str | None, typer.Option(help="Code revision that trained it.")] = None,
    flow_run_id: Annotated[str | None, typer.Option(help="Prefect flow run that trained it.")] = None,
    description: Annotated[str, typer.Option(help="What this version is.")] = "",
    changelog: Annotated[str, typer.Option(help="What changed since the parent.")] = "",
    tag: TagsOpt = None,
    actor: ActorOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Register a new version of a model from local files, metrics and parameters."""
    if semver is not None and bump is not None:
        raise ValidationError("give --semver or --bump, not both")
    chosen_bump = cast(Bump, check_choice(bump or "minor", ("major", "minor", "patch"), "bump"))
    artifacts: dict[str, str | bytes | Path] = dict(parse_files(file))
    with open_registry() as reg:
        version = reg.create_version(
            name,
            framework=framework,
            metrics=parse_metrics(metric),
            hyperparameters=parse_params(param),
            artifacts=artifacts,
            semver=semver,
            bump=chosen_bump,
            description=description,
            changelog=changelog,
            tags=parse_pairs(tag, "tag"),
            dataset_uri=dataset_uri,
            dataset_hash=dataset_hash,
            code_version=code_version,
            flow_run_id=flow_run_id,
            parent_version=parent,
            actor=actor,
        )
    if as_json:
        render.emit_json(version.to_dict())
    else:
        say(f"registered {version.model} version {version.number} ({version.semver}) in {version.stage}")
        render.console().print(render.version_detail(version))


@registry_app.command("versions")
def list_versions(
    name: NameArg,
    stage: Annotated[str | None, typer.Option(help="Only versions in this stage.")] = None,
    alias: Annotated[str | None, typer.Option(help="Only the version holding this alias.")] = None,
    tag: TagFilterOpt = None,
    metric: Annotated[
        list[str] | None,
        typer.Option(help="Metric threshold such as 'auc>=0.9' (repeatable, all must hold)."),
    ] = None,
    page_size: PageSizeOpt = 100,
    page_token: PageTokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Search a model's versions, newest first."""
    with open_registry() as reg:
        page = reg.search_versions(
            model=name,
            stage=stage,
            alias=alias,
            tags=parse_tag_filters(tag),
            metrics=list(metric or ()),
            page_size=page_size,
            page_token=page_token,
        )
    if as_json:
        render.emit_json(page.to_dict())
        return
    render.console().print(render.versions_table(page.items, f"{name}: versions"))
    render.page_hint(page.next_token)


@registry_app.command("get")
def get_version(
    name: NameArg,
    ref: Annotated[str, typer.Argument(help="Version: number, semver, @alias, latest or a stage.")],
    as_json: JsonOpt = False,
) -> None:
    """Show one version in full: metrics, parameters, artifacts, lineage."""
    with open_registry() as reg:
        version = reg.get_version(name, ref)
    if as_json:
        render.emit_json(version.to_dict())
    else:
        render.console().print(render.version_detail(version))


@registry_app.command("compare")
def compare_versions(
    name: NameArg,
    refs: Annotated[list[str], typer.Argument(help="Two or more versions to compare.")],
    primary: Annotated[str, typer.Option(help="Metric that decides the winner.")],
    metric: Annotated[
        list[str] | None, typer.Option(help="Metric to show (repeatable; default all).")
    ] = None,
    direction: Annotated[str, typer.Option(help="max: higher is better; min: lower is better.")] = "max",
    min_improvement: Annotated[float, typer.Option(help="Margin the winner must beat.")] = 0.0,
    baseline: Annotated[
        str | None,
        typer.Option(help="Version the others must beat (e.g. @champion), instead of the runner-up."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Compare versions side by side and pick a winner by the primary metric."""
    chosen = cast(Direction, check_choice(direction, ("max", "min"), "direction"))
    with open_registry() as reg:
        comparison = reg.compare(
            name,
            refs,
            primary=primary,
            metrics=metric or None,
            direction=chosen,
            min_improvement=min_improvement,
            baseline=baseline,
        )
    if as_json:
        render.emit_json(comparison.to_dict())
        return
    render.console().print(render.comparison_table(comparison))
    say(render.winner_line(comparison))


@registry_app.command("lineage")
def show_lineage(
    name: NameArg,
    version: Annotated[str | None, typer.Option(help="Only this version (REF).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Show where versions came from: dataset → training run → version (→ parent)."""
    with open_registry() as reg:
        lineage = reg.lineage(name, version)
    if as_json:
        render.emit_json(lineage)
    else:
        render.console().print(render.lineage_tree(lineage))


# ------------------------------------------------------- stages and aliases
@registry_app.command("stage")
def move_stage(
    name: NameArg,
    ref: Annotated[str, typer.Argument(help="Version to move (REF).")],
    stage: Annotated[str, typer.Argument(help="development, staging, production or archived.")],
    reason: ReasonOpt = "",
    demote_to: Annotated[
        str, typer.Option(help="Where the current production version goes: archived or staging.")
    ] = "archived",
    allow_multiple: Annotated[
        bool, typer.Option("--allow-multiple", help="Keep the other production versions in production.")
    ] = False,
    alias: Annotated[str | None, typer.Option(help="Also point this alias at the version.")] = None,
    actor: ActorOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Move a version to another lifecycle stage."""
    with open_registry() as reg:
        before = reg.get_version(name, ref).stage
        version = reg.transition_stage(
            name,
            ref,
            stage,
            reason=reason,
            actor=actor,
            demote_to=demote_to,
            allow_multiple=allow_multiple,
            alias=alias,
        )
    if as_json:
        render.emit_json(version.to_dict())
        return
    say(f"moved {version.model} version {version.number} ({version.semver}) from {before} to {version.stage}")
    if alias is not None:
        say(f"alias {alias} → version {version.number}")


@registry_app.command("alias")
def move_alias(
    name: NameArg,
    alias: Annotated[str, typer.Argument(help="Alias, e.g. champion.")],
    ref: Annotated[str | None, typer.Argument(help="Version to point at (REF); omit with --delete.")] = None,
    delete: Annotated[bool, typer.Option("--delete", help="Remove the alias.")] = False,
    reason: ReasonOpt = "",
    actor: ActorOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Point an alias at a version, or remove it with --delete."""
    if delete == (ref is not None):
        raise ValidationError("give either a version REF to point the alias at, or --delete")
    with open_registry() as reg:
        if ref is None:
            move = reg.delete_alias(name, alias, reason=reason, actor=actor)
        else:
            move = reg.set_alias(name, alias, ref, reason=reason, actor=actor)
    if as_json:
        render.emit_json(move.to_dict())
    elif move.to_version is None:
        say(f"deleted alias {alias} of {name} (was version {move.from_version})")
    else:
        previous = f" (was version {move.from_version})" if move.from_version is not None else ""
        say(f"alias {alias} of {name} → version {move.to_version}{previous}")


@registry_app.command("aliases")
def alias_history(
    name: NameArg,
    alias: Annotated[str | None, typer.Option(help="Only this alias.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Show every alias move of a model, oldest first."""
    with open_registry() as reg:
        moves = reg.alias_history(name, alias)
    if as_json:
        render.emit_json([m.to_dict() for m in moves])
    else:
        render.console().print(render.alias_history_table(moves, name))


@registry_app.command("history")
def stage_history(
    name: NameArg,
    version: Annotated[str | None, typer.Option(help="Only this version (REF).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Show every stage move of a model's versions, oldest first."""
    with open_registry() as reg:
        moves = reg.stage_history(name, version)
    if as_json:
        render.emit_json([m.to_dict() for m in moves])
    else:
        render.console().print(render.stage_history_table(moves, name))


# -------------------------------------------------------------- artifacts
@registry_app.command("verify")
def verify_version(
    name: NameArg,
    ref: Annotated[str, typer.Argument(help="Version to check (REF).")],
    as_json: JsonOpt = False,
) -> None:
    """Re-hash every artifact of a version; exit code 1 when any does not match."""
    with open_registry() as reg:
        report = reg.verify_version(name, ref)
    if as_json:
        render.emit_json(report.to_dict())
    elif report.artifacts:
        render.console().print(render.verify_table(report))
    else:
        say(f"{report.model} version {report.version} has no artifacts")
    bad = [check for check in report.artifacts if not check.ok]
    for check in bad:
        typer.echo(
            f"error: artifact {check.name!r} of {report.model} version {report.version}: {check.problem}",
            err=True,
        )
    if bad:
        raise typer.Exit(1)
    if not as_json and report.artifacts:
        say(f"all {len(report.artifacts)} artifact(s) match their checksums")


@registry_app.command("export")
def export_version(
    name: NameArg,
    ref: Annotated[str, typer.Argument(help="Version to export (REF).")],
    dest: Annotated[Path, typer.Argument(help="Folder to write the artifacts into.")],
    as_json: JsonOpt = False,
) -> None:
    """Write a version's artifacts (verified) into a folder."""
    with open_registry() as reg:
        written = reg.export_version(name, ref, dest)
    if as_json:
        render.emit_json([str(p) for p in written])
        return
    for path in written:
        say(f"wrote {path}")
    if not written:
        say(f"{name} {ref} has no artifacts")


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


def main() -> None:
    """Entry point of the ``mlops`` console script."""
    app(prog_name="mlops")


if __name__ == "__main__":
    main()
