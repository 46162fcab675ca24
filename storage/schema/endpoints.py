"""Tables of serving endpoints: endpoints, variants, traffic stats, outcomes, events.

An endpoint with its policy settings and revision, its variants, the
per-variant counters routers flush, the outcomes clients report per request,
and the event history of its changes (``storage.endpoints``).
"""

from __future__ import annotations

import sqlalchemy as sa

from storage.schema.base import UTCDateTime, metadata

__all__ = [
    "serving_endpoints",
    "serving_events",
    "serving_outcomes",
    "serving_stats",
    "serving_variants",
]

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
