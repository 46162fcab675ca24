"""Shared pieces of the ``mlops`` command: options, input parsers, error handling, where state lives.

:func:`open_registry` yields the local registry, or a client of the platform
service when ``MLOPS_API_URL`` is set (see :mod:`mlops._remote`);
:func:`open_local_registry` is for commands that need this machine's database.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.text import Text
from typer.core import TyperGroup

from blocks.settings import get_settings
from mlops import _remote as remote
from mlops import _render as render
from storage.audit import AuditLog
from storage.db import Database
from storage.errors import MlopsError, ValidationError
from storage.registry.core import Registry

if TYPE_CHECKING:
    from mlops.client_extras import ServiceClient

PACKAGE = "dwcp-mlops"


class ErrorReportingGroup(TyperGroup):
    """The root group: turns expected errors into ``error: ...`` and exit code 1.

    With ``MLOPS_API_URL`` set, a command that needs this machine's database
    or files is refused before it runs (``--help`` still works).
    """

    # ``ctx`` is typer's vendored click Context; typer does not export that base class.
    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        ctx.meta["mlops.args"] = list(args)
        return super().parse_args(ctx, args)

    def invoke(self, ctx: Any) -> Any:
        try:
            path, rest = self.command_path(ctx, ctx.meta.get("mlops.args", []))
            if "--help" not in rest:
                remote.refuse_local_command(path)
            return super().invoke(ctx)
        except (MlopsError, OSError) as exc:
            fail(str(exc))

    def command_path(self, ctx: Any, args: Sequence[str]) -> tuple[list[str], list[str]]:
        """The command names at the start of ``args`` (``["registry", "create"]``) and what follows."""
        path: list[str] = []
        command: Any = self
        rest = list(args)
        while rest and isinstance(command, TyperGroup) and not rest[0].startswith("-"):
            command = command.get_command(ctx, rest[0])
            if command is None:
                break
            path.append(rest.pop(0))
        return path, rest


# ------------------------------------------------------------ shared options
NameArg = Annotated[str, typer.Argument(help="Model name.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print only JSON on stdout.")]
ActorOpt = Annotated[
    str | None,
    typer.Option(
        "--actor",
        help="Who makes the change (default: $MLOPS_USER or the login name; "
        "through the platform service, the API key's owner).",
        callback=lambda value: remote.check_acting_as(value, "--actor"),
    ),
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
def open_registry() -> Iterator[Registry | ServiceClient]:
    """The registry ``MLOPS_*`` points at, or the service at ``MLOPS_API_URL``; closed after the command."""
    if remote.api_url():
        client = remote.open_client()
        try:
            yield client
        finally:
            client.close()
        return
    with open_local_registry() as registry:
        yield registry


@contextmanager
def open_local_registry() -> Iterator[Registry]:
    """The registry of the metadata database ``MLOPS_*`` points at, closed again after the command."""
    if remote.api_url():  # the root group refuses such commands first; this keeps the rule at the source
        raise ValidationError(
            f"this command needs the metadata database on this machine, and {remote.API_URL_ENV} is set: "
            "unset it to work on a local MLOPS_HOME"
        )
    registry = Registry.from_settings()
    try:
        yield registry
    finally:
        registry.db.dispose()


@contextmanager
def open_audit_log() -> Iterator[AuditLog | remote.RemoteAuditLog]:
    """The audit log of the metadata database ``MLOPS_*`` points at, or the service's."""
    if remote.api_url():
        client = remote.open_client()
        try:
            yield remote.RemoteAuditLog(client)
        finally:
            client.close()
        return
    db = Database(get_settings().resolved_database_url())
    try:
        yield AuditLog(db)
    finally:
        db.dispose()


def say(message: str) -> None:
    """One plain line for people on stdout (no rich markup)."""
    render.console().print(Text(message))
