"""``mlops up``, ``mlops down`` and ``mlops status``: the platform's services on this machine.

Example::

    mlops up --dask-workers 2 --no-serve
    mlops status --json
    mlops down
"""

from __future__ import annotations

import os
from typing import Annotated

import typer
from rich.table import Table

from mlops import _render as render
from mlops._cli_common import JsonOpt, say


def up(
    prefect_port: Annotated[
        int | None, typer.Option("--prefect-port", help="Prefect server and UI port (default 4200 or free).")
    ] = None,
    dask_port: Annotated[
        int | None, typer.Option("--dask-port", help="Dask scheduler port (default 8786 or free).")
    ] = None,
    dask_workers: Annotated[int, typer.Option("--dask-workers", help="Dask worker processes.")] = 2,
    dask_threads: Annotated[int, typer.Option("--dask-threads", help="Threads per Dask worker.")] = 1,
    serve: Annotated[
        bool | None,
        typer.Option("--serve/--no-serve", help="Start the model server (default: when installed)."),
    ] = None,
    serve_port: Annotated[
        int | None, typer.Option("--serve-port", help="Model server port (default 8080 or free).")
    ] = None,
    server: Annotated[
        bool | None,
        typer.Option(
            "--server/--no-server",
            help="Start the platform service, API and console (default: when installed).",
        ),
    ] = None,
    server_port: Annotated[
        int | None, typer.Option("--server-port", help="Platform service port (default 8081 or free).")
    ] = None,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds per service to start.")] = 120.0,
    as_json: JsonOpt = False,
) -> None:
    """Start Prefect (server, UI, process worker), a Dask cluster, the platform service, the model server."""
    from mlops.stack import StackOptions, start_stack

    options = StackOptions(
        prefect_port=prefect_port,
        dask_port=dask_port,
        dask_workers=dask_workers,
        dask_threads=dask_threads,
        serve=serve,
        serve_port=serve_port,
        server=server,
        server_port=server_port,
        timeout=timeout,
    )
    state = start_stack(options)
    if as_json:
        render.emit_json(state.to_dict())
        return
    say(f"Prefect UI      {state.prefect_ui_url}")
    say(f"Prefect API     {state.prefect_api_url}")
    say(f"work pool       {state.work_pool} (process worker running)")
    say(f"Dask scheduler  {state.dask_address}")
    say(f"console and API {state.server_url or '-'}")
    say(f"model server    {state.serve_url or '-'}")
    if state.serve_url and not os.environ.get("MLOPS_SERVE_ADMIN_KEY"):
        say(f"admin key       in {state.home}/run/admin-key")
    if state.server_url:
        say("sign in to the console with a key from `mlops keys create NAME --role admin`")
    say(f"logs and PIDs   {state.home}/run")
    say("Use it from a shell:")
    for key, value in state.env().items():
        say(f"  export {key}={value}")
    say("Register the deployments with `prefect deploy --all`; stop with `mlops down`.")


def down(
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds to wait after SIGTERM before SIGKILL.")
    ] = 10.0,
) -> None:
    """Stop every service `mlops up` started (process groups: terminate, wait, kill)."""
    from mlops.stack import stop_stack

    stopped = stop_stack(timeout=timeout)
    say(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")


def status(as_json: JsonOpt = False) -> None:
    """Each service of `mlops up`: PID, alive or dead, address, log."""
    from dataclasses import asdict

    from mlops.stack import read_state, stack_status

    services = stack_status()
    if as_json:
        state = read_state()
        render.emit_json(
            {
                "running": any(s.alive for s in services),
                "addresses": state.env() if state else {},
                "services": [asdict(s) for s in services],
            }
        )
        return
    if not services:
        say("nothing started: run `mlops up`")
        return
    table = Table("service", "pid", "state", "address", "log")
    for s in services:
        table.add_row(s.name, str(s.pid), "alive" if s.alive else "dead", s.address or "-", s.log)
    render.console().print(table)
