"""``mlops features``: definitions, ingestion, materialization, online reads, statistics.

Every command takes ``--json`` and then prints only JSON on stdout. Errors the
platform raises on purpose become ``error: <message>`` on stderr and exit
code 1 (the root group handles them).

Example::

    mlops features list
    mlops features show trips
    mlops features ingest trips batch.parquet
    mlops features materialize trips --end 2026-11-26T00:00:00Z
    mlops features get trips:fare trips:rating --entity driver_id=7 --json
    mlops features stats trips --reference
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from mlops import _render as render
from mlops._cli_common import JsonOpt, say
from storage.errors import ValidationError
from storage.features.records import check_identifier

if TYPE_CHECKING:
    from storage.features.store import FeatureStore

app = typer.Typer(
    no_args_is_help=True,
    help="The feature store: definitions, offline ingestion, online materialization and reads, statistics.",
)

GroupArg = Annotated[str, typer.Argument(help="Feature group name.")]
StartOpt = Annotated[str | None, typer.Option("--start", help="Window start, ISO 8601 (UTC when naive).")]
EndOpt = Annotated[str | None, typer.Option("--end", help="Window end, ISO 8601 (UTC when naive).")]


@contextmanager
def open_store() -> Iterator[FeatureStore]:
    """The feature store ``MLOPS_*`` points at, closed afterwards."""
    from storage.features.store import FeatureStore  # DuckDB and pandas load only for these commands

    store = FeatureStore.from_settings()
    try:
        yield store
    finally:
        store.close()


def parse_time(value: str | None, what: str) -> datetime | None:
    """An ISO 8601 time (naive means UTC); ValidationError naming ``what`` when malformed."""
    if value is None:
        return None
    try:
        import pandas as pd

        ts = pd.Timestamp(value)
    except (ValueError, TypeError) as exc:
        raise ValidationError(f"{what} {value!r} is not an ISO 8601 time") from exc
    return (ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")).to_pydatetime()


def parse_entity(item: str) -> dict[str, Any]:
    """``driver_id=7`` or ``city=a,zone=x`` → a dict; integers become ints.

    Example:
        >>> parse_entity("city=a,zone=7")
        {'city': 'a', 'zone': 7}
        >>> parse_entity("zone=¹")
        {'zone': '¹'}
    """
    row: dict[str, Any] = {}
    for part in item.split(","):
        key, sep, value = part.partition("=")
        if not sep:
            raise ValidationError(f"entity {item!r} is malformed: expected key=value[,key=value]")
        check_identifier(key.strip(), "join key")
        digits = value.strip().lstrip("-")
        row[key.strip()] = int(value) if digits.isascii() and digits.isdigit() and len(digits) < 19 else value
    return row


def _fmt(value: Any) -> str:
    return render.fmt_number(value) if not isinstance(value, dict | list) else str(value)


@app.command("list")
def list_features(
    group: Annotated[str | None, typer.Option("--group", help="Only this group.")] = None,
    all_versions: Annotated[
        bool, typer.Option("--all-versions", help="Every version, not only the newest.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """List feature groups and their features."""
    with open_store() as store:
        groups = [store.definitions.get_group(group)] if group else store.definitions.list_groups()
        feats = store.definitions.list_features(group, all_versions=all_versions)
    if as_json:
        render.emit_json({"groups": [g.to_dict() for g in groups], "features": [f.to_dict() for f in feats]})
        return
    table = Table(title="features")
    for col in ("feature", "type", "status", "owner", "description"):
        table.add_column(col)
    for f in feats:
        table.add_row(
            render.text(f.ref),
            render.text(f.dtype),
            render.text(f.status),
            render.text(f.owner),
            render.text(f.description),
        )
    render.console().print(table)


@app.command("show")
def show(
    name: Annotated[str, typer.Argument(help="A group, or group:feature for one feature's versions.")],
    as_json: JsonOpt = False,
) -> None:
    """Show a group (keys, times, TTL, features, lineage) or a feature's versions."""
    with open_store() as store:
        if ":" in name:
            group, _, feature = name.partition(":")
            versions = [
                f for f in store.definitions.list_features(group, all_versions=True) if f.name == feature
            ]
            if not versions:
                store.definitions.resolve([name])  # raises NotFoundError naming it
            data: dict[str, Any] = {"feature": name, "versions": [f.to_dict() for f in versions]}
        else:
            data = {
                "group": store.definitions.get_group(name).to_dict(),
                "features": [f.to_dict() for f in store.definitions.list_features(name, all_versions=True)],
                "lineage": store.definitions.lineage(name),
                "files": len(store.offline.files(name)),
            }
    if as_json:
        render.emit_json(data)
        return
    if "group" in data:
        for key, value in data["group"].items():
            render.console().print(Text(f"{key}: {value}"))
        render.console().print(Text(f"files: {data['files']}"))
        for ref, models in data["lineage"]["features"].items():
            render.console().print(Text(f"{ref} → {', '.join(models)}"))
    for f in data.get("features", data.get("versions", [])):
        render.console().print(Text(f"{f['ref']}  {f['dtype']}  {f['status']}  {f['owner'] or '-'}"))


