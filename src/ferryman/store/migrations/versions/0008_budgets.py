"""Tokens-a-minute caps and budgets on client keys and users; budget alerts sent.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from ferryman.store.types import UTCDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

TABLES = ("api_keys", "users")


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("tpm", sa.Integer(), nullable=True))
            batch.add_column(sa.Column("budget_amount", sa.Float(), nullable=True))
            batch.add_column(sa.Column("budget_period", sa.String(16), nullable=True))
    op.create_index("ix_usage_daily_credential_day", "usage_daily", ["credential_id", "day"])
    op.create_table(
        "budget_alerts",
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("subject_id", sa.String(36), nullable=False),
        sa.Column("window_start", sa.Date(), nullable=False),
        sa.Column("threshold", sa.Integer(), nullable=False),
        sa.Column("spend", sa.Float(), nullable=False),
        sa.Column("budget", sa.Float(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint(
            "scope", "subject_id", "window_start", "budget", "threshold", name="pk_budget_alerts"
        ),
    )


def downgrade() -> None:
    op.drop_table("budget_alerts")
    op.drop_index("ix_usage_daily_credential_day", table_name="usage_daily")
    for table in reversed(TABLES):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("budget_period")
            batch.drop_column("budget_amount")
            batch.drop_column("tpm")
