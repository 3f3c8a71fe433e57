"""Raw usage records keep one index, on their time (for retention and date ranges).

Nothing reads raw records by user (the stats read the daily aggregates, which have
their own user index); the second index only made every insert dearer.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-22
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_usage_records_user_at", table_name="usage_records")


def downgrade() -> None:
    op.create_index("ix_usage_records_user_at", "usage_records", ["user_id", "at"])
