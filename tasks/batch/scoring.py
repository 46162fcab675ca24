"""Batch scoring functions: load a version's runtime once per process, score a chunk, record the job.

A chunk's rows keep every input column and gain the prediction columns:
``prediction`` (the label, or a regressor's value), ``probability_<class>``
per class for a classifier, then ``model`` and ``model_version``. Values are
checked as the model server checks them (the same codec): a value that does
not fit its signature type fails the job with the file row named.

The version's runtime is the model server's (:func:`serving.runtimes.load_runtime`,
files read through the registry with their checksums verified), so a batch
score equals the online one for the same row.

Nothing here imports Prefect: the ``score-chunk`` Prefect task wraps
:func:`score_chunk_fn` in :mod:`tasks.batch.steps`, and ``mlops predict
--no-flow`` (:mod:`tasks.batch.local`) calls the same functions without a flow
run, so a shell that never talks to Prefect does not pay for importing it.

Example:
    >>> prediction_columns("classification", (0, 1))
    ['prediction', 'probability_0', 'probability_1', 'model', 'model_version']
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from serving.codec import RequestError, convert_column
from serving.protocol import Batch
from serving.runtimes import Runtime, load_runtime
from storage.errors import NotFoundError, ValidationError
from storage.registry.core import Registry
from tasks.batch.files import Chunk, read_chunk, write_part

_LOCK = threading.Lock()
#: Where the version comes from when none is named: the serving default.
DEFAULT_REFS = ("@champion", "production", "latest")


@dataclass(frozen=True)
class BatchJob:
    """What one batch job scores: a version (resolved to its number), the input, the output."""

    job_id: str
    model: str
    version: int
    input: str
    output: str
    trust_pickle: bool = False


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


@functools.lru_cache(maxsize=8)
def _runtime(database_url: str, artifact_root: str, model: str, version: int, trust_pickle: bool) -> Runtime:
    registry = Registry.open(database_url, artifact_root)
    mv = registry.get_version(model, version)
    return load_runtime(
        mv.signature,
        lambda name: registry.load_artifact(model, version, name),
        {a.name for a in mv.artifacts},
        trust_pickle=trust_pickle,
    )


def runtime_for(model: str, version: int, *, trust_pickle: bool = False) -> Runtime:
    """The version's runtime from the ``MLOPS_*`` registry, loaded once per process."""
    from blocks.settings import get_settings

    s = get_settings()
    with _LOCK:
        return _runtime(s.resolved_database_url(), s.resolved_artifact_root(), model, version, trust_pickle)


def prediction_columns(task: str, classes: tuple[Any, ...]) -> list[str]:
    """The columns a chunk gains (see the module docs)."""
    probs = [] if task == "regression" else [f"probability_{c}" for c in classes]
    return ["prediction", *probs, "model", "model_version"]


def _column(table: pa.Table, name: str, ctype: str, nullable: bool, offset: int | None) -> np.ndarray:
    col = table.column(name)
    if ctype == "string":
        arr = np.asarray(col.to_pylist(), dtype=object)
    elif ctype == "float":
        arr = col.cast(pa.float64()).to_numpy(zero_copy_only=False) if col.null_count else col.to_numpy()
    else:
        arr = np.asarray(col.to_pylist(), dtype=object) if col.null_count else col.to_numpy()
    try:
        return convert_column(arr, ctype, f"column {name!r}", nullable=nullable)
    except RequestError as exc:  # name the row of the file, not of the chunk
        message = exc.message
        head, _, rest = message.partition(": row ")
        number, _, tail = rest.partition(" ")
        if offset is not None and number.isdigit():
            message = f"{head}: row {int(number) + offset} of the file {tail}"
        raise ValidationError(message) from None


