"""Every table, in one metadata; migrations are written against it."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from ferryman.store.types import StringList, UTCDateTime

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

#: Facts about this installation (its id, when its schema was created).
meta = Table(
    "ferryman_meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)


def _allowance() -> list[Column[Any]]:
    """What a user or a client key may use (NULL: no cap of its own)."""
    return [
        Column("rpm", Integer, nullable=True),
        Column("tpm", Integer, nullable=True),
        Column("budget_amount", Float, nullable=True),
        Column("budget_period", String(16), nullable=True),
    ]


#: People and programs that hold credentials.
users = Table(
    "users",
    metadata,
    Column("id", String(36), primary_key=True),
    # 254: an account registered by email alone is named by its address.
    Column("username", String(254), nullable=False, unique=True),
    Column("email", String(254), nullable=True, unique=True),
    Column("full_name", String(200), nullable=True),
    Column("password_hash", Text, nullable=False),
    Column("role", String(16), nullable=False),
    Column("permissions", StringList, nullable=False),
    Column("is_active", Boolean, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    *_allowance(),
)

#: Client API keys (`fm_…`): only a keyed hash of the key is kept.
api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("user_id", String(36), ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(100), nullable=False),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("prefix", String(16), nullable=False),
    Column("last4", String(4), nullable=False),
    Column("scopes", StringList, nullable=False),
    Column("is_active", Boolean, nullable=False),
    Column("expires_at", UTCDateTime, nullable=True),
    Column("revoked_at", UTCDateTime, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("last_used_at", UTCDateTime, nullable=True),
    *_allowance(),
    Index("ix_api_keys_user_id", "user_id"),
    # The console's sorted pages over every key: walked in order, never sorted whole.
    Index("ix_api_keys_name_id", "name", "id"),
    Index("ix_api_keys_created_at_id", "created_at", "id"),
    Index("ix_api_keys_last_used_at_id", "last_used_at", "id"),
)

#: Time-boxed access passes, activated on first use; expiry is computed, not stored.
access_passes = Table(
    "access_passes",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("user_id", String(36), ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("duration_hours", Integer, nullable=False),
    Column("is_active", Boolean, nullable=False),
    Column("activated_at", UTCDateTime, nullable=True),
    Column("revoked_at", UTCDateTime, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Index("ix_access_passes_user_id", "user_id"),
)

#: Server-side sessions behind a signed `session_token` cookie.
sessions = Table(
    "sessions",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("user_id", String(36), ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("csrf_token", String(64), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("last_seen_at", UTCDateTime, nullable=False),
    Column("revoked_at", UTCDateTime, nullable=True),
    Column("user_agent", String(300), nullable=True),
    Column("client_ip", String(64), nullable=True),
    Index("ix_sessions_user_id", "user_id"),
)

#: Provider keys (`sk-or-…`), sealed with AES-256-GCM; the shared pool when `owner_id`
#: is NULL, else one user's own key for their own traffic.
upstream_keys = Table(
    "upstream_keys",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("upstream", String(64), nullable=False),
    Column("owner_id", String(36), ForeignKey("users.id", ondelete="CASCADE"), nullable=True),
    Column("name", String(100), nullable=False),
    Column("sealed_key", Text, nullable=False),
    Column("master_key_id", String(32), nullable=False),
    Column("prefix", String(16), nullable=False),
    Column("last4", String(4), nullable=False),
    Column("weight", Integer, nullable=False),
    Column("enabled", Boolean, nullable=False),
    Column("state", String(16), nullable=False),
    Column("state_until", UTCDateTime, nullable=True),
    Column("last_error", String(300), nullable=True),
    Column("last_error_at", UTCDateTime, nullable=True),
    Column("last_checked_at", UTCDateTime, nullable=True),
    Column("last_used_at", UTCDateTime, nullable=True),
    Column("request_count", BigInteger, nullable=False),
    Column("failure_count", BigInteger, nullable=False),
    Column("usage", Float, nullable=True),
    Column("credit_limit", Float, nullable=True),
    Column("limit_remaining", Float, nullable=True),
    Column("credits_total", Float, nullable=True),
    Column("credits_used", Float, nullable=True),
    Column("synced_at", UTCDateTime, nullable=True),
    Column("validated_at", UTCDateTime, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Index("ix_upstream_keys_upstream", "upstream"),
    Index("ix_upstream_keys_owner_id", "owner_id"),
)

#: A provider key's figures per UTC day (usage, limit, credit), as the provider last told
#: them that day; the day's first cumulative usage is kept too, so its spend can be told
#: for a key added mid-day. Pruned after `upstream_history_days`; deleted with its key.
upstream_key_history = Table(
    "upstream_key_history",
    metadata,
    Column(
        "upstream_key_id",
        String(36),
        ForeignKey("upstream_keys.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("day", Date, nullable=False),
    Column("usage_first", Float, nullable=True),
    Column("usage", Float, nullable=True),
    Column("usage_daily", Float, nullable=True),
    Column("credit_limit", Float, nullable=True),
    Column("limit_remaining", Float, nullable=True),
    Column("credits_total", Float, nullable=True),
    Column("credits_used", Float, nullable=True),
    Column("readings", Integer, nullable=False),
    Column("first_synced_at", UTCDateTime, nullable=False),
    Column("synced_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("upstream_key_id", "day", name="pk_upstream_key_history"),
    Index("ix_upstream_key_history_day", "day"),
)

#: Credit movements: the balance of a user is the sum of their rows (append-only).
credit_ledger = Table(
    "credit_ledger",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("user_id", String(36), ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("amount_micros", BigInteger, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("pass_id", String(36), nullable=True),
    Column("note", String(200), nullable=True),
    Column("created_by", String(36), nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Index("ix_credit_ledger_user_id", "user_id"),
    UniqueConstraint("pass_id", "kind", name="uq_credit_ledger_pass_id"),
)

#: One row per proxied request (pruned after the retention period). Keyed by an
#: increasing number, so each insert appends to the table's B-tree: keyed by the random
#: record id, an insert cost SQLite four times as much.
usage_records = Table(
    "usage_records",
    metadata,
    Column(
        "seq",
        BigInteger().with_variant(Integer, "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    Column("id", String(32), nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Column("route", String(64), nullable=False),
    Column("user_id", String(36), nullable=True),
    Column("credential_id", String(36), nullable=True),
    Column("upstream", String(64), nullable=True),
    Column("upstream_key_id", String(36), nullable=True),
    Column("model", String(200), nullable=True),
    Column("status", Integer, nullable=False),
    Column("duration_ms", Float, nullable=False),
    Column("ttfb_ms", Float, nullable=True),
    Column("upstream_ms", Float, nullable=True),
    Column("bytes_in", BigInteger, nullable=False),
    Column("bytes_out", BigInteger, nullable=False),
    Column("prompt_tokens", Integer, nullable=True),
    Column("completion_tokens", Integer, nullable=True),
    Column("total_tokens", Integer, nullable=True),
    Column("cost", Float, nullable=True),
    Column("correlation_id", String(128), nullable=False),
    # No index besides the key: `seq` follows `at`, which pruning uses (store.usage).
)


def _usage_sums() -> list[Column[Any]]:
    """The sums both daily usage tables keep."""
    return [
        Column("requests", BigInteger, nullable=False),
        Column("errors", BigInteger, nullable=False),
        Column("prompt_tokens", BigInteger, nullable=False),
        Column("completion_tokens", BigInteger, nullable=False),
        Column("cost", Float, nullable=False),
        Column("cost_unknown", BigInteger, nullable=False),
    ]


#: Per day, user, credential, upstream key and model: what the stats read.
usage_daily = Table(
    "usage_daily",
    metadata,
    Column("day", Date, nullable=False),
    Column("user_id", String(36), nullable=False),
    Column("credential_id", String(36), nullable=False),
    Column("upstream_key_id", String(36), nullable=False),
    Column("model", String(200), nullable=False),
    *_usage_sums(),
    PrimaryKeyConstraint(
        "day", "user_id", "credential_id", "upstream_key_id", "model", name="pk_usage_daily"
    ),
    Index("ix_usage_daily_user_day", "user_id", "day"),
    Index("ix_usage_daily_credential_day", "credential_id", "day"),
)

#: The same sums without the user and credential dimensions, for fleet-wide stats.
usage_daily_totals = Table(
    "usage_daily_totals",
    metadata,
    Column("day", Date, nullable=False),
    Column("upstream_key_id", String(36), nullable=False),
    Column("model", String(200), nullable=False),
    *_usage_sums(),
    PrimaryKeyConstraint("day", "upstream_key_id", "model", name="pk_usage_daily_totals"),
)

#: Budget thresholds already announced: one row per budget (subject and amount), window
#: and threshold, so an alert goes out once however many instances see the spend cross
#: it; a budget changed mid-window announces its own thresholds.
budget_alerts = Table(
    "budget_alerts",
    metadata,
    Column("scope", String(16), nullable=False),
    Column("subject_id", String(36), nullable=False),
    Column("window_start", Date, nullable=False),
    Column("threshold", Integer, nullable=False),
    Column("spend", Float, nullable=False),
    Column("budget", Float, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint(
        "scope", "subject_id", "window_start", "budget", "threshold", name="pk_budget_alerts"
    ),
)

#: Anonymous chat widget sessions (`relay/`), bound to the page origin that made them;
#: the cookie's token is kept only as its keyed hash.
relay_sessions = Table(
    "relay_sessions",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("relay", String(64), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("origin", String(300), nullable=False),
    Column("page_url", String(2000), nullable=True),
    Column("client_ip", String(64), nullable=True),
    Column("user_agent", String(300), nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("revoked_at", UTCDateTime, nullable=True),
    Index("ix_relay_sessions_expires_at", "expires_at"),
)

#: A widget session's messages, both ways; `id` is time-ordered (written in batches,
#: read back in order).
relay_messages = Table(
    "relay_messages",
    metadata,
    Column("id", String(26), primary_key=True),
    Column(
        "session_id",
        String(36),
        ForeignKey("relay_sessions.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("role", String(16), nullable=False),
    Column("content", Text, nullable=False),
    Column("complete", Boolean, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Index("ix_relay_messages_session_id_id", "session_id", "id"),
)
