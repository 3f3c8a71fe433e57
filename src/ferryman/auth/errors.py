"""The credential errors every kind answers with, worded once."""

from __future__ import annotations

from ferryman.errors import Unauthorized

#: RFC 6750: the credential was presented but is no good.
_BAD = 'Bearer realm="ferryman", error="invalid_token"'


def invalid(what: str) -> Unauthorized:
    return Unauthorized(f"the {what} is not valid", code="invalid_credential", challenge=_BAD)


def revoked(what: str) -> Unauthorized:
    return Unauthorized(f"the {what} has been revoked", code="revoked_credential", challenge=_BAD)


def expired(what: str) -> Unauthorized:
    return Unauthorized(f"the {what} has expired", code="expired_credential", challenge=_BAD)


def disabled() -> Unauthorized:
    return Unauthorized("the account is disabled", code="account_disabled", challenge=_BAD)


def idle(what: str) -> Unauthorized:
    return Unauthorized(
        f"the {what} ended after inactivity", code="expired_credential", challenge=_BAD
    )
