"""Where the pipeline's tasks run: a Dask cluster through ``prefect_dask.DaskTaskRunner``.

``task_runner_for(address)`` connects to a running scheduler (the config's
``dask_address``, else ``MLOPS_DASK_ADDRESS``); without one it starts a local
in-process cluster for the run. Worker processes each need the Prefect API, so
the local default uses threads; a shared cluster with process workers is
started once (e.g. ``dask scheduler`` + ``dask worker``) with ``PREFECT_API_URL``
set and passed by address.

Example:
    >>> runner = task_runner_for("tcp://127.0.0.1:8786")
    >>> runner.address
    'tcp://127.0.0.1:8786'
"""

from __future__ import annotations

import os

from prefect_dask import DaskTaskRunner

ADDRESS_ENV = "MLOPS_DASK_ADDRESS"


def resolve_address(address: str | None = None) -> str | None:
    """``address``, else ``MLOPS_DASK_ADDRESS``, else None (a local cluster).

    Example:
        >>> resolve_address("tcp://h:1")
        'tcp://h:1'
    """
    return address or os.environ.get(ADDRESS_ENV) or None


def task_runner_for(address: str | None = None, n_workers: int = 2) -> DaskTaskRunner:
    """A Dask task runner on ``address`` / ``MLOPS_DASK_ADDRESS``, or on a local cluster of ``n_workers``."""
    resolved = resolve_address(address)
    if resolved:
        return DaskTaskRunner(address=resolved)
    return DaskTaskRunner(
        cluster_kwargs={
            "n_workers": n_workers,
            "threads_per_worker": 1,
            "processes": False,
            "dashboard_address": ":0",
        }
    )
