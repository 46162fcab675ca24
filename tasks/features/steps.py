"""Prefect tasks over the feature store.

Each task opens the store from the ``MLOPS_*`` settings, does one thing and
returns plain dictionaries, so flows pass group names, paths and times rather
than connections or frames. The plain functions (``load_training_set``,
``statistics_table``) are what the training pipeline and tests call directly.

Example:
    >>> from prefect import flow
    >>> from tasks.features.steps import materialize_group
    >>> @flow
    ... def refresh() -> int:
    ...     return materialize_group("trips")["rows"]
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
from prefect import task
from prefect.artifacts import create_table_artifact
from prefect.runtime import flow_run

from storage.errors import ValidationError
from storage.features.stats import statistics_table
from storage.features.store import FeatureStore, read_table
from storage.objectstore import Place


def open_feature_store() -> FeatureStore:
    """The feature store ``MLOPS_*`` points at."""
    return FeatureStore.from_settings()


def _flow_run_id() -> str | None:
    try:
        value = flow_run.get_id()
    except Exception:  # outside a run
        return None
    return str(value) if value else None


def load_training_set(
    entity_source: str | Path,
    features: list[str],
    *,
    timestamp_column: str = "event_timestamp",
    output_path: str | Path | None = None,
    store: FeatureStore | None = None,
) -> dict[str, Any]:
    """The training pipeline's feature-store data source.

    Reads the entity table (join keys, timestamps, labels) from a file, joins
    ``features`` point-in-time correctly and returns the frame with the
    feature versions used (``feature_refs``, for the model version's lineage)
    and the null share per feature. With ``output_path`` (a file path or an
    fsspec URL such as ``s3://bucket/sets/train.parquet``) the frame is also
    written there as Parquet, atomically; ``path`` is then its URI.
    """
    own = store is None
    fs = store or open_feature_store()
    try:
        result = fs.get_historical_features(
            read_table(entity_source), features, timestamp_column=timestamp_column
        )
    finally:
        if own:
            fs.close()
    out: dict[str, Any] = {
        "frame": result.frame,
        "feature_refs": result.feature_refs,
        "null_share": result.null_share,
        "path": None,
    }
    if output_path is not None:
        out["path"] = write_frame(result.frame, output_path)
    return out


def write_frame(frame: pd.DataFrame, output_path: str | Path) -> str:
    """Write ``frame`` as Parquet to a file path or fsspec URL atomically; return the file's URI.

    Example:
        >>> import tempfile
        >>> path = write_frame(pd.DataFrame({"x": [1]}), f"{tempfile.mkdtemp()}/sets/a.parquet")
        >>> pd.read_parquet(path)["x"].tolist()
        [1]
    """
    folder, _, name = str(output_path).rpartition("/")
    if not name:
        raise ValidationError(f"output_path {output_path}: names a folder; give a file name (.parquet)")
    place = Place(folder or ".")
    path = place.path(name)
    place.write_table(path, pa.Table.from_pandas(frame, preserve_index=False))
    return place.uri(path)


@task(name="ingest-feature-batch", retries=2, retry_delay_seconds=1)
def ingest_feature_batch(group: str, path: str) -> dict[str, Any]:
    """Validate the batch in ``path`` against ``group`` and write it (idempotent by content hash)."""
    store = open_feature_store()
    try:
        return store.ingest(group, read_table(path)).to_dict()
    finally:
        store.close()


@task(name="list-feature-groups")
def list_feature_groups(groups: list[str] | None = None) -> list[str]:
    """``groups`` as given, or the name of every registered feature group."""
    if groups is not None:
        return list(groups)
    store = open_feature_store()
    try:
        return [g.name for g in store.definitions.list_groups()]
    finally:
        store.close()


@task(name="materialize-feature-group", retries=2, retry_delay_seconds=1)
def materialize_group(
    group: str, start: datetime | None = None, end: datetime | None = None
) -> dict[str, Any]:
    """Materialize one window of ``group`` to the online store (incremental by default)."""
    store = open_feature_store()
    try:
        return store.materialize(group, start, end).to_dict()
    finally:
        store.close()


@task(name="compute-feature-statistics", retries=1)
def compute_feature_statistics(
    group: str, start: datetime | None = None, end: datetime | None = None, reference: bool = False
) -> dict[str, dict[str, Any]]:
    """Compute and store per-feature statistics of ``group`` over ``[start, end)``."""
    store = open_feature_store()
    try:
        return store.compute_statistics(group, start, end, reference=reference, flow_run_id=_flow_run_id())
    finally:
        store.close()


@task(name="publish-feature-statistics")
def publish_statistics(group: str, stats: dict[str, dict[str, Any]]) -> str:
    """Publish ``stats`` as a Prefect table artifact keyed ``feature-stats-<group>``."""
    key = f"feature-stats-{group.lower().replace('_', '-')}"
    create_table_artifact(
        key=key, table=statistics_table(stats), description=f"Feature statistics of {group}"
    )
    return key


@task(name="build-training-set", retries=1)
def build_training_set(
    entity_source: str, features: list[str], output_path: str, timestamp_column: str = "event_timestamp"
) -> dict[str, Any]:
    """Write a point-in-time training set to ``output_path``; return its path, refs and null shares."""
    out = load_training_set(
        entity_source, features, timestamp_column=timestamp_column, output_path=output_path
    )
    out.pop("frame")
    return out


@task(name="record-feature-lineage")
def record_feature_lineage(feature_refs: list[str], model: str, version: str | int) -> list[str]:
    """Record that ``model``/``version`` was trained on ``feature_refs``."""
    store = open_feature_store()
    try:
        return store.definitions.record_usage(
            feature_refs, model=model, version=version, flow_run_id=_flow_run_id()
        )
    finally:
        store.close()
