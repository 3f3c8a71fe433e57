"""When credentials were last used, remembered in memory and written in batches.

The proxy never writes to the database per request: it notes the time here, and a
background job writes every noted time in one statement per table.
"""

from __future__ import annotations

from datetime import UTC, datetime

from ferryman.store import api_keys, sessions
from ferryman.store.engine import Database


def _times(noted: dict[str, float]) -> dict[str, datetime]:
    return {k: datetime.fromtimestamp(v, UTC) for k, v in noted.items()}


class Touches:
    """Times are epoch seconds (`Clock.time()`), cheap to note on every request."""

    def __init__(self) -> None:
        self.keys: dict[str, float] = {}
        self.sessions: dict[str, float] = {}

    def key(self, key_id: str, when: float) -> None:
        self.keys[key_id] = when

    def session(self, session_id: str, when: float) -> None:
        self.sessions[session_id] = when

    def session_seen(self, session_id: str) -> datetime | None:
        """When this process last saw the session used, if not yet written."""
        when = self.sessions.get(session_id)
        return None if when is None else datetime.fromtimestamp(when, UTC)

    async def flush(self, db: Database) -> None:
        keys, self.keys = self.keys, {}
        seen, self.sessions = self.sessions, {}
        try:
            await api_keys.touch(db, _times(keys))
            await sessions.touch(db, _times(seen))
        except Exception:
            # Keep what was not written for the next round (newer times win).
            for key_id, when in keys.items():
                self.keys.setdefault(key_id, when)
            for session_id, when in seen.items():
                self.sessions.setdefault(session_id, when)
            raise
