"""Fleet-wide daily usage totals (no user dimension), for admin stats.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "usage_daily_totals",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("upstream_key_id", sa.String(36), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("requests", sa.BigInteger(), nullable=False),
        sa.Column("errors", sa.BigInteger(), nullable=False),
        sa.Column("prompt_tokens", sa.BigInteger(), nullable=False),
        sa.Column("completion_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cost", sa.Float(), nullable=False),
        sa.Column("cost_unknown", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("day", "upstream_key_id", "model", name="pk_usage_daily_totals"),
    )


def downgrade() -> None:
    op.drop_table("usage_daily_totals")
