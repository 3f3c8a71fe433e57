"""Passwords: a policy, and argon2id hashing off the event loop.

Hashing takes a deliberate ~0.2 s of CPU and 64 MiB of memory per call with the
default parameters, so it runs in a thread and at most `concurrency` at a time: a
flood of logins queues instead of exhausting memory.
"""

from __future__ import annotations

import asyncio
import re
import string
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

MAX_LENGTH = 128
SPECIALS = "!@#$%^&*"


@dataclass(frozen=True)
class PasswordPolicy:
    """At least `min_length` characters; with `require_classes`, seed 003's four classes."""

    min_length: int = 12
    require_classes: bool = False

    def problems(self, password: str) -> list[str]:
        found = []
        if len(password) < self.min_length:
            found.append(f"must be at least {self.min_length} characters long")
        if len(password) > MAX_LENGTH:
            found.append(f"must be at most {MAX_LENGTH} characters long")
        if self.require_classes:
            classes = [
                (string.ascii_uppercase, "an uppercase letter"),
                (string.ascii_lowercase, "a lowercase letter"),
                (string.digits, "a digit"),
                (SPECIALS, f"one of {SPECIALS}"),
            ]
            for chars, label in classes:
                if not re.search(f"[{re.escape(chars)}]", password):
                    found.append(f"must contain {label}")
        return found


class Passwords:
    """argon2id hashing and verification, in threads, with bounded concurrency."""

    def __init__(
        self,
        *,
        time_cost: int = 3,
        memory_cost: int = 65536,
        parallelism: int = 4,
        concurrency: int = 2,
    ) -> None:
        self._hasher = PasswordHasher(
            time_cost=time_cost, memory_cost=memory_cost, parallelism=parallelism
        )
        self._slots = asyncio.Semaphore(concurrency)
        self._dummy: str | None = None

    async def hash(self, password: str) -> str:
        async with self._slots:
            return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, password_hash: str, password: str) -> bool:
        async with self._slots:
            return await asyncio.to_thread(self._verify, password_hash, password)

    def _verify(self, password_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    async def verify_nobody(self, password: str) -> None:
        """Spend the time a real verification takes, for a login with an unknown name."""
        if self._dummy is None:
            self._dummy = await self.hash("not a password anyone has")
        await self.verify(self._dummy, password)
