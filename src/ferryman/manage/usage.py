"""Whose usage a reader may see (the stats API and the console's dashboard)."""

from __future__ import annotations

from datetime import date

from ferryman.auth.identity import Identity
from ferryman.errors import BadRequest, Forbidden


def check_range(start: date | None, end: date | None) -> None:
    if start and end and start > end:
        raise BadRequest("start_date is after end_date", code="invalid_date_range")


def visible_owner(reader: Identity, user_id: str | None) -> str | None:
    """Whose usage the reader may see: their own, or (admins with a JWT or session)
    one user's, or everyone's (None)."""
    if reader.is_admin and reader.kind != "api_key":
        return user_id
    if user_id is not None and user_id != reader.user_id:
        raise Forbidden("only admins read others' usage", code="admin_required")
    return reader.user_id
