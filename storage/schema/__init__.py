"""Tables of the metadata database (SQLAlchemy Core), grouped by the part of the lifecycle they serve.

Every table is defined on the one :data:`metadata` (``base``, with the UTC
timestamp type and ``utcnow``) and re-exported here, so callers write
``from storage import schema as t`` and ``t.models``. The tables live in
``registry`` (models, versions, aliases, approvals), ``features`` (the
feature store), ``endpoints`` (serving endpoints), ``monitoring`` (alerts,
alert routes, the notification log), ``governance`` (evidence, lineage,
attestations, erasures) and ``access`` (audit log, API keys). The migrations
under ``storage/migrations`` create exactly these tables; a test checks that
the two agree.

Example:
    >>> from storage import schema as t
    >>> t.models.metadata is t.serving_events.metadata is t.api_keys.metadata is t.metadata
    True
    >>> t.metadata.tables["model_versions"] is t.model_versions
    True
"""

from __future__ import annotations

from storage.schema.access import (
    api_keys,
    audit_head,
    audit_log,
)
from storage.schema.base import UTCDateTime, metadata, utcnow
from storage.schema.endpoints import (
    serving_endpoints,
    serving_events,
    serving_outcomes,
    serving_stats,
    serving_variants,
)
from storage.schema.features import (
    feature_entities,
    feature_groups,
    feature_statistics,
    feature_usage,
    features,
)
from storage.schema.governance import (
    attestations,
    data_asset_usage,
    data_assets,
    erasures,
    evidence_reports,
)
from storage.schema.monitoring import alert_notifications, alert_routes, alerts
from storage.schema.registry import (
    alias_history,
    aliases,
    approval_decisions,
    approval_requests,
    datasets,
    gate_results,
    model_tags,
    model_versions,
    models,
    reviewers,
    stage_history,
    version_artifacts,
    version_metrics,
    version_tags,
)

__all__ = [
    "UTCDateTime",
    "alert_notifications",
    "alert_routes",
    "alerts",
    "alias_history",
    "aliases",
    "api_keys",
    "approval_decisions",
    "approval_requests",
    "attestations",
    "audit_head",
    "audit_log",
    "data_asset_usage",
    "data_assets",
    "datasets",
    "erasures",
    "evidence_reports",
    "feature_entities",
    "feature_groups",
    "feature_statistics",
    "feature_usage",
    "features",
    "gate_results",
    "metadata",
    "model_tags",
    "model_versions",
    "models",
    "reviewers",
    "serving_endpoints",
    "serving_events",
    "serving_outcomes",
    "serving_stats",
    "serving_variants",
    "stage_history",
    "utcnow",
    "version_artifacts",
    "version_metrics",
    "version_tags",
]
