"""Shared pieces of the ``mlops`` command: options, input parsers, error handling."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.text import Text
from typer.core import TyperGroup

from blocks.settings import get_settings
from mlops import _render as render
from storage.audit import AuditLog
from storage.db import Database
from storage.errors import MlopsError, ValidationError
from storage.registry.core import Registry

PACKAGE = "dwcp-mlops"


class ErrorReportingGroup(TyperGroup):
    """The root group: turns expected errors into ``error: ...`` and exit code 1."""

    # ``ctx`` is typer's vendored click Context; typer does not export that base class.
    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except (MlopsError, OSError) as exc:
            fail(str(exc))


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
