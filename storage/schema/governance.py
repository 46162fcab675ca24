"""Tables of governance: evidence reports, data assets and their use, attestations, erasures.

Evidence reports attached to model versions, the data assets with their
owners, PII flag and retention and what uses them (lineage), attestations
signed against compliance rules, and the record of erasure requests
(``storage.governance``).
"""

from __future__ import annotations

import sqlalchemy as sa

from storage.schema.base import UTCDateTime, metadata

__all__ = [
    "attestations",
    "data_asset_usage",
    "data_assets",
    "erasures",
    "evidence_reports",
]

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
