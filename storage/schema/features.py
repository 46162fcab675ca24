"""Tables of the feature store: entities, feature groups, versioned features, usage, statistics.

Definitions of entities (with their join keys), feature groups and their
versioned features, which model versions used which features, and the
statistics computed over feature windows (``storage.features``).
"""

from __future__ import annotations

import sqlalchemy as sa

from storage.schema.base import UTCDateTime, metadata

__all__ = [
    "feature_entities",
    "feature_groups",
    "feature_statistics",
    "feature_usage",
    "features",
]

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
