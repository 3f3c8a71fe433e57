"""Indexes for the console's sorted pages of client keys (by name, creation, last use),
so a deep page over 100,000 keys walks an index instead of sorting every key.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

INDEXES = {
    "ix_api_keys_name_id": ["name", "id"],
    "ix_api_keys_created_at_id": ["created_at", "id"],
    "ix_api_keys_last_used_at_id": ["last_used_at", "id"],
}


def upgrade() -> None:
    for name, columns in INDEXES.items():
        op.create_index(name, "api_keys", columns)


def downgrade() -> None:
    for name in INDEXES:
        op.drop_index(name, "api_keys")
