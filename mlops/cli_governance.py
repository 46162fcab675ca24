"""``mlops lineage`` (datasets and model lineage) and ``mlops erase`` (the right to erasure).

Read commands take ``--json`` and then print only JSON on stdout; they also
work through the platform service (``MLOPS_API_URL``). Errors the platform
raises on purpose become ``error: <message>`` on stderr and exit code 1 (the
root group handles them).

Example::

    mlops lineage register transactions --uri s3://raw/tx.parquet --source core-banking \\
        --owner data-eng --pii --retention-days 365 --transformation dedupe
    mlops lineage datasets
    mlops lineage dataset transactions --json
    mlops lineage model fraud
    mlops erase --entity card_id=1 --reason "DSR-2026-114"
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.panel import Panel
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from mlops import _render as render
from mlops._cli_common import ActorOpt, JsonOpt, NameArg, open_local_registry, open_registry, parse_pairs, say
from mlops._remote import lineage_of
from storage.governance.lineage import DataAsset, LineageStore

lineage_app = typer.Typer(no_args_is_help=True, help="Data lineage: datasets, who used them, model lineage.")

DatasetArg = Annotated[str, typer.Argument(help="Dataset name.")]


def _datasets_table(assets: list[DataAsset]) -> Table:
    table = Table(title="datasets")
    for column in ("name", "uri", "source", "owner", "PII", "retention", "transformations"):
        table.add_column(column)
    for a in assets:
        table.add_row(
            render.text(a.name),
            render.text(a.uri),
            render.text(a.source),
            render.text(a.owner),
            "yes" if a.contains_pii else "no",
            f"{a.retention_days} days" if a.retention_days else "unlimited",
            render.text(", ".join(a.transformations) or "-"),
        )
    return table


def _users(tree: Tree, title: str, users: list[dict[str, str]]) -> None:
    node = tree.add(Text(title, style="bold"))
    for u in users:
        node.add(Text(f"{u['name']} ({u['relation']})"))
    if not users:
        node.add(Text("none recorded"))


@lineage_app.command("register")
def register_dataset(
    name: DatasetArg,
    uri: Annotated[str, typer.Option("--uri", help="Where the data lives (path or URL).")],
    source: Annotated[str, typer.Option("--source", help="Where it came from (system, vendor, dataset).")],
    owner: Annotated[str, typer.Option("--owner", help="Person or team accountable for it.")],
    pii: Annotated[
        bool, typer.Option("--pii/--no-pii", help="Whether it holds personal data (must be declared).")
    ],
    retention_days: Annotated[
        int | None, typer.Option("--retention-days", help="Days it may be kept (unset: no limit).")
    ] = None,
    transformation: Annotated[
        list[str] | None,
        typer.Option("--transformation", help="A step that produced it (repeatable, in order)."),
    ] = None,
    description: Annotated[str, typer.Option("--description", help="What it holds.")] = "",
    actor: ActorOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Register a dataset with its source, owner, PII flag, retention and transformations."""
    with open_local_registry() as registry:
        asset = LineageStore(registry).register_dataset(
            name,
            uri=uri,
            source=source,
            owner=owner,
            contains_pii=pii,
            retention_days=retention_days,
            transformations=transformation or (),
            description=description,
            actor=actor,
        )
    if as_json:
        render.emit_json(asset.to_dict())
    else:
        say(f"registered dataset {asset.name} ({'PII' if asset.contains_pii else 'no PII'}) at {asset.uri}")


@lineage_app.command("datasets")
def list_datasets(as_json: JsonOpt = False) -> None:
    """List registered datasets."""
    with open_registry() as registry:
        assets = lineage_of(registry).list_datasets()
    if as_json:
        render.emit_json([a.to_dict() for a in assets])
    else:
        render.console().print(_datasets_table(assets))