def score_table(
    runtime: Runtime, table: pa.Table, model: str, version: int, offset: int | None = 0, where: str = ""
) -> pa.Table:
    """``table`` with the prediction columns appended.

    ``offset`` is the chunk's first row in the file (None: unknown, errors name the chunk's row);
    ``where`` prefixes error messages.
    """
    spec = runtime.spec
    missing = [n for n in spec.names if n not in table.column_names]
    if missing:
        raise ValidationError(
            f"the input lacks column(s) {', '.join(missing)} of {model} v{version} "
            f"(its inputs are: {', '.join(spec.names)})"
        )
    n = table.num_rows
    if n == 0:
        columns: dict[str, Any] = {}
    else:
        try:
            decoded = {c: _column(table, c, spec.types[c], c in spec.nullable, offset) for c in spec.names}
        except ValidationError as exc:
            raise ValidationError(f"{where}{exc}") from None
        batch = Batch(decoded, n)
        pred = runtime.predict(batch)
        columns = {}
        if pred.values is not None:
            columns["prediction"] = pred.values
        else:
            columns["prediction"] = pred.labels
            if pred.probabilities is not None:
                for j, c in enumerate(runtime.classes or range(pred.probabilities.shape[1])):
                    columns[f"probability_{c}"] = pred.probabilities[:, j]
    out = table
    for name in prediction_columns(runtime.task, runtime.classes):
        if name == "model":
            out = out.append_column(name, pa.array([model] * n, type=pa.string()))
        elif name == "model_version":
            out = out.append_column(name, pa.array(np.full(n, version, dtype=np.int64)))
        elif name in columns:
            out = out.append_column(name, pa.array(np.asarray(columns[name])))
        else:
            out = out.append_column(name, pa.array([], type=pa.float64()))
    return out


def score_chunk_fn(job: BatchJob, chunk: Chunk) -> int:
    """Read, score and write one chunk as a part of ``job``'s output; returns its rows."""
    runtime = runtime_for(job.model, job.version, trust_pickle=job.trust_pickle)
    table = read_chunk(chunk, dict(runtime.spec.types))
    where = f"{job.input}: " if chunk.first_row is not None else f"{job.input} (chunk {chunk.index}): "
    scored = score_table(runtime, table, job.model, job.version, chunk.first_row, where)
    write_part(scored, job.output, job.job_id, chunk.index)
    return int(scored.num_rows)


def record_lineage(registry: Registry, job: BatchJob, rows: int) -> dict[str, str]:
    """Record the job: input and output datasets (registered when new), and who used what.

    The version used the input (``batch_scored``), and the output was derived
    from the input (``derived_from``); the output is registered with the same
    PII flag and retention as the input.
    """
    import hashlib

    from storage.governance.lineage import LineageStore

    lineage = LineageStore(registry)
    by_uri = {d.uri: d for d in lineage.list_datasets()}

    def asset(uri: str, kind: str, pii: bool, retention: int | None, steps: list[str]) -> str:
        found = by_uri.get(uri)
        if found is not None:
            return found.name
        stem = uri.rstrip("/").rsplit("/", 1)[-1].rsplit(".", 1)[0]
        safe = "".join(ch if ch.isalnum() or ch in "_-." else "-" for ch in stem)[:80] or "data"
        name = f"batch-{kind}/{job.model}/{safe}-{hashlib.sha256(uri.encode()).hexdigest()[:8]}"
        lineage.register_dataset(
            name, uri=uri, source=f"batch-predict {job.model}/{job.version}" if kind == "output" else "file",
            owner=registry.actor, contains_pii=pii, retention_days=retention, transformations=steps,
            description=f"{kind} of batch job {job.job_id}",
        )  # fmt: skip
        return name

    source = asset(job.input, "input", False, None, [])
    src = lineage.get_dataset(source)
    steps = [f"scored by {job.model}/{job.version} (batch job {job.job_id}, {rows} rows)"]
    target = asset(job.output, "output", src.contains_pii, src.retention_days, steps)
    lineage.record_usage(source, user_kind="model_version", user_name=f"{job.model}/{job.version}",
                         relation="batch_scored")  # fmt: skip
    lineage.record_usage(source, user_kind="dataset", user_name=target, relation="derived_from")
    return {"input": source, "output": target}
