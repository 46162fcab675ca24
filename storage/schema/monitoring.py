"""Tables of monitoring: alerts raised on models and versions, de-duplicated by fingerprint.

An alert counts its repeats while open and is resolved once
(``storage.monitoring``).
"""

from __future__ import annotations

import sqlalchemy as sa

from storage.schema.base import UTCDateTime, metadata

__all__ = ["alerts"]

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
