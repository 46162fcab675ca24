"""Output for the ``mlops`` command: JSON for machines, rich tables for people.

Every function here only formats: the commands in :mod:`mlops.cli` decide what
to show. User-supplied strings are wrapped in :class:`rich.text.Text`, so a
name or description containing ``[brackets]`` is never read as rich markup.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from storage.audit import AuditEntry
from storage.registry.compare import Comparison
from storage.registry.records import AliasMove, Model, ModelVersion, StageMove, VerifyReport


def console(*, err: bool = False) -> Console:
    """A console on the *current* stdout/stderr (test runners swap them)."""
    return Console(file=sys.stderr if err else sys.stdout, highlight=False, soft_wrap=False)


def emit_json(data: Any) -> None:
    """Print ``data`` as JSON, and nothing else, on stdout."""
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")
    sys.stdout.flush()


def text(value: Any) -> Text:
    """A cell that shows ``value`` literally ('-' for None)."""
    return Text("-" if value is None else str(value))


def fmt_number(value: Any) -> str:
    """A metric value for people: up to 6 significant digits."""
    if isinstance(value, float):
        return f"{value:.6g}"
    return "-" if value is None else str(value)


def fmt_mapping(values: Mapping[str, Any]) -> str:
    """``k=v, k=v`` for tags, metrics and parameters."""
    return ", ".join(f"{k}={fmt_number(v)}" for k, v in values.items()) or "-"


def _fields(title: str, rows: Iterable[tuple[str, Any]]) -> Panel:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column(overflow="fold")
    for label, value in rows:
        grid.add_row(label, text(value))
    return Panel(grid, title=Text(title), title_align="left")


def page_hint(next_token: str | None) -> None:
    """Tell people how to get the next page, when there is one."""
    if next_token is not None:
        console().print(Text(f"more results: --page-token {next_token}"))


# ------------------------------------------------------------------ models
def models_table(models: Sequence[Model]) -> Table:
    """One row per model."""
    table = Table(title="models")
    for name in ("name", "latest", "owner", "aliases", "tags", "description"):
        table.add_column(name)
    for m in models:
        aliases = ", ".join(f"{a}→{n}" for a, n in sorted(m.aliases.items())) or "-"
        table.add_row(
            text(m.name),
            text(m.latest_version),
            text(m.owner),
            text(aliases),
            text(fmt_mapping(m.tags)),
            text(m.description or "-"),
        )
    return table


def model_panel(model: Model, latest: ModelVersion | None) -> Group:
    """A model's fields, aliases and latest version."""
    latest_line = f"{latest.number} ({latest.semver}, {latest.stage})" if latest else "no versions yet"
    fields = _fields(
        f"model {model.name}",
        [
            ("description", model.description or "-"),
            ("owner", model.owner),
            ("tags", fmt_mapping(model.tags)),
            ("latest version", latest_line),
            ("created", f"{model.created_at.isoformat()} by {model.created_by}"),
            ("updated", model.updated_at.isoformat()),
        ],
    )
    aliases = Table(title="aliases")
    aliases.add_column("alias")
    aliases.add_column("version")
    for alias, number in sorted(model.aliases.items()):
        aliases.add_row(text(alias), text(number))
    return Group(fields, aliases) if model.aliases else Group(fields)


# ---------------------------------------------------------------- versions
def versions_table(versions: Sequence[ModelVersion], title: str) -> Table:
    """One row per version, newest first as given."""
    table = Table(title=title)
    for name in ("version", "semver", "stage", "aliases", "framework", "metrics", "created"):
        table.add_column(name)
    for v in versions:
        table.add_row(
            text(v.number),
            text(v.semver),
            text(v.stage),
            text(", ".join(v.aliases) or "-"),
            text(v.framework),
            text(fmt_mapping(v.metrics)),
            text(f"{v.created_at:%Y-%m-%d %H:%M} {v.created_by}"),
        )
    return table


def version_detail(v: ModelVersion) -> Group:
    """Everything about one version: fields, metrics, parameters, artifacts."""
    dataset = f"{v.dataset_uri} ({v.dataset_hash})" if v.dataset_uri else None
    fields = _fields(
        f"{v.model} version {v.number} ({v.semver})",
        [
            ("stage", f"{v.stage} since {v.stage_updated_at.isoformat()}"),
            ("aliases", ", ".join(v.aliases) or "-"),
            ("framework", v.framework),
            ("description", v.description or "-"),
            ("changelog", v.changelog or "-"),
            ("tags", fmt_mapping(v.tags)),
            ("dataset", dataset),
            ("flow run", v.flow_run_id),
            ("code version", v.code_version),
            ("parent version", v.parent_version),
            ("created", f"{v.created_at.isoformat()} by {v.created_by}"),
        ],
    )
    parts: list[Any] = [fields]
    if v.metrics:
        parts.append(_key_values("metrics", {k: fmt_number(x) for k, x in v.metrics.items()}))
    if v.hyperparameters:
        parts.append(_key_values("parameters", {k: json.dumps(x) for k, x in v.hyperparameters.items()}))
    arts = Table(title="artifacts")
    for name in ("name", "kind", "size", "sha256"):
        arts.add_column(name, overflow="fold")
    for a in v.artifacts:
        arts.add_row(text(a.name), text(a.kind), text(a.size), text(a.sha256))
    if v.artifacts:
        parts.append(arts)
    return Group(*parts)


