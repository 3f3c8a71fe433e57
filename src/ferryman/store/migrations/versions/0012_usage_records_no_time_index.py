"""Raw usage records lose their index on time: inserts stop paying for it.

Nothing reads raw records by time but the daily pruning, which now bisects on `seq`
(records are appended in the order requests finish). On SQLite the index cost about a
third of each record's insert (2 of 6.4 µs), and every proxied request writes one.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06
"""

from __future__ import annotations

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_usage_records_at", table_name="usage_records")


def downgrade() -> None:
    op.create_index("ix_usage_records_at", "usage_records", ["at"])
