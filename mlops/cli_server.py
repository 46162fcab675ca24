"""``mlops server`` (alias ``mlops ui``), ``mlops keys`` and ``mlops whoami``: the platform service.

``mlops server`` runs the REST API (and console) over the metadata database
and artifact store ``MLOPS_*`` names, until SIGTERM or Ctrl-C (then it exits
0). Options override ``MLOPS_SERVER_*``. ``mlops keys`` manages the service's
API keys: on the local database, or through the service with an admin key
when ``MLOPS_API_URL`` is set. A new key's secret is printed once, alone on
stdout, so ``KEY=$(mlops keys create ana --role reviewer)`` keeps it.

Example::

    mlops keys create ana --role admin --description "platform team"
    mlops server --host 0.0.0.0 --port 8443 --tls-cert cert.pem --tls-key key.pem
    MLOPS_API_URL=https://mlops.example:8443 MLOPS_API_KEY=mlops_... mlops whoami
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from mlops import _remote as remote
from mlops import _render as render
from mlops._cli_common import JsonOpt, open_local_registry, say
from storage.errors import ValidationError
from storage.keys import ROLES

keys_app = typer.Typer(no_args_is_help=True, help="API keys of the platform service (admins).")


def _exit_cleanly(signum: int, frame: Any) -> None:
    raise SystemExit(0)


def server(
    host: Annotated[str | None, typer.Option("--host", help="Interface to bind (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option("--port", help="TCP port (default 8081).")] = None,
    tls_cert: Annotated[
        Path | None, typer.Option("--tls-cert", help="PEM certificate: serve HTTPS (with --tls-key).")
    ] = None,
    tls_key: Annotated[Path | None, typer.Option("--tls-key", help="PEM private key of --tls-cert.")] = None,
    max_upload_bytes: Annotated[
        int | None, typer.Option("--max-upload-bytes", help="Largest artifact one upload may carry.")
    ] = None,
    log_level: Annotated[str | None, typer.Option("--log-level", help="uvicorn log level.")] = None,
) -> None:
    """Run the platform service (REST API under /api/v1, console at /) until interrupted."""
    from service.config import ServiceSettings
    from service.server import serve

    overrides: dict[str, Any] = {
        "host": host,
        "port": port,
        "tls_cert": tls_cert,
        "tls_key": tls_key,
        "max_upload_bytes": max_upload_bytes,
        "log_level": log_level,
    }
    settings = ServiceSettings(**{k: v for k, v in overrides.items() if v is not None})
    url = f"{settings.scheme()}://{settings.host}:{settings.port}"
    typer.echo(f"platform service on {url} (API {url}/api/v1, docs {url}/api/v1/docs)")
    # uvicorn re-raises SIGTERM/SIGINT once it has shut down; end with exit code 0 instead.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _exit_cleanly)
    serve(settings)


# --------------------------------------------------------------------- keys
def _keys_table(keys: list[dict[str, Any]]) -> Table:
    table = Table(title="API keys")
    for column in ("id", "prefix", "owner", "role", "description", "created by", "created", "revoked"):
        table.add_column(column)
    for k in keys:
        table.add_row(
            str(k["id"]),
            k["prefix"],
            render.text(k["owner"]),
            k["role"],
            render.text(k["description"] or "-"),
            render.text(k["created_by"]),
            str(k["created_at"])[:19],
            str(k["revoked_at"])[:19] if k["revoked_at"] else "-",
        )
    return table


@keys_app.command("create")
def create_key(
    owner: Annotated[str, typer.Argument(help="Who the key belongs to: the actor of its changes.")],
    role: Annotated[str, typer.Option("--role", help=f"One of: {', '.join(ROLES)}.")],
    description: Annotated[str, typer.Option("--description", help="What the key is for.")] = "",
    as_json: JsonOpt = False,
) -> None:
    """Create a key; its secret is printed once (alone on stdout) and is not stored."""
    if remote.api_url():
        with remote.open_client() as client:
            created = client.create_key(owner, role, description=description)
    else:
        from blocks.settings import get_settings
        from storage.keys import ApiKeyStore

        with open_local_registry() as registry:
            secret, key = ApiKeyStore(registry.db).create(
                owner, role, actor=get_settings().resolved_user(), description=description
            )
        created = key.to_dict() | {"key": secret}
    if as_json:
        render.emit_json(created)
        return
    typer.echo(
        f"created key {created['id']} for {created['owner']} (role {created['role']}); "
        "the secret below is shown once: store it now",
        err=True,
    )
    typer.echo(created["key"])


@keys_app.command("list")
def list_keys(
    include_revoked: Annotated[bool, typer.Option("--all", help="Also revoked keys.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """List keys, newest first (never a secret)."""
    if remote.api_url():
        with remote.open_client() as client:
            keys = client.list_keys(include_revoked=include_revoked)
    else:
        from storage.keys import ApiKeyStore

        with open_local_registry() as registry:
            keys = [k.to_dict() for k in ApiKeyStore(registry.db).list(include_revoked=include_revoked)]
    if as_json:
        render.emit_json(keys)
    else:
        render.console().print(_keys_table(keys))


@keys_app.command("revoke")
def revoke_key(
    key_id: Annotated[int, typer.Argument(help="Key id (from `mlops keys list`).")],
    as_json: JsonOpt = False,
) -> None:
    """Revoke a key: it opens nothing from now on."""
    if remote.api_url():
        with remote.open_client() as client:
            revoked = client.revoke_key(key_id)
    else:
        from blocks.settings import get_settings
        from storage.keys import ApiKeyStore

        with open_local_registry() as registry:
            store = ApiKeyStore(registry.db)
            revoked = store.revoke(key_id, actor=get_settings().resolved_user()).to_dict()
    if as_json:
        render.emit_json(revoked)
    else:
        say(f"revoked key {revoked['id']} of {revoked['owner']} (role {revoked['role']})")


def whoami(as_json: JsonOpt = False) -> None:
    """Who MLOPS_API_KEY belongs to and its role, as the platform service says."""
    if not remote.api_url():
        raise ValidationError(
            f"whoami asks the platform service who a key belongs to: set {remote.API_URL_ENV} "
            f"and {remote.API_KEY_ENV}"
        )
    with remote.open_client() as client:
        me = client.whoami()
    if as_json:
        render.emit_json(me | {"url": client.url})
    else:
        say(f"{me['owner']} ({me['role']}) at {client.url}")
