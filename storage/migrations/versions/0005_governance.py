"""Governance: data assets with PII flag and retention, their usage, attestations, erasures.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('data_assets',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('uri', sa.String(length=2048), nullable=False),
    sa.Column('source', sa.String(length=1024), nullable=False),
    sa.Column('owner', sa.String(length=255), nullable=False),
    sa.Column('contains_pii', sa.Boolean(), nullable=False),
    sa.Column('retention_days', sa.Integer(), nullable=True),
    sa.Column('transformations', sa.JSON(), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('created_by', sa.String(length=255), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name')
    )
    op.create_table('erasures',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('entity_key', sa.String(length=1024), nullable=False),
    sa.Column('requested_by', sa.String(length=255), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('result', sa.JSON(), nullable=False),
    sa.Column('verified', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('attestations',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('framework', sa.String(length=64), nullable=False),
    sa.Column('rule_id', sa.String(length=128), nullable=False),
    sa.Column('model_id', sa.Integer(), nullable=True),
    sa.Column('attested_by', sa.String(length=255), nullable=False),
    sa.Column('statement', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['model_id'], ['models.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('attestations', schema=None) as batch_op:
        batch_op.create_index('ix_attestations_rule', ['framework', 'rule_id', 'model_id', 'id'], unique=False)

    op.create_table('data_asset_usage',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('asset_id', sa.Integer(), nullable=False),
    sa.Column('user_kind', sa.String(length=32), nullable=False),
    sa.Column('user_name', sa.String(length=512), nullable=False),
    sa.Column('relation', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['asset_id'], ['data_assets.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('asset_id', 'user_kind', 'user_name', 'relation', name='uq_data_asset_usage')
    )
    with op.batch_alter_table('data_asset_usage', schema=None) as batch_op:
        batch_op.create_index('ix_data_asset_usage_user', ['user_kind', 'user_name'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('data_asset_usage', schema=None) as batch_op:
        batch_op.drop_index('ix_data_asset_usage_user')

    op.drop_table('data_asset_usage')
    with op.batch_alter_table('attestations', schema=None) as batch_op:
        batch_op.drop_index('ix_attestations_rule')

    op.drop_table('attestations')
    op.drop_table('erasures')
    op.drop_table('data_assets')
