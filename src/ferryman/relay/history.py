"""Widget sessions' messages, written in batches off the request path.

A message is queued when it is known (the user's at admission, the answer when it
ended) and written with the others every `interval` seconds. Reading a session's
history merges what is still queued, so a widget that asks right after an answer sees
it. A full queue drops the oldest messages (counted and logged) rather than holding
requests: history is a record, not the conversation itself.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Sequence

import structlog

from ferryman.clock import Clock
from ferryman.store import relay as rows
from ferryman.store.engine import Database
from ferryman.store.relay import Message

log = structlog.get_logger("ferryman.relay")

CAPACITY = 50_000

_sequence = itertools.count()
_process = os.urandom(3).hex()


def message_id() -> str:
    """26 characters, ordered by time: microseconds (14 hex), this process (6), a counter
    (6); ordered the same way as the messages of one session are made."""
    return f"{time.time_ns() // 1000:014x}{_process}{next(_sequence) % 0xFFFFFF:06x}"


class HistoryWriter:
    def __init__(self, db: Database, clock: Clock, capacity: int = CAPACITY) -> None:
        self.db = db
        self.clock = clock
        self.capacity = capacity
        self._queue: list[Message] = []
        self.dropped = 0
        self.written = 0
        self._failures = 0

    def add(self, session_id: str, role: str, content: str, complete: bool = True) -> Message:
        message = Message(
            id=message_id(),
            session_id=session_id,
            role=role,
            content=content,
            complete=complete,
            created_at=self.clock.now(),
        )
        self._queue.append(message)
        if len(self._queue) > self.capacity:
            self.dropped += 1
            del self._queue[0]
            if self.dropped in (1, 10, 100) or self.dropped % 1000 == 0:
                log.warning("relay_history_dropped", dropped=self.dropped)
        return message

    async def flush(self) -> None:
        batch, self._queue = self._queue, []
        try:
            await rows.add_messages(self.db, batch)
        except Exception:
            self._failures += 1
            if self._failures < 3:
                self._queue[:0] = batch  # tried again at the next flush
            else:  # a batch that keeps failing (its session pruned meanwhile) is let go
                self.dropped += len(batch)
                self._failures = 0
            raise
        self._failures = 0
        self.written += len(batch)

    def pending(self, session_id: str) -> Sequence[Message]:
        return [m for m in self._queue if m.session_id == session_id]

    async def page(self, session_id: str, after: str | None, limit: int) -> list[Message]:
        """Up to `limit` messages after `after`, in order: written ones and queued ones."""
        written = await rows.messages(self.db, session_id, after, limit)
        queued = [m for m in self.pending(session_id) if after is None or m.id > after]
        merged = {m.id: m for m in (*written, *queued)}
        return sorted(merged.values(), key=lambda m: m.id)[:limit]
