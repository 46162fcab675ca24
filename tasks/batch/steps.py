"""The Prefect side of batch scoring: the ``score-chunk`` task and running a job's chunks on a task runner.

:func:`score_chunks` submits one ``score-chunk`` task run per chunk to an
entered Dask task runner and waits for them in file order;
:func:`cluster_threads` tells :func:`tasks.batch.files.plan_chunks` how many
about-equal chunks keep every worker thread busy to the end. The ``batch-predict`` flow calls it inside its
own flow run, so the task runs are children of that run (no nested flow run
to create and tear down per job).

Example:
    >>> score_chunk.name, score_chunk.retries
    ('score-chunk', 2)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.batch.files import Chunk, discard_parts
from tasks.batch.scoring import BatchJob, score_chunk_fn

score_chunk = task(name="score-chunk", retries=2, retry_delay_seconds=1, cache_policy=NO_CACHE)(
    score_chunk_fn
)


def cluster_threads(client: Any) -> int:
    """The worker threads of the Dask cluster behind ``client`` (at least 1)."""
    return max(1, sum(client.nthreads().values()))


def score_chunks(
    runner: Any, job: BatchJob, chunks: list[Chunk], on_chunk: Callable[[int, int], None] | None = None
) -> int:
    """Score ``chunks`` of ``job.input`` as parts of ``job.output`` on the entered ``runner``; returns rows.

    ``on_chunk(index, rows_so_far)`` is called as each chunk is done, in file
    order. When a chunk fails (after its retries), the parts written so far
    are removed and the error raised.
    """
    futures = [runner.submit(score_chunk, {"job": job, "chunk": chunk}) for chunk in chunks]
    rows = 0
    try:
        for i, future in enumerate(futures):
            rows += int(future.result())
            if on_chunk is not None:
                on_chunk(i, rows)
    except Exception:
        for future in futures:
            future.wait()  # a chunk still running would write its part after the clean-up
        discard_parts(job.output, job.job_id)
        raise
    return rows
