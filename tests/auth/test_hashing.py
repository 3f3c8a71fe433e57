"""The keyed hash is exactly HMAC-SHA256; signatures and credentials are what they say."""

from __future__ import annotations

import hmac
import re

from hypothesis import given
from hypothesis import strategies as st

from ferryman.auth.hashing import KeyedHash, Signer, key_display, new_api_key, new_pass_token


@given(pepper=st.binary(min_size=16, max_size=200), value=st.text(max_size=200))
def test_keyed_hash_is_hmac_sha256(pepper: bytes, value: str) -> None:
    expected = hmac.new(pepper, value.encode("utf-8", "surrogateescape"), "sha256").hexdigest()
    assert KeyedHash(pepper).digest(value) == expected


def test_credentials_have_their_documented_shapes() -> None:
    key = new_api_key()
    assert re.fullmatch(r"fm_[A-Za-z0-9_-]{43}", key)
    assert key_display(key) == (key[:7], key[-4:])
    assert re.fullmatch(r"[A-Za-z0-9_-]{64}", new_pass_token())
    assert len({new_api_key() for _ in range(1000)}) == 1000


def test_signatures_reject_any_change() -> None:
    signer = Signer(b"secret", "session")
    signed = signer.sign("token-value")
    assert signer.unsign(signed) == "token-value"
    assert Signer(b"other", "session").unsign(signed) is None
    assert Signer(b"secret", "csrf").unsign(signed) is None
    for bad in (signed[:-1] + ("A" if signed[-1] != "A" else "B"), "token-value", ".", "x."):
        assert signer.unsign(bad) is None
