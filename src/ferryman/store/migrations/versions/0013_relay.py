"""Chat widget relay: anonymous sessions bound to an origin, and their messages.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from ferryman.store.types import UTCDateTime

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "relay_sessions",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("relay", sa.String(64), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("origin", sa.String(300), nullable=False),
        sa.Column("page_url", sa.String(2000), nullable=True),
        sa.Column("client_ip", sa.String(64), nullable=True),
        sa.Column("user_agent", sa.String(300), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("revoked_at", UTCDateTime(), nullable=True),
        sa.UniqueConstraint("token_hash", name="uq_relay_sessions_token_hash"),
    )
    op.create_index("ix_relay_sessions_expires_at", "relay_sessions", ["expires_at"])
    op.create_table(
        "relay_messages",
        sa.Column("id", sa.String(26), primary_key=True),
        sa.Column(
            "session_id",
            sa.String(36),
            sa.ForeignKey("relay_sessions.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("complete", sa.Boolean(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_relay_messages_session_id_id", "relay_messages", ["session_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_relay_messages_session_id_id", "relay_messages")
    op.drop_table("relay_messages")
    op.drop_index("ix_relay_sessions_expires_at", "relay_sessions")
    op.drop_table("relay_sessions")
