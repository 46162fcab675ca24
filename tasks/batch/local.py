"""Batch scoring without a Prefect flow run: the same chunks and functions, run from this process.

``mlops predict --no-flow`` (the default when no Prefect API is configured)
calls :func:`score_file`: the input is planned into the same chunks, each
chunk is scored by :func:`tasks.batch.scoring.score_chunk_fn` (the body of the
flow's ``score-chunk`` task) on a pool of threads in this process, or on the
Dask cluster at ``dask_address`` / ``MLOPS_DASK_ADDRESS`` as plain Dask tasks;
the parts are merged in input order into a temporary file renamed into place,
and lineage is recorded in the registry exactly as the flow records it.

What it leaves out is Prefect: no flow or task runs are recorded (nothing to
see in the Prefect UI) and a failed chunk is not retried; nothing of Prefect
is imported, so a fresh process neither loads it nor starts its temporary
server.

Example:
    >>> with ChunkProgress(total=3, enabled=False) as advance:
    ...     advance(100)
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from storage.registry.core import Registry
from tasks.batch.files import Chunk, discard_parts, expand, file_format, merge_parts, plan_chunks
from tasks.batch.scoring import BatchJob, record_lineage, resolve_version, runtime_for, score_chunk_fn

#: The variable :mod:`tasks.cluster` reads too (not imported here: it loads Prefect).
ADDRESS_ENV = "MLOPS_DASK_ADDRESS"


def score_file(
    model: str,
    input: str,
    output: str,
    *,
    version: str | None = None,
    chunk_rows: int = 250_000,
    workers: int = 2,
    dask_address: str | None = None,
    trust_pickle: bool = False,
    show_progress: bool = False,
) -> dict[str, Any]:
    """Score ``input`` with ``model@version`` into ``output`` from this process; the flow's result shape."""
    src, dst = expand(input), expand(output)
    file_format(src), file_format(dst)  # refuse other formats before any work
    registry = Registry.from_settings()
    number = resolve_version(registry, model, version)
    job = BatchJob(uuid.uuid4().hex[:12], model, number, src, dst, trust_pickle)
    start = time.perf_counter()
    runtime_for(model, number, trust_pickle=trust_pickle)  # fail early (and load once for the threads)
    address = dask_address or os.environ.get(ADDRESS_ENV) or None
    if address is None:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="score") as pool:
            chunks = plan_chunks(src, chunk_rows=chunk_rows, parallel=workers)
            futures: list[Any] = [pool.submit(score_chunk_fn, job, c) for c in chunks]
            rows = _collect(futures, chunks, job, show_progress)
    else:
        from distributed import Client

        with Client(address) as client:
            threads = max(1, sum(client.nthreads().values()))
            chunks = plan_chunks(src, chunk_rows=chunk_rows, parallel=threads)
            futures = [client.submit(score_chunk_fn, job, c, pure=False) for c in chunks]
            rows = _collect(futures, chunks, job, show_progress)
    size = merge_parts(dst, job.job_id, len(chunks))
    seconds = time.perf_counter() - start
    lineage = record_lineage(registry, job, rows)
    return {
        "job_id": job.job_id, "model": model, "version": number, "output": dst, "rows": rows,
        "chunks": len(chunks), "bytes": size, "seconds": round(seconds, 3), "lineage": lineage,
    }  # fmt: skip


def _collect(futures: list[Any], chunks: list[Chunk], job: BatchJob, show_progress: bool) -> int:
    """Rows of the chunks' futures, waited for in file order; on a failure, clean up and raise."""
    rows = 0
    try:
        with ChunkProgress(len(chunks), show_progress) as advance:
            for future in futures:
                rows += int(future.result())
                advance(rows)
    except Exception:
        for future in futures:
            if isinstance(future, Future):
                future.cancel()
        for future in futures:
            with contextlib.suppress(BaseException):  # the first error is the one raised
                future.result()  # let a chunk still running finish before its part is removed
        discard_parts(job.output, job.job_id)
        raise
    return rows


class ChunkProgress:
    """A rich progress bar of scored chunks on stderr (nothing when off)."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total, self.enabled = total, enabled
        self.bar: Any = None

    def __enter__(self) -> Callable[[int], None]:
        if not self.enabled:
            return lambda rows: None
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.bar = Progress(
            TextColumn("scoring"), BarColumn(), MofNCompleteColumn(),
            TextColumn("chunks · {task.fields[rows]:,} rows"), TimeElapsedColumn(),
            console=Console(stderr=True), transient=False,
        )  # fmt: skip
        self.bar.start()
        task_id = self.bar.add_task("chunks", total=self.total, rows=0)

        def advance(rows: int) -> None:
            assert self.bar is not None
            self.bar.update(task_id, advance=1, rows=rows)

        return advance

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()
