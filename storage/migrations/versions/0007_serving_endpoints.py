"""Serving endpoints: variants, traffic policies, per-variant stats, outcomes, events.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def _endpoint_fk() -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(["endpoint_id"], ["serving_endpoints.id"], ondelete="CASCADE")


def upgrade() -> None:
    op.create_table(
        "serving_endpoints",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("policy", sa.String(length=16), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "serving_variants",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("endpoint_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("model", sa.String(length=255), nullable=False),
        sa.Column("version", sa.String(length=255), nullable=False),
        sa.Column("weight", sa.Float(), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        _endpoint_fk(),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("endpoint_id", "name", name="uq_serving_variants_name"),
    )
    op.create_table(
        "serving_stats",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("endpoint_id", sa.Integer(), nullable=False),
        sa.Column("variant", sa.String(length=64), nullable=False),
        sa.Column("replica", sa.String(length=128), nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("window_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("requests", sa.Integer(), nullable=False),
        sa.Column("errors", sa.Integer(), nullable=False),
        sa.Column("latency_sum_ms", sa.Float(), nullable=False),
        sa.Column("latency_hist", sa.JSON(), nullable=False),
        _endpoint_fk(),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("serving_stats", schema=None) as batch_op:
        batch_op.create_index("ix_serving_stats_endpoint_window", ["endpoint_id", "window_end"], unique=False)
    op.create_table(
        "serving_outcomes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("endpoint_id", sa.Integer(), nullable=False),
        sa.Column("variant", sa.String(length=64), nullable=False),
        sa.Column("request_id", sa.String(length=255), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        _endpoint_fk(),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("endpoint_id", "request_id", name="uq_serving_outcomes_request"),
    )
    op.create_table(
        "serving_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("endpoint_id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("actor", sa.String(length=255), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        _endpoint_fk(),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("serving_events", schema=None) as batch_op:
        batch_op.create_index("ix_serving_events_endpoint", ["endpoint_id", "id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("serving_events", schema=None) as batch_op:
        batch_op.drop_index("ix_serving_events_endpoint")
    op.drop_table("serving_events")
    op.drop_table("serving_outcomes")
    with op.batch_alter_table("serving_stats", schema=None) as batch_op:
        batch_op.drop_index("ix_serving_stats_endpoint_window")
    op.drop_table("serving_stats")
    op.drop_table("serving_variants")
    op.drop_table("serving_endpoints")