def _key_values(title: str, values: Mapping[str, Any]) -> Table:
    table = Table(title=title)
    table.add_column("name")
    table.add_column("value")
    for key, value in values.items():
        table.add_row(text(key), text(value))
    return table


# -------------------------------------------------------------- comparison
def comparison_table(comparison: Comparison) -> Table:
    """Versions side by side; the winner's row is bold."""
    arrow = "↑" if comparison.direction == "max" else "↓"
    table = Table(title=f"{comparison.model}: {comparison.primary} {arrow}")
    for name in ("version", "semver", "stage"):
        table.add_column(name)
    for metric in comparison.metrics:
        label = f"{metric} *" if metric == comparison.primary else metric
        table.add_column(label, justify="right")
    for row in comparison.rows:
        style = "bold green" if row["version"] == comparison.winner else None
        cells = [text(row["version"]), text(row["semver"]), text(row["stage"])]
        cells += [text(fmt_number(row[m])) for m in comparison.metrics]
        table.add_row(*cells, style=style)
    return table


def winner_line(comparison: Comparison) -> str:
    """``winner: version 2 (...)`` or the storage's ``no winner: ...`` reason."""
    if comparison.winner is None:
        return comparison.reason
    return f"winner: version {comparison.winner} ({comparison.reason})"


# ----------------------------------------------------------------- lineage
def lineage_tree(lineage: Mapping[str, Any]) -> Tree:
    """dataset → run → version (→ parent) for each version of a model."""
    root = Tree(Text(f"model {lineage['model']}", style="bold"))
    for chain in lineage["versions"]:
        ds = chain["dataset"]
        ds_label = f"dataset {ds['uri']} (hash {ds['hash']})" if ds else "dataset: not recorded"
        run = chain["run"]
        run_label = (
            f"run {run['flow_run_id'] or '-'} (code version {run['code_version'] or '-'})"
            if run["flow_run_id"] or run["code_version"]
            else "run: not recorded"
        )
        v = chain["version"]
        aliases = f" @{', @'.join(v['aliases'])}" if v["aliases"] else ""
        version_node = (
            root.add(Text(ds_label))
            .add(Text(run_label))
            .add(Text(f"version {v['number']} ({v['semver']}, {v['stage']}){aliases}", style="bold"))
        )
        if chain["parent_version"] is not None:
            version_node.add(Text(f"parent: version {chain['parent_version']}"))
    if not lineage["versions"]:
        root.add(Text("no versions yet"))
    return root


# ----------------------------------------------------------------- history
def alias_history_table(moves: Sequence[AliasMove], model: str) -> Table:
    """Every alias move, oldest first."""
    table = Table(title=f"{model}: alias history")
    for name in ("at", "alias", "from", "to", "actor", "reason"):
        table.add_column(name)
    for m in moves:
        table.add_row(
            text(f"{m.at:%Y-%m-%d %H:%M:%S}"),
            text(m.alias),
            text(m.from_version),
            text(m.to_version if m.to_version is not None else "(deleted)"),
            text(m.actor),
            text(m.reason or "-"),
        )
    return table


def stage_history_table(moves: Sequence[StageMove], model: str) -> Table:
    """Every stage move, oldest first."""
    table = Table(title=f"{model}: stage history")
    for name in ("at", "version", "from", "to", "actor", "reason"):
        table.add_column(name)
    for m in moves:
        table.add_row(
            text(f"{m.at:%Y-%m-%d %H:%M:%S}"),
            text(m.version),
            text(m.from_stage),
            text(m.to_stage),
            text(m.actor),
            text(m.reason or "-"),
        )
    return table


def verify_table(report: VerifyReport) -> Table:
    """One row per artifact: ok or what is wrong."""
    table = Table(title=f"{report.model} version {report.version}: artifact check")
    for name in ("artifact", "sha256", "result"):
        table.add_column(name, overflow="fold")
    for check in report.artifacts:
        result = Text("ok", style="green") if check.ok else Text(f"FAILED: {check.problem}", style="red")
        table.add_row(text(check.name), text(check.sha256[:12]), result)
    return table


def audit_table(entries: Sequence[AuditEntry]) -> Table:
    """Audit entries with a compact view of what changed."""
    table = Table(title="audit log")
    table.add_column("seq", justify="right", no_wrap=True)
    table.add_column("at", no_wrap=True)
    table.add_column("actor", overflow="fold")
    table.add_column("action", min_width=14, overflow="fold")
    table.add_column("entity", min_width=12, overflow="fold")
    table.add_column("change", overflow="fold")
    for e in entries:
        change = json.dumps(e.after, sort_keys=True, default=str) if e.after is not None else "-"
        if len(change) > 60:
            change = change[:59] + "…"
        table.add_row(
            text(e.seq),
            text(e.at[:19].replace("T", " ")),
            text(e.actor),
            text(e.action),
            text(f"{e.entity_type} {e.entity_id}"),
            text(change),
        )
    return table
