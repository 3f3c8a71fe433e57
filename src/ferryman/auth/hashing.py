"""Random credentials and the keyed hash they are stored and looked up by.

A stolen database yields only HMAC-SHA256 digests under a pepper that lives outside
it (`FERRYMAN_KEY_PEPPER`, or the data directory's secrets file); without the pepper
they cannot even be checked against a guess.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

API_KEY_PREFIX = "fm_"


def new_api_key() -> str:
    """`fm_` and 43 URL-safe characters (256 random bits)."""
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def new_pass_token() -> str:
    """64 URL-safe characters (384 random bits), as seed 002's passes."""
    return secrets.token_urlsafe(48)


def new_session_token() -> str:
    return secrets.token_urlsafe(32)


def key_display(key: str) -> tuple[str, str]:
    """What may be shown of a key after creation: a prefix and the last four characters."""
    return key[: len(API_KEY_PREFIX) + 4], key[-4:]


class KeyedHash:
    """HMAC-SHA256 under the server's pepper, as 64 hex characters.

    The inner and outer padded key states (RFC 2104) are hashed once here and copied
    per message: the same HMAC, at a third of the cost of `hmac.new` per call (it runs
    on every request that presents a credential).
    """

    def __init__(self, pepper: bytes) -> None:
        if len(pepper) < 16:
            raise ValueError("the key pepper must be at least 16 bytes")
        key = hashlib.sha256(pepper).digest() if len(pepper) > 64 else pepper
        key = key.ljust(64, b"\x00")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))

    def digest(self, value: str) -> str:
        inner = self._inner.copy()
        inner.update(value.encode("utf-8", "surrogateescape"))
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.hexdigest()


class Signer:
    """Signs and checks short values (the session cookie) with the secret key."""

    def __init__(self, secret: bytes, purpose: str) -> None:
        self._key = hashlib.sha256(secret + b"\x00" + purpose.encode()).digest()

    def _mac(self, value: str) -> str:
        mac = hmac.new(self._key, value.encode(), "sha256").digest()
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()

    def sign(self, value: str) -> str:
        return f"{value}.{self._mac(value)}"

    def unsign(self, signed: str) -> str | None:
        """The value if the signature is right (compared in constant time), else None."""
        value, dot, mac = signed.rpartition(".")
        if not dot or not value:
            return None
        if not hmac.compare_digest(mac.encode(), self._mac(value).encode()):
            return None
        return value
