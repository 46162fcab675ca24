"""Compaction of the platform's Parquet folders: the prediction log and the offline feature store.

Appends leave many small files (the model server writes one per model and
day every flush); reads slow down with their number. These tasks merge each
partition's files into one, atomically for readers (see
:meth:`storage.monitoring.prediction_log.PredictionLog.compact`), and the
``compact-files`` flow runs them daily.

Example:
    >>> print(compaction_markdown({"prediction_log": {"files_before": 9, "files_after": 2,
    ...     "partitions": 2, "rows": 40, "conflicts": 0, "skipped": []}, "feature_groups": {}}))
    # Compaction
    <BLANKLINE>
    | part | files before | files after | partitions merged | rows |
    |---|---|---|---|---|
    | prediction log | 9 | 2 | 2 | 40 |
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from prefect import task

from storage.monitoring.prediction_log import PredictionLog

__all__ = ["compact_feature_groups", "compact_prediction_log", "compaction_markdown", "publish_compaction"]

logger = logging.getLogger(__name__)
_KEYS = ("files_before", "files_after", "partitions", "rows")


def _plain(result: Any) -> dict[str, Any]:
    """A compaction result as plain data (``as_dict()``, a dataclass, or a mapping)."""
    if hasattr(result, "as_dict"):
        return dict(result.as_dict())
    if dataclasses.is_dataclass(result) and not isinstance(result, type):
        return dataclasses.asdict(result)
    return dict(result)


@task(name="compact-prediction-log")
def compact_prediction_log(root: str | None = None, min_files: int = 2) -> dict[str, Any]:
    """Merge the prediction log's small files (all models); ``root`` defaults to the settings' log."""
    log = PredictionLog(root) if root else PredictionLog.from_settings()
    return log.compact(min_files=min_files).as_dict()


@task(name="compact-feature-groups")
def compact_feature_groups(min_files: int = 2) -> dict[str, dict[str, Any]]:
    """Merge each offline feature group's small files, where the offline store can compact.

    Returns one result per group; empty when the store has no ``compact``.
    """
    from storage.features.store import FeatureStore

    store = FeatureStore.from_settings()
    try:
        compact = getattr(store.offline, "compact", None)
        if compact is None:
            logger.info("the offline feature store cannot compact yet: feature groups left as they are")
            return {}
        return {g.name: _plain(compact(g.name, min_files=min_files)) for g in store.definitions.list_groups()}
    finally:
        store.close()


def compaction_markdown(summary: dict[str, Any]) -> str:
    """A Markdown table of a compaction run's summary (the flow's artifact)."""
    rows = [("prediction log", summary["prediction_log"])]
    rows += [(f"feature group `{name}`", r) for name, r in sorted(summary["feature_groups"].items())]
    lines = [
        "# Compaction",
        "",
        "| part | files before | files after | partitions merged | rows |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {part} | " + " | ".join(str(r.get(k, "")) for k in _KEYS) + " |" for part, r in rows]
    skipped = [s for _, r in rows for s in r.get("skipped", [])]
    if skipped:
        lines += ["", "Left alone (a file does not read back):", *[f"- `{s}`" for s in skipped]]
    return "\n".join(lines)


@task(name="publish-compaction")
def publish_compaction(summary: dict[str, Any]) -> str:
    """Log the summary and publish it as the Markdown artifact ``compact-files``; returns the Markdown."""
    from prefect.artifacts import create_markdown_artifact

    markdown = compaction_markdown(summary)
    plog = summary["prediction_log"]
    logger.info("prediction log: %s files -> %s", plog["files_before"], plog["files_after"])
    create_markdown_artifact(markdown=markdown, key="compact-files", description="files merged by compaction")
    return markdown
