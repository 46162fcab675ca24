"""Tables of monitoring: alerts, the routes that send them to people, and the delivery log.

An alert counts its repeats while open and is resolved once
(``storage.monitoring``). An alert route matches alerts by model, severity and
kind and names the Prefect notification block to send them to; every
notification sent (or tried) is a row of ``alert_notifications``, whose
``dedup_key`` is unique, so two processes never send the same one twice.
"""

from __future__ import annotations

import sqlalchemy as sa

from storage.schema.base import UTCDateTime, metadata

__all__ = ["alert_notifications", "alert_routes", "alerts"]

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

alert_routes = sa.Table(
    "alert_routes",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(128), nullable=False, unique=True),
    sa.Column("block", sa.String(255), nullable=False),
    sa.Column("model", sa.String(255), nullable=False),
    sa.Column("min_severity", sa.String(16), nullable=False),
    sa.Column("kinds", sa.JSON, nullable=False),
    sa.Column("renotify_seconds", sa.Float),
    sa.Column("notify_resolved", sa.Boolean, nullable=False),
    sa.Column("enabled", sa.Boolean, nullable=False),
    sa.Column("created_by", sa.String(255), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
)

alert_notifications = sa.Table(
    "alert_notifications",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("route_id", sa.Integer, sa.ForeignKey("alert_routes.id", ondelete="SET NULL")),
    sa.Column("route_name", sa.String(128), nullable=False),
    sa.Column("alert_id", sa.Integer, sa.ForeignKey("alerts.id", ondelete="CASCADE")),
    sa.Column("event", sa.String(16), nullable=False),
    sa.Column("dedup_key", sa.String(255), nullable=False, unique=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("error", sa.Text),
    sa.Column("subject", sa.Text, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Index("ix_alert_notifications_route_alert", "route_id", "alert_id", "event"),
    sa.Index("ix_alert_notifications_status", "status", "updated_at"),
)