@app.command("ingest")
def ingest(
    group: GroupArg,
    path: Annotated[str, typer.Argument(help="A .parquet, .csv, .json or .jsonl batch.")],
    as_json: JsonOpt = False,
) -> None:
    """Validate a batch against the group's definitions and write it; a bad batch writes nothing."""
    with open_store() as store:
        from storage.features.store import read_table

        result = store.ingest(group, read_table(path))
    if as_json:
        render.emit_json(result.to_dict())
    else:
        say(f"ingested {result.rows} rows into {group} ({len(result.files)} files, batch {result.batch_id})")


@app.command("materialize")
def materialize(
    group: GroupArg, start: StartOpt = None, end: EndOpt = None, as_json: JsonOpt = False
) -> None:
    """Write the newest values to the online store, from the last materialized time by default."""
    with open_store() as store:
        result = store.materialize(group, parse_time(start, "start"), parse_time(end, "end"))
    if as_json:
        render.emit_json(result.to_dict())
    else:
        say(f"materialized {result.rows} entities of {group} up to {result.end.isoformat()}")


@app.command("get")
def get(
    features: Annotated[list[str], typer.Argument(help="Features as group:feature[@version].")],
    entity: Annotated[
        list[str], typer.Option("--entity", help="Entity keys key=value[,key=value] (repeatable).")
    ],
    as_json: JsonOpt = False,
) -> None:
    """Read online values by entity key, with present/stale/missing per value."""
    rows = [parse_entity(e) for e in entity]
    with open_store() as store:
        result = store.get_online_features(rows, features)
    if as_json:
        render.emit_json(result.to_dict())
        return
    table = Table(title="online features")
    names = list(result.rows[0]) if result.rows else []
    for n in names:
        table.add_column(n)
    for row, status in zip(result.rows, result.statuses, strict=True):
        table.add_row(
            *(
                Text(_fmt(row[n]) + (f" ({status[n]})" if status.get(n, "present") != "present" else ""))
                for n in names
            )
        )
    render.console().print(table)


@app.command("stats")
def stats(
    group: GroupArg,
    start: StartOpt = None,
    end: EndOpt = None,
    reference: Annotated[
        bool, typer.Option("--reference", help="Save as the reference (freezes bins).")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Compute and store per-feature statistics over a window (all data by default)."""
    with open_store() as store:
        result = store.compute_statistics(
            group, parse_time(start, "start"), parse_time(end, "end"), reference=reference
        )
    if as_json:
        render.emit_json(result)
        return
    from storage.features.stats import statistics_table

    rows = statistics_table(result)
    table = Table(title=f"statistics of {group}")
    for col in rows[0] if rows else ["feature"]:
        table.add_column(col)
    for r in rows:
        table.add_row(*(Text(_fmt(v)) for v in r.values()))
    render.console().print(table)
