"""The ``compact-files`` flow: merge the small Parquet files appends leave behind.

Thin wiring of :mod:`tasks.monitoring.compaction`: compact the prediction log
(every model) and the offline feature store's groups, then publish a summary
as the Markdown artifact ``compact-files``. Readers and writers carry on
meanwhile; the ``compact-files`` deployment runs it daily.

Example:
    >>> from flows.compaction import compact_files
    >>> compact_files.name
    'compact-files'
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from tasks.monitoring.compaction import compact_feature_groups, compact_prediction_log, publish_compaction


@flow(name="compact-files")
def compact_files(min_files: int = 2, prediction_log_root: str | None = None) -> dict[str, Any]:
    """Compact the prediction log and the feature groups; returns and publishes the summary.

    Args:
        min_files: Partitions with fewer files are left as they are (at least 2).
        prediction_log_root: The log's folder or URL (the settings' log when omitted).
    """
    summary = {
        "prediction_log": compact_prediction_log(prediction_log_root, min_files),
        "feature_groups": compact_feature_groups(min_files),
    }
    publish_compaction(summary)
    return summary
