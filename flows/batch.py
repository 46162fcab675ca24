"""The ``batch-predict`` flow: score a CSV or Parquet file with a registered version, on the Dask cluster.

The version reference (a number, ``@alias``, a stage, a semantic version; the
default is the ``champion`` alias, else the newest ``production`` version,
else the newest) is resolved once, so every chunk is scored by the same
version, which the output records in its ``model_version`` column. Chunks
fan out to the Dask cluster (``dask_address``, else ``MLOPS_DASK_ADDRESS``,
else a local cluster) as ``score-chunk`` task runs of this flow run; the
output is written under a temporary name and renamed into place once every
chunk has been scored, and lineage records the job (see
:mod:`tasks.batch.scoring`).

The cluster's task runner is entered in the flow body rather than given to a
nested flow: one flow run per job, not two (each run costs its creation,
state changes and the wait for its heartbeat thread on exit).

Example:
    >>> from flows.batch import batch_predict
    >>> batch_predict.name
    'batch-predict'
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from storage.registry.core import Registry
from tasks.batch.files import expand, file_format, merge_parts, plan_chunks
from tasks.batch.local import ChunkProgress
from tasks.batch.scoring import DEFAULT_REFS, BatchJob, record_lineage, resolve_version, runtime_for
from tasks.batch.steps import cluster_threads, score_chunks
from tasks.cluster import task_runner_for

__all__ = ["DEFAULT_REFS", "batch_predict", "resolve_version"]


@flow(name="batch-predict")
def batch_predict(
    model: str,
    input: str,
    output: str,
    version: str | None = None,
    chunk_rows: int = 250_000,
    dask_address: str | None = None,
    n_workers: int = 2,
    trust_pickle: bool = False,
    show_progress: bool = False,
) -> dict[str, Any]:
    """Score ``input`` (CSV or Parquet, a path or fsspec URL) with ``model@version`` into ``output``.

    Returns the job id, this flow run's id, model, version, rows, chunks,
    output bytes, seconds and the lineage dataset names.
    """
    src, dst = expand(input), expand(output)
    file_format(src), file_format(dst)  # refuse other formats before any work
    registry = Registry.from_settings()
    number = resolve_version(registry, model, version)
    job = BatchJob(uuid.uuid4().hex[:12], model, number, src, dst, trust_pickle)
    logger = get_run_logger()
    start = time.perf_counter()
    runtime_for(model, number, trust_pickle=trust_pickle)  # fail early, load once
    with task_runner_for(dask_address, n_workers) as runner:
        chunks = plan_chunks(src, chunk_rows=chunk_rows, parallel=cluster_threads(runner.client))
        with ChunkProgress(len(chunks), show_progress) as advance:

            def on_chunk(index: int, rows: int) -> None:
                advance(rows)
                logger.info("chunk %d/%d scored (%d rows so far)", index + 1, len(chunks), rows)

            rows = score_chunks(runner, job, chunks, on_chunk)
    size = merge_parts(dst, job.job_id, len(chunks))
    seconds = time.perf_counter() - start
    lineage = record_lineage(registry, job, rows)
    return {
        "job_id": job.job_id, "flow_run_id": str(flow_run.get_id()), "model": model, "version": number,
        "output": dst, "rows": rows, "chunks": len(chunks), "bytes": size, "seconds": round(seconds, 3),
        "lineage": lineage,
    }  # fmt: skip
