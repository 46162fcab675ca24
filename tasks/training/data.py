"""Stage 1 of training: read the dataset and fingerprint it.

A dataset comes from a CSV, Parquet or JSON file, or from the feature store as
a point-in-time training set. Its SHA-256 content hash goes into the model
version's lineage and into the cache keys of the pipeline's stages, so a
changed file is never served from an old cache.

Example:
    >>> import tempfile, os, pandas as pd
    >>> path = os.path.join(tempfile.mkdtemp(), "d.csv")
    >>> pd.DataFrame({"x": [1, 2], "y": [0, 1]}).to_csv(path, index=False)
    >>> loaded = read_dataset(path)
    >>> loaded.frame.shape, len(loaded.dataset_hash)
    ((2, 2), 64)
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import fsspec
import pandas as pd
from prefect import task
from prefect.cache_policies import CacheKeyFnPolicy
from prefect.context import TaskRunContext

from blocks.pipeline import PipelineConfig
from blocks.settings import get_settings
from storage.errors import ValidationError
from storage.objectstore import is_remote, read_frame
from tasks.retry import maybe_fail, retry_unless_bad_input

READERS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".json": "json", ".jsonl": "json"}

#: Fields of the config that do not change what stages 1-5 compute.
RUNTIME_FIELDS = (
    "dask_address", "n_workers", "output_dir", "cache", "description", "tags", "model_tags", "device",
)  # fmt: skip


@dataclass
class LoadedData:
    """A dataset and where it came from."""

    frame: pd.DataFrame
    dataset_uri: str
    dataset_hash: str
    feature_refs: list[str] = field(default_factory=list)


def file_hash(path: str | Path) -> str:
    """SHA-256 of a file's bytes.

    Example:
        >>> import tempfile, os
        >>> p = os.path.join(tempfile.mkdtemp(), "f")
        >>> _ = open(p, "wb").write(b"abc")
        >>> file_hash(p)[:12]
        'ba7816bf8f01'
    """
    digest = hashlib.sha256()
    fs, where = fsspec.core.url_to_fs(str(path))
    with fs.open(where, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _is_file(path: str | Path) -> bool:
    """Whether ``path`` (a local path or an fsspec URL) is a file."""
    fs, where = fsspec.core.url_to_fs(str(path))
    fs.invalidate_cache()
    return bool(fs.isfile(where))


def frame_hash(frame: pd.DataFrame) -> str:
    """SHA-256 over a frame's column names, dtypes and row hashes (order-sensitive).

    Example:
        >>> frame_hash(pd.DataFrame({"a": [1]})) == frame_hash(pd.DataFrame({"a": [1]}))
        True
    """
    digest = hashlib.sha256(json.dumps([[str(c), str(t)] for c, t in frame.dtypes.items()]).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()


def _reader(path: Path) -> str:
    kind = READERS.get(path.suffix.lower())
    if kind is None:
        raise ValidationError(
            f"data source {path}: unsupported file type {path.suffix!r}; use CSV, Parquet or JSON"
        )
    return kind


def read_dataset(path: str | Path) -> LoadedData:
    """Read a CSV, Parquet or JSON (or JSON lines) file, local or in an object store; errors name it."""
    if is_remote(path):
        frame = read_frame(path)
        if frame.empty:
            raise ValidationError(f"data source {path} has no rows")
        return LoadedData(frame, str(path), file_hash(path))
    file = Path(path)
    kind = _reader(file)
    if not file.is_file():
        raise ValidationError(f"data source {file} does not exist")
    if file.stat().st_size == 0:
        raise ValidationError(f"data source {file} is empty")
    try:
        if kind == "csv":
            frame = pd.read_csv(file)
        elif kind == "parquet":
            frame = pd.read_parquet(file)
        else:
            frame = pd.read_json(file, lines=file.suffix.lower() == ".jsonl" or _is_json_lines(file))
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise ValidationError(f"data source {file} cannot be read as {kind}: {exc}") from exc
    if frame.empty:
        raise ValidationError(f"data source {file} has no rows")
    return LoadedData(frame, str(file), file_hash(file))


def _is_json_lines(file: Path) -> bool:
    with open(file, "rb") as fh:
        head = fh.read(1)
    return head == b"{"


def load_dataset(config: PipelineConfig) -> LoadedData:
    """The config's dataset: a file, or the feature store's point-in-time training set."""
    if config.feature_store is None:
        return read_dataset(str(config.data_source))
    from tasks.features.steps import load_training_set

    source = config.feature_store
    out = load_training_set(source.entity_source, source.features, timestamp_column=source.timestamp_column)
    frame: pd.DataFrame = out["frame"]
    if source.drop_keys:
        frame = frame.drop(columns=[source.timestamp_column], errors="ignore")
    if frame.empty:
        raise ValidationError(f"feature-store training set from {source.entity_source} has no rows")
    return LoadedData(frame, config.source_uri(), frame_hash(frame), list(out["feature_refs"]))


def source_fingerprint(config: PipelineConfig) -> str:
    """A cheap identity of the data source: the file's hash, or the feature-store request.

    Feature-store sources hash the entity file and the requested features; the
    feature values themselves are hashed after loading (``LoadedData.dataset_hash``).
    """
    if config.feature_store is None:
        path = str(config.data_source)
        return file_hash(path) if _is_file(path) else f"missing:{path}"
    src = config.feature_store
    entity = src.entity_source
    base = file_hash(entity) if _is_file(entity) else f"missing:{entity}"
    return hashlib.sha256(f"{base}|{','.join(src.features)}|{src.timestamp_column}".encode()).hexdigest()


def config_token(config: PipelineConfig, fingerprint: str) -> str:
    """The cache token of stages 1-5: the config (minus runtime-only fields) and the data's identity.

    Example:
        >>> a = PipelineConfig(name="m", data_source="d.csv", target_column="y")
        >>> config_token(a, "f") == config_token(a.model_copy(update={"n_workers": 8}), "f")
        True
    """
    data = config.model_dump(mode="json", exclude=set(RUNTIME_FIELDS))
    return hashlib.sha256(f"{json.dumps(data, sort_keys=True)}|{fingerprint}".encode()).hexdigest()


def cache_location() -> str:
    """Where stage results are cached: ``cache`` under ``MLOPS_STORAGE_URL``, else ``MLOPS_HOME/cache``."""
    return get_settings().shared_path("cache")


def _token_key(context: TaskRunContext, parameters: dict[str, Any]) -> str | None:
    token = parameters.get("cache_token")
    if not token:
        return None
    return f"{context.task.name}-{token}"


#: Cache policy of the pipeline's stages: the task's name and the ``cache_token`` parameter.
TOKEN_CACHE = CacheKeyFnPolicy(cache_key_fn=_token_key)
CACHE_EXPIRATION = timedelta(days=7)


def stage_cache_options(enabled: bool = True) -> dict[str, Any]:
    """``Task.with_options`` keyword arguments that cache a stage at :func:`cache_location`.

    Prefect needs result storage saved server-side, so a block named after the
    location (``mlops-cache-<hash>``) is saved on first use: a
    ``RemoteFileSystem`` on an object store, so a stage computed on one worker
    is reused on another, else a ``LocalFileSystem``. The remote block stores
    no credentials: each process's fsspec reads them (and ``AWS_ENDPOINT_URL``)
    from its own environment. When the store's fsspec implementation is not
    installed, caching is off for the run and a warning says why. Call this
    inside a flow run (or with a Prefect API).

    Example:
        >>> sorted(stage_cache_options(enabled=False))
        ['cache_policy', 'persist_result']
    """
    from prefect.cache_policies import NO_CACHE

    off = {"cache_policy": NO_CACHE, "persist_result": False}
    if not enabled:
        return off
    location = cache_location()
    storage = _remote_storage(location) if is_remote(location) else _local_storage(location)
    if storage is None:
        return off
    return {
        "cache_policy": TOKEN_CACHE,
        "result_storage": storage,
        "persist_result": True,
        "cache_expiration": CACHE_EXPIRATION,
    }


def _block_name(location: str) -> str:
    return f"mlops-cache-{hashlib.sha256(location.encode()).hexdigest()[:12]}"


def _local_storage(folder: str) -> str:
    from prefect.filesystems import LocalFileSystem

    Path(folder).mkdir(parents=True, exist_ok=True)
    name = _block_name(folder)
    LocalFileSystem(basepath=folder).save(name, overwrite=True)
    return f"local-file-system/{name}"


def _remote_storage(url: str) -> str | None:
    """The saved ``RemoteFileSystem`` block's slug, or None (logged) when the store cannot be used."""
    import fsspec
    from prefect.filesystems import RemoteFileSystem

    protocol = url.split("://", 1)[0]
    try:
        fsspec.get_filesystem_class(protocol)
    except (ImportError, ValueError) as exc:
        _log_warning(
            f"stage cache off for this run: the stage cache at {url} (MLOPS_STORAGE_URL) needs fsspec's "
            f"{protocol!r} filesystem, which cannot be loaded here: {exc}"
        )
        return None
    name = _block_name(url)
    RemoteFileSystem(basepath=url).save(name, overwrite=True)
    return f"remote-file-system/{name}"


def _log_warning(message: str) -> None:
    """To the run's log inside a flow or task run, else to this module's logger."""
    from prefect.exceptions import MissingContextError
    from prefect.logging import get_run_logger

    try:
        get_run_logger().warning(message)
    except MissingContextError:
        logging.getLogger(__name__).warning(message)


@task(name="load-data", retries=2, retry_delay_seconds=1, retry_condition_fn=retry_unless_bad_input)
def load_data(config: PipelineConfig, cache_token: str | None = None) -> LoadedData:
    """Stage 1: the dataset (cached by config and source content)."""
    maybe_fail("load")
    return load_dataset(config)
