"""Tables of the metadata database (SQLAlchemy Core).

The migrations under ``storage/migrations`` create exactly these tables; a
test checks that the two agree.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always read back timezone-aware."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    """The current time in UTC."""
    return datetime.now(UTC)


metadata = sa.MetaData()

models = sa.Table(
    "models",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(255), nullable=False, unique=True),
    sa.Column("description", sa.Text, nullable=False, default=""),
    sa.Column("owner", sa.String(255)),
    sa.Column("created_by", sa.String(255), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    # The number of the newest version, so creating the next one reads one row.
    sa.Column("last_number", sa.Integer, nullable=False, default=0),
    # The highest semantic version, which the next version bumps by default.
    sa.Column("latest_semver", sa.String(128), nullable=False, default="0.0.0"),
)

model_tags = sa.Table(
    "model_tags",
    metadata,
    sa.Column("model_id", sa.Integer, sa.ForeignKey("models.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("key", sa.String(255), primary_key=True),
    sa.Column("value", sa.String(1024), nullable=False),
)

datasets = sa.Table(
    "datasets",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("uri", sa.String(2048), nullable=False),
    sa.Column("content_hash", sa.String(128), nullable=False),
    sa.Column("name", sa.String(255)),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("uri", "content_hash", name="uq_datasets_uri_hash"),
)

model_versions = sa.Table(
    "model_versions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("model_id", sa.Integer, sa.ForeignKey("models.id", ondelete="CASCADE"), nullable=False),
    sa.Column("number", sa.Integer, nullable=False),
    sa.Column("semver", sa.String(128), nullable=False),
    sa.Column("semver_major", sa.Integer, nullable=False),
    sa.Column("semver_minor", sa.Integer, nullable=False),
    sa.Column("semver_patch", sa.Integer, nullable=False),
    sa.Column("semver_pre", sa.String(100), nullable=False, default=""),
    sa.Column("stage", sa.String(32), nullable=False),
    sa.Column("framework", sa.String(32), nullable=False),
    sa.Column("description", sa.Text, nullable=False, default=""),
    sa.Column("changelog", sa.Text, nullable=False, default=""),
    sa.Column("hyperparameters", sa.JSON, nullable=False),
    sa.Column("signature", sa.JSON),
    sa.Column("extra", sa.JSON, nullable=False),
    sa.Column("dataset_id", sa.Integer, sa.ForeignKey("datasets.id")),
    sa.Column("code_version", sa.String(255)),
    sa.Column("flow_run_id", sa.String(64)),
    sa.Column("parent_version_id", sa.Integer, sa.ForeignKey("model_versions.id")),
    sa.Column("created_by", sa.String(255), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("stage_updated_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("model_id", "number", name="uq_model_versions_number"),
    sa.UniqueConstraint("model_id", "semver", name="uq_model_versions_semver"),
    sa.Index("ix_model_versions_stage", "stage", "id"),
    sa.Index("ix_model_versions_model_stage", "model_id", "stage"),
    sa.Index("ix_model_versions_semver_order", "model_id", "semver_major", "semver_minor", "semver_patch"),
    sa.Index("ix_model_versions_model_newest", "model_id", "id"),
)

version_metrics = sa.Table(
    "version_metrics",
    metadata,
    sa.Column(
        "version_id", sa.Integer, sa.ForeignKey("model_versions.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("key", sa.String(255), primary_key=True),
    sa.Column("value", sa.Float, nullable=False),
    # repr() of the value: reads return exactly the double that was logged.
    sa.Column("exact", sa.String(32), nullable=False),
    sa.Index("ix_version_metrics_key_value", "key", "value"),
)

version_tags = sa.Table(
    "version_tags",
    metadata,
    sa.Column(
        "version_id", sa.Integer, sa.ForeignKey("model_versions.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("key", sa.String(255), primary_key=True),
    sa.Column("value", sa.String(1024), nullable=False),
    sa.Index("ix_version_tags_key_value", "key", "value"),
)

version_artifacts = sa.Table(
    "version_artifacts",
    metadata,
    sa.Column(
        "version_id", sa.Integer, sa.ForeignKey("model_versions.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("name", sa.String(1024), primary_key=True),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
)

aliases = sa.Table(
    "aliases",
    metadata,
    sa.Column("model_id", sa.Integer, sa.ForeignKey("models.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("alias", sa.String(255), primary_key=True),
    sa.Column("version_id", sa.Integer, sa.ForeignKey("model_versions.id"), nullable=False),
    sa.Column("updated_by", sa.String(255), nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Index("ix_aliases_version", "version_id"),
)

alias_history = sa.Table(
    "alias_history",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("model_id", sa.Integer, sa.ForeignKey("models.id", ondelete="CASCADE"), nullable=False),
    sa.Column("alias", sa.String(255), nullable=False),
    sa.Column("from_version_id", sa.Integer, sa.ForeignKey("model_versions.id")),
    sa.Column("to_version_id", sa.Integer, sa.ForeignKey("model_versions.id")),
    sa.Column("actor", sa.String(255), nullable=False),
    sa.Column("reason", sa.Text, nullable=False, default=""),
    sa.Column("is_rollback", sa.Boolean, nullable=False, default=False),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Index("ix_alias_history_model_alias", "model_id", "alias", "id"),
)

stage_history = sa.Table(
    "stage_history",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column(
        "version_id", sa.Integer, sa.ForeignKey("model_versions.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("from_stage", sa.String(32), nullable=False),
    sa.Column("to_stage", sa.String(32), nullable=False),
    sa.Column("actor", sa.String(255), nullable=False),
    sa.Column("reason", sa.Text, nullable=False, default=""),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Index("ix_stage_history_version", "version_id", "id"),
)

audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("at", sa.String(40), nullable=False),
    sa.Column("actor", sa.String(255), nullable=False),
    sa.Column("action", sa.String(128), nullable=False),
    sa.Column("entity_type", sa.String(64), nullable=False),
    sa.Column("entity_id", sa.String(512), nullable=False),
    sa.Column("before", sa.Text),
    sa.Column("after", sa.Text),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
    sa.Index("ix_audit_log_entity", "entity_type", "entity_id"),
)

audit_head = sa.Table(
    "audit_head",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
)

approval_requests = sa.Table(
    "approval_requests",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("model_id", sa.Integer, sa.ForeignKey("models.id", ondelete="CASCADE"), nullable=False),
    sa.Column("version_id", sa.Integer, sa.ForeignKey("model_versions.id"), nullable=False),
    sa.Column("target_stage", sa.String(32), nullable=False),
    sa.Column("requested_by", sa.String(255), nullable=False),
    sa.Column("reason", sa.Text, nullable=False, default=""),
    sa.Column("required_approvals", sa.Integer, nullable=False),
    sa.Column("allowed_roles", sa.JSON, nullable=False),
    sa.Column("allow_self_approval", sa.Boolean, nullable=False),
    sa.Column("alias", sa.String(255)),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("outcome", sa.Text, nullable=False, default=""),
    sa.Column("flow_run_id", sa.String(64)),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime),
    sa.Column("decided_at", UTCDateTime),
    sa.Index("ix_approval_requests_status", "status", "id"),
    sa.Index("ix_approval_requests_model", "model_id", "status"),
)

approval_decisions = sa.Table(
    "approval_decisions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column(
        "request_id", sa.Integer, sa.ForeignKey("approval_requests.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("reviewer", sa.String(255), nullable=False),
    sa.Column("decision", sa.String(16), nullable=False),
    sa.Column("comment", sa.Text, nullable=False, default=""),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("request_id", "reviewer", name="uq_approval_decisions_reviewer"),
)

gate_results = sa.Table(
    "gate_results",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column(
        "request_id", sa.Integer, sa.ForeignKey("approval_requests.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("passed", sa.Boolean, nullable=False),
    sa.Column("detail", sa.Text, nullable=False, default=""),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Index("ix_gate_results_request", "request_id"),
)

reviewers = sa.Table(
    "reviewers",
    metadata,
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("roles", sa.JSON, nullable=False),
    sa.Column("added_by", sa.String(255), nullable=False),
    sa.Column("added_at", UTCDateTime, nullable=False),
)

# ------------------------------------------------------------ feature store
feature_entities = sa.Table(
    "feature_entities",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(255), nullable=False, unique=True),
    sa.Column("join_keys", sa.JSON, nullable=False),
    sa.Column("description", sa.Text, nullable=False, default=""),
    sa.Column("owner", sa.String(255)),
    sa.Column("created_by", sa.String(255), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
)

feature_groups = sa.Table(
    "feature_groups",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(255), nullable=False, unique=True),
    sa.Column("entity_id", sa.Integer, sa.ForeignKey("feature_entities.id"), nullable=False),
    sa.Column("event_time_column", sa.String(255), nullable=False),
    sa.Column("available_time_column", sa.String(255)),
    sa.Column("ttl_seconds", sa.BigInteger),
    sa.Column("source", sa.Text, nullable=False, default=""),
    sa.Column("description", sa.Text, nullable=False, default=""),
    sa.Column("owner", sa.String(255)),
    sa.Column("tags", sa.JSON, nullable=False),
    sa.Column("created_by", sa.String(255), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

features = sa.Table(
    "features",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("group_id", sa.Integer, sa.ForeignKey("feature_groups.id", ondelete="CASCADE"), nullable=False),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("dtype", sa.String(32), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("description", sa.Text, nullable=False, default=""),
    sa.Column("source", sa.Text, nullable=False, default=""),
    sa.Column("transformation", sa.Text, nullable=False, default=""),
    sa.Column("owner", sa.String(255)),
    sa.Column("tags", sa.JSON, nullable=False),
    sa.Column("created_by", sa.String(255), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("group_id", "name", "version", name="uq_features_group_name_version"),
)

feature_usage = sa.Table(
    "feature_usage",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("feature_id", sa.Integer, sa.ForeignKey("features.id", ondelete="CASCADE"), nullable=False),
    sa.Column("model_name", sa.String(255), nullable=False),
    sa.Column("model_version", sa.String(128), nullable=False),
    sa.Column("flow_run_id", sa.String(64)),
    sa.Column("recorded_by", sa.String(255), nullable=False),
    sa.Column("recorded_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("feature_id", "model_name", "model_version", name="uq_feature_usage"),
    sa.Index("ix_feature_usage_model", "model_name", "model_version"),
)

feature_statistics = sa.Table(
    "feature_statistics",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("group_id", sa.Integer, sa.ForeignKey("feature_groups.id", ondelete="CASCADE"), nullable=False),
    sa.Column("feature", sa.String(255), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("window_start", UTCDateTime),
    sa.Column("window_end", UTCDateTime),
    sa.Column("stats", sa.JSON, nullable=False),
    sa.Column("flow_run_id", sa.String(64)),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Index("ix_feature_statistics_group_feature", "group_id", "feature", "kind", "id"),
)

evidence_reports = sa.Table(
    "evidence_reports",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("kind", sa.String(64), nullable=False),
    sa.Column("model_id", sa.Integer, sa.ForeignKey("models.id", ondelete="CASCADE"), nullable=False),
    sa.Column(
        "version_id", sa.Integer, sa.ForeignKey("model_versions.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("passed", sa.Boolean, nullable=False),
    sa.Column("summary", sa.Text, nullable=False),
    sa.Column("payload", sa.JSON, nullable=False),
    sa.Column("created_by", sa.String(255), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Index("ix_evidence_reports_version_kind", "version_id", "kind", "id"),
)

data_assets = sa.Table(
    "data_assets",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(255), nullable=False, unique=True),
    sa.Column("uri", sa.String(2048), nullable=False),
    sa.Column("source", sa.String(1024), nullable=False),
    sa.Column("owner", sa.String(255), nullable=False),
    sa.Column("contains_pii", sa.Boolean, nullable=False),
    sa.Column("retention_days", sa.Integer),
    sa.Column("transformations", sa.JSON, nullable=False),
    sa.Column("description", sa.Text, nullable=False, default=""),
    sa.Column("created_by", sa.String(255), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
)

data_asset_usage = sa.Table(
    "data_asset_usage",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("asset_id", sa.Integer, sa.ForeignKey("data_assets.id", ondelete="CASCADE"), nullable=False),
    sa.Column("user_kind", sa.String(32), nullable=False),
    sa.Column("user_name", sa.String(512), nullable=False),
    sa.Column("relation", sa.String(64), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("asset_id", "user_kind", "user_name", "relation", name="uq_data_asset_usage"),
    sa.Index("ix_data_asset_usage_user", "user_kind", "user_name"),
)

attestations = sa.Table(
    "attestations",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("framework", sa.String(64), nullable=False),
    sa.Column("rule_id", sa.String(128), nullable=False),
    sa.Column("model_id", sa.Integer, sa.ForeignKey("models.id", ondelete="CASCADE")),
    sa.Column("attested_by", sa.String(255), nullable=False),
    sa.Column("statement", sa.Text, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False),
    sa.Index("ix_attestations_rule", "framework", "rule_id", "model_id", "id"),
)

erasures = sa.Table(
    "erasures",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("entity_key", sa.String(1024), nullable=False),
    sa.Column("requested_by", sa.String(255), nullable=False),
    sa.Column("reason", sa.Text, nullable=False, default=""),
    sa.Column("result", sa.JSON, nullable=False),
    sa.Column("verified", sa.Boolean, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
)

alerts = sa.Table(
    "alerts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("model_id", sa.Integer, sa.ForeignKey("models.id", ondelete="CASCADE"), nullable=False),
    sa.Column("version_id", sa.Integer, sa.ForeignKey("model_versions.id", ondelete="CASCADE")),
    sa.Column("kind", sa.String(64), nullable=False),
    sa.Column("severity", sa.String(16), nullable=False),
    sa.Column("subject", sa.String(512), nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("fingerprint", sa.String(64), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("count", sa.Integer, nullable=False),
    sa.Column("first_seen", UTCDateTime, nullable=False),
    sa.Column("last_seen", UTCDateTime, nullable=False),
    sa.Column("resolved_at", UTCDateTime),
    sa.Index("ix_alerts_fingerprint_status", "fingerprint", "status"),
    sa.Index("ix_alerts_model_status", "model_id", "status", "id"),
)

serving_endpoints = sa.Table(
    "serving_endpoints",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(255), nullable=False, unique=True),
    sa.Column("policy", sa.String(16), nullable=False),
    sa.Column("settings", sa.JSON, nullable=False),
    sa.Column("revision", sa.Integer, nullable=False),
    sa.Column("created_by", sa.String(255), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

serving_variants = sa.Table(
    "serving_variants",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column(
        "endpoint_id", sa.Integer, sa.ForeignKey("serving_endpoints.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("model", sa.String(255), nullable=False),
    sa.Column("version", sa.String(255), nullable=False),
    sa.Column("weight", sa.Float, nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.UniqueConstraint("endpoint_id", "name", name="uq_serving_variants_name"),
)

serving_stats = sa.Table(
    "serving_stats",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column(
        "endpoint_id", sa.Integer, sa.ForeignKey("serving_endpoints.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("variant", sa.String(64), nullable=False),
    sa.Column("replica", sa.String(128), nullable=False),
    sa.Column("window_start", UTCDateTime, nullable=False),
    sa.Column("window_end", UTCDateTime, nullable=False),
    sa.Column("requests", sa.Integer, nullable=False),
    sa.Column("errors", sa.Integer, nullable=False),
    sa.Column("latency_sum_ms", sa.Float, nullable=False),
    sa.Column("latency_hist", sa.JSON, nullable=False),
    sa.Index("ix_serving_stats_endpoint_window", "endpoint_id", "window_end"),
)

serving_outcomes = sa.Table(
    "serving_outcomes",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column(
        "endpoint_id", sa.Integer, sa.ForeignKey("serving_endpoints.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("variant", sa.String(64), nullable=False),
    sa.Column("request_id", sa.String(255), nullable=False),
    sa.Column("value", sa.Float, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("endpoint_id", "request_id", name="uq_serving_outcomes_request"),
)

serving_events = sa.Table(
    "serving_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column(
        "endpoint_id", sa.Integer, sa.ForeignKey("serving_endpoints.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("kind", sa.String(64), nullable=False),
    sa.Column("actor", sa.String(255), nullable=False),
    sa.Column("detail", sa.JSON, nullable=False),
    sa.Index("ix_serving_events_endpoint", "endpoint_id", "id"),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("prefix", sa.String(16), nullable=False),
    sa.Column("owner", sa.String(255), nullable=False),
    sa.Column("role", sa.String(32), nullable=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("created_by", sa.String(255), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("revoked_at", UTCDateTime, nullable=True),
)
