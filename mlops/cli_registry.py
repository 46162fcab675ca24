"""``mlops registry``: models and versions — register, search, compare, promote, verify."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, cast

import typer

from mlops import _render as render
from mlops._cli_common import (
    ActorOpt,
    JsonOpt,
    NameArg,
    PageSizeOpt,
    PageTokenOpt,
    ReasonOpt,
    TagFilterOpt,
    TagsOpt,
    check_choice,
    open_registry,
    parse_files,
    parse_metrics,
    parse_pairs,
    parse_params,
    parse_tag_filters,
    say,
)
from storage.errors import ValidationError
from storage.registry.compare import Direction
from storage.registry.records import FRAMEWORKS
from storage.registry.semver import Bump

registry_app = typer.Typer(
    no_args_is_help=True, help="Models and versions: register, search, compare, promote, verify."
)


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
