"""The Prefect server of the local stack: start it, create its work pool, register deployments.

:func:`start_prefect_server` runs ``prefect server start`` (with the UI) as a
process group of :mod:`mlops.processes`, keeping its database under
``$MLOPS_HOME/prefect``; :func:`ensure_work_pool` creates the ``mlops-process``
process work pool when missing; :func:`deploy_prefect_yaml` registers the
deployments of ``prefect.yaml``. ``mlops up`` (:mod:`mlops.stack`) and the
tests that need a real server use them.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from blocks.settings import get_settings
from mlops.processes import (
    DEFAULT_PORTS,
    HOST,
    ServiceRecord,
    StackError,
    choose_port,
    http_ok,
    run_dir,
    service_env,
    spawn_service,
    stop_service,
    wait_until,
)

WORK_POOL = "mlops-process"


def prefect_cli() -> list[str]:
    """The ``prefect`` command line of this interpreter."""
    return [sys.executable, "-m", "prefect"]


def prefect_server_command(port: int) -> list[str]:
    """``prefect server start`` on ``HOST:port``, through :mod:`mlops.clean_exit`.

    Prefect's server re-raises the SIGTERM it stopped on (exit status 143);
    the wrapper makes a clean stop exit 0.
    """
    from mlops.clean_exit import wrap

    return wrap([*prefect_cli(), "server", "start", "--host", HOST, "--port", str(port)])


def pool_workers(api_url: str, pool: str) -> int:
    """How many workers are online on work pool ``pool``."""
    import httpx

    response = httpx.post(f"{api_url}/work_pools/{pool}/workers/filter", json={}, timeout=5.0)
    response.raise_for_status()
    return sum(1 for w in response.json() if w.get("status") == "ONLINE")


def ensure_work_pool(api_url: str, env: dict[str, str], pool: str = WORK_POOL) -> bool:
    """Create the process work pool ``pool`` unless it exists.

    Returns:
        Whether the pool was created.
    """
    import httpx

    if httpx.get(f"{api_url}/work_pools/{pool}", timeout=10.0).status_code == 200:
        return False
    done = subprocess.run(
        [*prefect_cli(), "work-pool", "create", pool, "--type", "process"],
        env={**env, "PREFECT_API_URL": api_url},
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0:
        raise StackError(f"work pool {pool!r} could not be created: {done.stdout[-800:]}{done.stderr[-800:]}")
    return True


RESULTS_BLOCK = "mlops-results"


def ensure_result_storage(api_url: str, storage_url: str, name: str = RESULTS_BLOCK) -> dict[str, str]:
    """Save a ``RemoteFileSystem`` block for flow results under ``storage_url/prefect-results``.

    Across machines a result must live where every process reads it: a
    ``run_deployment`` caller on another host reads the flow's return value
    from the object store, not from the worker's disk. Credentials are not
    saved in the block: each process's fsspec filesystem reads its own
    ``AWS_*`` variables.

    Returns:
        The Prefect settings that make every process persist results there
        (set them on workers, Dask workers and callers).
    """
    from prefect.filesystems import RemoteFileSystem
    from prefect.settings import PREFECT_API_URL, temporary_settings

    basepath = f"{storage_url.rstrip('/')}/prefect-results"
    with temporary_settings({PREFECT_API_URL: api_url}):
        RemoteFileSystem(basepath=basepath).save(name, overwrite=True)
    return {
        "PREFECT_RESULTS_PERSIST_BY_DEFAULT": "true",
        # Tasks keep their results in memory: a persisted task result turns on Prefect's default
        # cache (inputs + run), and a task a flow polls with the same inputs would answer from it.
        "PREFECT_TASKS_DEFAULT_PERSIST_RESULT": "false",
        "PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK": f"remote-file-system/{name}",
    }


def start_prefect_server(
    home: Path | None = None, port: int | None = None, timeout: float = 120.0
) -> tuple[ServiceRecord, str]:
    """Start only a Prefect server (with its UI, scheduler and automation services) and wait for it.

    The server keeps its database under ``home/prefect`` and logs to
    ``home/run/prefect-server.log``. Stop it with :func:`stop_service`.

    Returns:
        The service record and the API URL (``http://127.0.0.1:PORT/api``).
    """
    home = (home or get_settings().resolved_home()).absolute()
    run = run_dir(home)
    run.mkdir(parents=True, exist_ok=True)
    (home / "prefect").mkdir(parents=True, exist_ok=True)
    port = choose_port(port, DEFAULT_PORTS["prefect"], "Prefect")
    api_url = f"http://{HOST}:{port}/api"
    record = spawn_service("prefect-server", prefect_server_command(port), service_env(home), run, api_url)
    try:
        wait_until(record, lambda: http_ok(f"{api_url}/health"), timeout, "answering")
    except BaseException:
        stop_service(record)
        raise
    return record, api_url


def deploy_prefect_yaml(
    api_url: str,
    names: list[str] | None = None,
    project_dir: Path | None = None,
    home: Path | None = None,
    timeout: float = 300.0,
) -> str:
    """Register the deployments of ``prefect.yaml`` (all, or ``names``) with the server at ``api_url``.

    Runs ``prefect --no-prompt deploy`` in ``project_dir`` (default: the
    working directory), so the pull step records that folder as where the
    worker runs the flows. Creates the ``mlops-process`` pool first when
    missing.

    Returns:
        The command's output.

    Raises:
        StackError: The command failed; the message holds the end of its output.
    """
    home = (home or get_settings().resolved_home()).absolute()
    env = {**service_env(home), "PREFECT_API_URL": api_url}
    ensure_work_pool(api_url, env)
    selection = [arg for name in names for arg in ("--name", name)] if names else ["--all"]
    done = subprocess.run(
        [*prefect_cli(), "--no-prompt", "deploy", *selection],
        cwd=project_dir or Path.cwd(),
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    output = done.stdout + done.stderr
    if done.returncode != 0:
        raise StackError(f"prefect deploy {' '.join(selection)} failed:\n{output[-2000:]}")
    return output
