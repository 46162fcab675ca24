"""The ``batch-predict`` flow: score a CSV or Parquet file with a registered version, on the Dask cluster.

The version reference (a number, ``@alias``, a stage, a semantic version; the
default is the ``champion`` alias, else the newest ``production`` version,
else the newest) is resolved once, so every chunk is scored by the same
version, which the output records in its ``model_version`` column. Chunks
fan out to the Dask cluster (``dask_address``, else ``MLOPS_DASK_ADDRESS``,
else a local cluster); the output is written under a temporary name and
renamed into place once every chunk has been scored, and lineage records the
job (see :mod:`tasks.batch.scoring`).

Example:
    >>> from flows.batch import batch_predict
    >>> batch_predict.name
    'batch-predict'
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

from prefect import flow, get_run_logger

from storage.errors import NotFoundError
from storage.registry.core import Registry
from tasks.batch.files import expand, file_format, merge_parts, plan_chunks
from tasks.batch.scoring import BatchJob, record_lineage, runtime_for, score_chunk
from tasks.cluster import task_runner_for

DEFAULT_REFS = ("@champion", "production", "latest")


def resolve_version(registry: Registry, model: str, version: str | None) -> int:
    """The version number ``version`` points at now (the serving default when None)."""
    if version not in (None, ""):
        return registry.get_version(model, version).number
    for ref in DEFAULT_REFS:
        try:
            return registry.get_version(model, ref).number
        except NotFoundError:
            continue
    registry.get_model(model)
    raise NotFoundError(f"model {model!r} has no versions")


@flow(name="batch-predict-chunks")
def _score_chunks(job: dict[str, Any], chunk_rows: int, show_progress: bool = False) -> dict[str, Any]:
    the_job = BatchJob(**job)
    logger = get_run_logger()
    start = time.perf_counter()
    runtime_for(the_job.model, the_job.version, trust_pickle=the_job.trust_pickle)  # fail early, load once
    chunks = plan_chunks(the_job.input, chunk_rows=chunk_rows)
    futures = [score_chunk.submit(the_job, chunk) for chunk in chunks]
    rows = 0
    with _progress(len(chunks), show_progress) as advance:
        for i, future in enumerate(futures):
            rows += future.result()
            advance(rows)
            logger.info("chunk %d/%d scored (%d rows so far)", i + 1, len(chunks), rows)
    size = merge_parts(the_job.output, the_job.job_id, len(chunks))
    seconds = time.perf_counter() - start
    return {"rows": rows, "chunks": len(chunks), "bytes": size, "seconds": round(seconds, 3)}


class _progress:
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

    Returns the job id, model, version, rows, chunks, output bytes, seconds
    and the lineage dataset names.
    """
    src, dst = expand(input), expand(output)
    file_format(src), file_format(dst)  # refuse other formats before any work
    registry = Registry.from_settings()
    number = resolve_version(registry, model, version)
    job = BatchJob(uuid.uuid4().hex[:12], model, number, src, dst, trust_pickle)
    runner = task_runner_for(dask_address, n_workers)
    result = _score_chunks.with_options(task_runner=runner)(  # type: ignore[arg-type]
        {k: getattr(job, k) for k in BatchJob.__dataclass_fields__}, chunk_rows, show_progress
    )
    lineage = record_lineage(registry, job, result["rows"])
    return {"job_id": job.job_id, "model": model, "version": number, "output": dst, **result,
            "lineage": lineage}  # fmt: skip
