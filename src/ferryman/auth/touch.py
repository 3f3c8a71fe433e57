"""When credentials were last used, remembered in memory and written in batches.

The proxy never writes to the database per request: it notes the time here, and a
background job writes every noted time in one statement per table.
"""

from __future__ import annotations

from datetime import datetime

from ferryman.store import api_keys, sessions
from ferryman.store.engine import Database


class Touches:
    def __init__(self) -> None:
        self.keys: dict[str, datetime] = {}
        self.sessions: dict[str, datetime] = {}

    def key(self, key_id: str, when: datetime) -> None:
        self.keys[key_id] = when

    def session(self, session_id: str, when: datetime) -> None:
        self.sessions[session_id] = when

    async def flush(self, db: Database) -> None:
        keys, self.keys = self.keys, {}
        seen, self.sessions = self.sessions, {}
        try:
            await api_keys.touch(db, keys)
            await sessions.touch(db, seen)
        except Exception:
            # Keep what was not written for the next round (newer times win).
            for key_id, when in keys.items():
                self.keys.setdefault(key_id, when)
            for session_id, when in seen.items():
                self.sessions.setdefault(session_id, when)
            raise
