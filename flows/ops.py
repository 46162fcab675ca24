"""Operations self-check: the ``cluster-check`` flow runs a few tasks on the Dask cluster.

``mlops up`` starts a Prefect worker whose environment carries
``MLOPS_DASK_ADDRESS``; a run of this flow started through the ``cluster-check``
deployment shows that runs of that worker reach the Prefect server and fan
their tasks out to that Dask cluster.

Example:
    >>> from flows.ops import cluster_check
    >>> cluster_check.name
    'cluster-check'
"""

from __future__ import annotations

import os
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_table_artifact

from tasks.cluster import ADDRESS_ENV, resolve_address, task_runner_for


@task(name="dask-worker-address")
def worker_address(index: int) -> dict[str, Any]:
    """Where task ``index`` ran: the Dask worker's address and the process id."""
    from distributed import get_worker

    try:
        worker = get_worker().address
    except ValueError:  # not inside a Dask worker
        worker = None
    return {"index": index, "worker": worker, "pid": os.getpid()}


@flow(name="cluster-probe")
def _probe(n_tasks: int) -> list[dict[str, Any]]:
    futures = [worker_address.submit(i) for i in range(n_tasks)]
    return [f.result() for f in futures]


@flow(name="cluster-check")
def cluster_check(n_tasks: int = 4, address: str | None = None) -> dict[str, Any]:
    """Run ``n_tasks`` small tasks on the Dask cluster and report which workers ran them.

    Args:
        n_tasks: How many tasks to submit.
        address: Dask scheduler address; ``MLOPS_DASK_ADDRESS`` when not given.

    Returns:
        ``{"scheduler": address, "workers": [...distinct worker addresses...], "tasks": [...]}``;
        the same rows are published as the table artifact ``cluster-check``, so
        a caller that starts the flow through its deployment can read them from
        the Prefect API.

    Raises:
        ValueError: When no scheduler address is given or set, or ``n_tasks`` < 1.
    """
    scheduler = resolve_address(address)
    if not scheduler:
        raise ValueError(f"no Dask scheduler: pass address= or set {ADDRESS_ENV}")
    if n_tasks < 1:
        raise ValueError(f"n_tasks must be at least 1, got {n_tasks}")
    runner: Any = task_runner_for(scheduler)
    tasks = _probe.with_options(task_runner=runner)(n_tasks)
    workers = sorted({t["worker"] for t in tasks if t["worker"]})
    create_table_artifact(
        table=[{"scheduler": scheduler, **t} for t in tasks],
        key="cluster-check",
        description=f"{len(tasks)} tasks on {len(workers)} Dask workers of {scheduler}",
    )
    return {"scheduler": scheduler, "workers": workers, "tasks": tasks}
