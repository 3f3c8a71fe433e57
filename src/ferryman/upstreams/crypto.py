"""Sealing secrets at rest with AES-256-GCM under versioned master keys.

`FERRYMAN_ENCRYPTION_KEYS` is `ID:KEY,...`, newest first, each KEY 32 random bytes in
URL-safe base64. New values are sealed under the newest key; a value records the id of
the key it was sealed under, so older keys keep opening older values until
`ferryman master-key rotate` has re-sealed them. Every value gets a fresh 96-bit nonce,
and associated data binds the ciphertext to its row: a ciphertext copied into another
row does not open.
"""

from __future__ import annotations

import base64
import binascii
import os
import re

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ferryman.errors import ConfigError, EncryptionError

_ID = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")
NONCE_BYTES = 12


def new_master_key() -> str:
    """32 random bytes in URL-safe base64, the KEY half of an `ID:KEY` entry."""
    return base64.urlsafe_b64encode(os.urandom(32)).decode()


class MasterKeys:
    """The configured master keys, newest first."""

    def __init__(self, keys: list[tuple[str, bytes]]) -> None:
        if not keys:
            raise ConfigError("FERRYMAN_ENCRYPTION_KEYS: at least one master key is needed")
        self._order = [key_id for key_id, _ in keys]
        self._ciphers = {key_id: AESGCM(key) for key_id, key in keys}

    @classmethod
    def parse(cls, raw: str) -> MasterKeys:
        """Parse `ID:KEY,...`; a ConfigError naming the bad entry (never its key)."""
        keys: list[tuple[str, bytes]] = []
        for position, entry in enumerate(part.strip() for part in raw.split(",")):
            if not entry:
                continue
            where = f"FERRYMAN_ENCRYPTION_KEYS entry {position + 1}"
            key_id, sep, encoded = entry.partition(":")
            if not sep or not _ID.match(key_id):
                raise ConfigError(
                    f"{where}: expected ID:KEY with an ID of letters, digits, '_', '.' or '-'"
                )
            if key_id in (known for known, _ in keys):
                raise ConfigError(f"{where}: master key id {key_id!r} appears twice")
            try:
                padded = encoded + "=" * (-len(encoded) % 4)
                key = base64.b64decode(padded, altchars=b"-_", validate=True)
            except (binascii.Error, ValueError):
                raise ConfigError(f"{where} ({key_id}): KEY is not URL-safe base64") from None
            if len(key) != 32:
                raise ConfigError(
                    f"{where} ({key_id}): KEY must be 32 bytes (AES-256), got {len(key)}; make "
                    "one with: python3 -c 'import base64, os; "
                    "print(base64.urlsafe_b64encode(os.urandom(32)).decode())'"
                )
            keys.append((key_id, key))
        return cls(keys)

    @property
    def newest(self) -> str:
        return self._order[0]

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(self._order)

    def seal(self, plaintext: str, bound_to: str) -> tuple[str, str]:
        """(master key id, sealed value) for `plaintext`, bound to the row `bound_to`."""
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._ciphers[self.newest].encrypt(
            nonce, plaintext.encode("utf-8"), bound_to.encode()
        )
        return self.newest, base64.urlsafe_b64encode(nonce + sealed).decode()

    def open(self, key_id: str, sealed: str, bound_to: str) -> str:
        """The plaintext; EncryptionError saying which master key failed and how."""
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise EncryptionError(
                f"sealed under master key {key_id!r}, which FERRYMAN_ENCRYPTION_KEYS does "
                f"not contain (it has {', '.join(self._order)})"
            )
        try:
            raw = base64.urlsafe_b64decode(sealed)
            plain: bytes = cipher.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], bound_to.encode())
            return plain.decode("utf-8")
        except (InvalidTag, binascii.Error, ValueError):
            raise EncryptionError(
                f"does not open with master key {key_id!r}: the key is not the one it was "
                "sealed under, or the stored value was altered"
            ) from None
