"""Tables of the model registry: models, versions, stages, aliases, approvals.

Models and their numbered versions with metrics, tags and artifact listings,
the datasets versions were trained on, aliases and stage moves with their
history, and approval requests with their reviewers' decisions and gate
results (``storage.registry``).
"""

from __future__ import annotations

import sqlalchemy as sa

from storage.schema.base import UTCDateTime, metadata

__all__ = [
    "alias_history",
    "aliases",
    "approval_decisions",
    "approval_requests",
    "datasets",
    "gate_results",
    "model_tags",
    "model_versions",
    "models",
    "reviewers",
    "stage_history",
    "version_artifacts",
    "version_metrics",
    "version_tags",
]

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
