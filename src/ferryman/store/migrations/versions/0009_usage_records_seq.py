"""Usage records keyed by an increasing number instead of their random id.

Inserting into a B-tree keyed by a random 32-character id touched pages all over it:
about four times the cost of appending on SQLite. The table is rebuilt with a `seq`
key (rows copied in time order) and `id` kept as a plain column.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-22
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

from ferryman.store.types import UTCDateTime

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

COLUMNS = (
    "id, at, route, user_id, credential_id, upstream, upstream_key_id, model, status, "
    "duration_ms, ttfb_ms, upstream_ms, bytes_in, bytes_out, prompt_tokens, "
    "completion_tokens, total_tokens, cost, correlation_id"
)


def _fields() -> list[sa.Column[Any]]:
    return [
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("route", sa.String(64), nullable=False),
        sa.Column("user_id", sa.String(36), nullable=True),
        sa.Column("credential_id", sa.String(36), nullable=True),
        sa.Column("upstream", sa.String(64), nullable=True),
        sa.Column("upstream_key_id", sa.String(36), nullable=True),
        sa.Column("model", sa.String(200), nullable=True),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("duration_ms", sa.Float(), nullable=False),
        sa.Column("ttfb_ms", sa.Float(), nullable=True),
        sa.Column("upstream_ms", sa.Float(), nullable=True),
        sa.Column("bytes_in", sa.BigInteger(), nullable=False),
        sa.Column("bytes_out", sa.BigInteger(), nullable=False),
        sa.Column("prompt_tokens", sa.Integer(), nullable=True),
        sa.Column("completion_tokens", sa.Integer(), nullable=True),
        sa.Column("total_tokens", sa.Integer(), nullable=True),
        sa.Column("cost", sa.Float(), nullable=True),
        sa.Column("correlation_id", sa.String(128), nullable=False),
    ]


def _rebuild(key: list[sa.Column[Any]], order: str) -> None:
    op.create_table("usage_records_new", *key, *_fields())
    op.execute(
        f"INSERT INTO usage_records_new ({COLUMNS}) "  # noqa: S608 - fixed names
        f"SELECT {COLUMNS} FROM usage_records ORDER BY {order}"
    )
    op.drop_index("ix_usage_records_user_at", "usage_records")
    op.drop_index("ix_usage_records_at", "usage_records")
    op.drop_table("usage_records")
    op.rename_table("usage_records_new", "usage_records")
    if op.get_bind().dialect.name == "postgresql":  # constraint names are schema-wide
        op.execute(
            "ALTER TABLE usage_records RENAME CONSTRAINT pk_usage_records_new TO pk_usage_records"
        )
    op.create_index("ix_usage_records_at", "usage_records", ["at"])
    op.create_index("ix_usage_records_user_at", "usage_records", ["user_id", "at"])


def upgrade() -> None:
    seq = sa.Column(
        "seq",
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        primary_key=True,
        autoincrement=True,
    )
    _rebuild([seq, sa.Column("id", sa.String(32), nullable=False)], "at, id")


def downgrade() -> None:
    _rebuild([sa.Column("id", sa.String(32), primary_key=True)], "id")
