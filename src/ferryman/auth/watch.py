"""Long-lived connections that must end when their credential does.

A WebSocket connection is checked once, at its handshake. It registers here with its
identity; when that credential is revoked or changed (an invalidation, local or from
the fleet over Redis) its future is resolved at once, and when its account changes the
account is read again and resolved if it can no longer act (disabled or
deleted).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import structlog

from ferryman.auth.cache import UserState
from ferryman.auth.identity import Identity

log = structlog.get_logger("ferryman.auth")


class Watchers:
    def __init__(self, load_state: Callable[[str], Awaitable[UserState | None]]) -> None:
        self._load_state = load_state
        self._by_credential: dict[str, set[asyncio.Future[None]]] = {}
        self._by_user: dict[str, set[asyncio.Future[None]]] = {}
        self._checks: set[asyncio.Task[None]] = set()

    def watch(self, identity: Identity) -> tuple[asyncio.Future[None], Callable[[], None]]:
        """A future resolved when this identity stops being good (a future, not a task
        or an event: it costs an idle connection nothing to hold), and how to stop
        watching."""
        ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        credential, user = identity.credential_id, identity.user_id
        self._by_credential.setdefault(credential, set()).add(ended)
        self._by_user.setdefault(user, set()).add(ended)

        def unwatch() -> None:
            for index, key in ((self._by_credential, credential), (self._by_user, user)):
                events = index.get(key)
                if events is not None:
                    events.discard(ended)
                    if not events:
                        del index[key]

        return ended, unwatch

    def credential_changed(self, credential_id: str) -> None:
        for ended in self._by_credential.get(credential_id, ()):
            _end(ended)

    def user_changed(self, user_id: str) -> None:
        if user_id not in self._by_user:
            return
        try:
            task = asyncio.get_running_loop().create_task(self._check_user(user_id))
        except RuntimeError:  # no loop (a tool, not the server): nothing is watched
            return
        self._checks.add(task)
        task.add_done_callback(self._checks.discard)

    async def _check_user(self, user_id: str) -> None:
        try:
            state = await self._load_state(user_id)
        except Exception as exc:  # a failed read ends nothing; the next change rechecks
            log.warning("watch_recheck_failed", user_id=user_id, error=type(exc).__name__)
            return
        if state is None or not state.is_active:
            for ended in self._by_user.get(user_id, ()):
                _end(ended)

    @property
    def watched(self) -> int:
        return sum(len(events) for events in self._by_credential.values())


def _end(ended: asyncio.Future[None]) -> None:
    if not ended.done():
        ended.set_result(None)