@lineage_app.command("dataset")
def show_dataset(name: DatasetArg, as_json: JsonOpt = False) -> None:
    """Show a dataset and the feature groups, model versions and datasets that used it."""
    with open_registry() as registry:
        found = lineage_of(registry).dataset_lineage(name)
    if as_json:
        render.emit_json(found)
        return
    d = found["dataset"]
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column(overflow="fold")
    for label, value in [
        ("uri", d["uri"]),
        ("source", d["source"]),
        ("owner", d["owner"]),
        ("PII", "yes" if d["contains_pii"] else "no"),
        ("retention", f"{d['retention_days']} days" if d["retention_days"] else "unlimited"),
        ("transformations", " → ".join(d["transformations"]) or "-"),
        ("description", d["description"] or "-"),
    ]:
        grid.add_row(label, render.text(value))
    render.console().print(Panel(grid, title=Text(f"dataset {d['name']}"), title_align="left"))
    tree = Tree(Text(f"lineage of {d['name']}", style="bold"))
    _users(tree, "derived from", found["upstream"])
    _users(tree, "feature groups", found["feature_groups"])
    _users(tree, "model versions", found["model_versions"])
    _users(tree, "downstream datasets", found["downstream"])
    render.console().print(tree)


def _version_node(root: Tree, v: dict[str, Any]) -> None:
    aliases = f" @{', @'.join(v['aliases'])}" if v["aliases"] else ""
    node = root.add(Text(f"version {v['number']} ({v['semver']}, {v['stage']}){aliases}", style="bold"))
    data = node.add(Text("datasets"))
    for d in v["datasets"]:
        retention = f"{d['retention_days']} days" if d["retention_days"] else "no retention limit"
        pii = "PII" if d["contains_pii"] else "no PII"
        data.add(Text(f"{d['name']} ({pii}, {retention}, source {d['source']})"))
    if not v["datasets"]:
        ds = v["training_dataset"]
        data.add(Text(f"unregistered: {ds['uri']}" if ds else "none recorded"))
    groups = node.add(Text("feature groups"))
    for g in v["feature_groups"]:
        groups.add(Text(f"{g['group']}: {', '.join(g['features'])}"))
    if not v["feature_groups"]:
        groups.add(Text("none recorded"))
    run = v["run"]
    node.add(Text(f"run {run['flow_run_id'] or '-'} (code version {run['code_version'] or '-'})"))
    approvals = node.add(Text("approvals"))
    for a in v["approvals"]:
        who = ", ".join(a["approved_by"]) or "nobody"
        approvals.add(Text(f"#{a['id']} → {a['target_stage']}: {a['status']} (approved by {who})"))
    if not v["approvals"]:
        approvals.add(Text("none"))


@lineage_app.command("model")
def show_model(name: NameArg, as_json: JsonOpt = False) -> None:
    """Show each version's datasets (PII, retention, source), feature groups, run and approvals."""
    with open_registry() as registry:
        found = lineage_of(registry).model_lineage(name)
    if as_json:
        render.emit_json(found)
        return
    root = Tree(Text(f"model {found['model']}", style="bold"))
    for v in found["versions"]:
        _version_node(root, v)
    if not found["versions"]:
        root.add(Text("no versions yet"))
    render.console().print(root)


def erase(
    entity: Annotated[
        list[str], typer.Option("--entity", help="Join key and value, e.g. card_id=1 (repeatable).")
    ],
    reason: Annotated[str, typer.Option("--reason", help="Why (e.g. the request's reference); audited.")],
    actor: ActorOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Erase an entity from the feature stores and the prediction log, then verify nothing remains."""
    from blocks.settings import get_settings
    from storage.governance.erasure import erase_entity

    keys = parse_pairs(entity, "entity key")
    result = erase_entity(keys, requested_by=actor or get_settings().resolved_user(), reason=reason)
    if as_json:
        render.emit_json(result.to_dict())
    else:
        table = Table(title=f"erasure {result.id}: {result.entity_key}")
        for column in ("place", "removed", "remaining"):
            table.add_column(column)
        for place, n in result.removed.items():
            table.add_row(place, str(n), str(result.remaining.get(place, 0)))
        render.console().print(table)
    if not result.verified:
        left = {place: n for place, n in result.remaining.items() if n}
        render.console(err=True).print(Text(f"error: erasure {result.id} left rows behind: {left}"))
        raise typer.Exit(1)
    if not as_json:
        say(f"verified: nothing of {result.entity_key} remains")
