"""Provider keys' figures per day; usernames as long as an email address.

`upstream_key_history` keeps one row per upstream key and UTC day. An account registered
by email alone is named by its address, so `users.username` grows to 254 characters on
PostgreSQL. SQLite does not enforce a VARCHAR's length, and rebuilding `users` there
would cascade-delete every row that refers to it (foreign keys are on), so its column
is left as it is.

Going down on PostgreSQL fails (and changes nothing) while a username is longer than
64 characters: the older schema cannot hold it.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from ferryman.store.types import UTCDateTime

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def _postgresql() -> bool:
    return bool(op.get_bind().dialect.name == "postgresql")


def upgrade() -> None:
    op.create_table(
        "upstream_key_history",
        sa.Column(
            "upstream_key_id",
            sa.String(36),
            sa.ForeignKey("upstream_keys.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("usage_first", sa.Float(), nullable=True),
        sa.Column("usage", sa.Float(), nullable=True),
        sa.Column("usage_daily", sa.Float(), nullable=True),
        sa.Column("credit_limit", sa.Float(), nullable=True),
        sa.Column("limit_remaining", sa.Float(), nullable=True),
        sa.Column("credits_total", sa.Float(), nullable=True),
        sa.Column("credits_used", sa.Float(), nullable=True),
        sa.Column("readings", sa.Integer(), nullable=False),
        sa.Column("first_synced_at", UTCDateTime(), nullable=False),
        sa.Column("synced_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("upstream_key_id", "day", name="pk_upstream_key_history"),
    )
    op.create_index("ix_upstream_key_history_day", "upstream_key_history", ["day"])
    if _postgresql():
        op.alter_column(
            "users",
            "username",
            type_=sa.String(254),
            existing_type=sa.String(64),
            existing_nullable=False,
        )


def downgrade() -> None:
    if _postgresql():
        op.alter_column(
            "users",
            "username",
            type_=sa.String(64),
            existing_type=sa.String(254),
            existing_nullable=False,
        )
    op.drop_index("ix_upstream_key_history_day", "upstream_key_history")
    op.drop_table("upstream_key_history")
