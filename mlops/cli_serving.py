"""``mlops serve``: run the model server (Open Inference Protocol over HTTP and gRPC, records API, metrics).

Options override the ``MLOPS_SERVE_*`` environment; keys given on the command
line are visible in the process list, so prefer ``MLOPS_SERVE_API_KEYS`` and
``MLOPS_SERVE_ADMIN_KEY`` outside a laptop. ``--tls-cert``/``--tls-key``
(``MLOPS_SERVE_TLS_CERT``/``_KEY``) serve HTTPS from one process; with
replicas, terminate TLS in front of them. ``--max-model-memory``
(``MLOPS_SERVE_MAX_MODEL_MEMORY``, e.g. ``4GiB``) bounds the estimated memory of
loaded model versions; the least recently used are dropped beyond it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from serving.config import ServeSettings


def _size_option(value: str | None) -> int | None:
    from serving.config import parse_size
    from storage.errors import ValidationError

    try:
        return None if value is None else parse_size(value, "--max-model-memory")
    except ValidationError as exc:
        raise typer.BadParameter(str(exc)) from None


def _settings(values: dict[str, Any]) -> ServeSettings:
    """The settings from the environment and ``values``; a bad one is an error naming it, not a traceback."""
    import pydantic

    from serving.config import ServeSettings
    from storage.errors import ValidationError

    try:
        return ServeSettings(**values)
    except pydantic.ValidationError as exc:
        problems = [
            f"{'.'.join(map(str, e['loc']))}: {e['msg'].removeprefix('Value error, ')}" for e in exc.errors()
        ]
        raise ValidationError("; ".join(problems)) from None


def serve(
    host: Annotated[str | None, typer.Option("--host", help="Interface to bind (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option("--port", help="TCP port (default 8080).")] = None,
    grpc_port: Annotated[
        int | None, typer.Option("--grpc-port", help="Also serve the Open Inference Protocol over gRPC here.")
    ] = None,
    tls_cert: Annotated[
        Path | None, typer.Option("--tls-cert", help="PEM certificate: serve HTTPS (with --tls-key).")
    ] = None,
    tls_key: Annotated[Path | None, typer.Option("--tls-key", help="PEM private key of --tls-cert.")] = None,
    api_key: Annotated[
        list[str] | None, typer.Option("--api-key", help="Accepted inference key (repeatable).")
    ] = None,
    admin_key: Annotated[str | None, typer.Option("--admin-key", help="Key of the admin API.")] = None,
    model: Annotated[
        list[str] | None, typer.Option("--model", help="Model to load before reporting ready (repeatable).")
    ] = None,
    trust_pickle: Annotated[
        bool,
        typer.Option("--trust-pickle", help="Load model.pkl files (runs their code: trusted sources only)."),
    ] = False,
    trusted_type: Annotated[
        list[str] | None, typer.Option("--trusted-type", help="Extra type skops may load (repeatable).")
    ] = None,
    max_body_bytes: Annotated[
        int | None, typer.Option("--max-body-bytes", help="Largest request body.")
    ] = None,
    max_batch_rows: Annotated[
        int | None, typer.Option("--max-batch-rows", help="Most rows per request.")
    ] = None,
    max_model_memory: Annotated[
        int | None,
        typer.Option(
            "--max-model-memory",
            parser=_size_option,
            metavar="SIZE",
            help="Bound on loaded models' estimated memory, e.g. 4GiB or 512MB (default 2GiB).",
        ),
    ] = None,
    refresh: Annotated[
        float | None, typer.Option("--refresh", help="Seconds between re-resolving aliases and stages.")
    ] = None,
    no_log: Annotated[bool, typer.Option("--no-log", help="Do not write the prediction log.")] = False,
    log_level: Annotated[str | None, typer.Option("--log-level", help="uvicorn log level.")] = None,
    replicas: Annotated[
        int, typer.Option("--replicas", min=0, help="Replica processes sharing the port (0: one process).")
    ] = 0,
    autoscale: Annotated[
        bool, typer.Option("--autoscale", help="Scale replicas on CPU, p95 latency and in-flight requests.")
    ] = False,
    max_replicas: Annotated[
        int, typer.Option("--max-replicas", min=1, help="Most replicas when autoscaling.")
    ] = 50,
) -> None:
    """Serve registered models over HTTP until interrupted."""
    from serving.server import serve as run

    overrides: dict[str, Any] = {
        "host": host,
        "port": port,
        "grpc_port": grpc_port,
        "tls_cert": tls_cert,
        "tls_key": tls_key,
        "api_keys": api_key or None,
        "admin_key": admin_key,
        "models": model or None,
        "trusted_types": trusted_type or None,
        "max_body_bytes": max_body_bytes,
        "max_batch_rows": max_batch_rows,
        "max_model_memory": max_model_memory,
        "refresh_s": refresh,
        "log_level": log_level,
    }
    values = {k: v for k, v in overrides.items() if v is not None}
    if trust_pickle:
        values["trust_pickle"] = True
    if no_log:
        values["log_predictions"] = False
    settings = _settings(values)
    if settings.tls_cert or settings.tls_key:
        from serving.server import check_tls
        from storage.errors import ValidationError

        check_tls(settings.tls_cert, settings.tls_key)
        if replicas or autoscale:
            # Replica processes serve the supervisor's shared listening socket in plain HTTP.
            raise ValidationError(
                "--tls-cert/--tls-key serve HTTPS from one process: replicas (--replicas, --autoscale) "
                "share a listening socket that speaks plain HTTP; run one process, or terminate TLS in "
                "front of the replicas (a load balancer or ingress)"
            )
    typer.echo(
        f"serving on {settings.scheme()}://{settings.host}:{settings.port} "
        f"(API keys {'on' if settings.api_keys else 'off'})"
    )
    if settings.grpc_port is not None:
        typer.echo(f"gRPC (Open Inference Protocol) on {settings.host}:{settings.grpc_port}")
    if (replicas or autoscale) and settings.grpc_port is not None:
        raise typer.BadParameter("--grpc-port is served by one process: leave out --replicas and --autoscale")
    if replicas or autoscale:
        from serving.replicas import run_supervised

        low = max(replicas, 1)
        if max_replicas < low:
            raise typer.BadParameter(f"--max-replicas {max_replicas} is below --replicas {low}")
        typer.echo(f"replicas: {low}{f' to {max_replicas}, autoscaled' if autoscale else ''}")
        run_supervised(settings, low, max_replicas if autoscale else low, autoscale)
        return
    run(settings)
