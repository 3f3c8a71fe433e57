"""The upstream key pool.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from ferryman.store.types import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "upstream_keys",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("upstream", sa.String(64), nullable=False),
        sa.Column(
            "owner_id",
            sa.String(36),
            sa.ForeignKey("users.id", ondelete="CASCADE"),
            nullable=True,
        ),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("sealed_key", sa.Text(), nullable=False),
        sa.Column("master_key_id", sa.String(32), nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("last4", sa.String(4), nullable=False),
        sa.Column("weight", sa.Integer(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("state_until", UTCDateTime(), nullable=True),
        sa.Column("last_error", sa.String(300), nullable=True),
        sa.Column("last_error_at", UTCDateTime(), nullable=True),
        sa.Column("last_checked_at", UTCDateTime(), nullable=True),
        sa.Column("last_used_at", UTCDateTime(), nullable=True),
        sa.Column("request_count", sa.BigInteger(), nullable=False),
        sa.Column("failure_count", sa.BigInteger(), nullable=False),
        sa.Column("usage", sa.Float(), nullable=True),
        sa.Column("credit_limit", sa.Float(), nullable=True),
        sa.Column("limit_remaining", sa.Float(), nullable=True),
        sa.Column("credits_total", sa.Float(), nullable=True),
        sa.Column("credits_used", sa.Float(), nullable=True),
        sa.Column("synced_at", UTCDateTime(), nullable=True),
        sa.Column("validated_at", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_upstream_keys_upstream", "upstream_keys", ["upstream"])
    op.create_index("ix_upstream_keys_owner_id", "upstream_keys", ["owner_id"])


def downgrade() -> None:
    op.drop_index("ix_upstream_keys_owner_id", "upstream_keys")
    op.drop_index("ix_upstream_keys_upstream", "upstream_keys")
    op.drop_table("upstream_keys")
