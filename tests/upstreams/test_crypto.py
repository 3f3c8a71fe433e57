"""Master keys: sealing, opening and parsing FERRYMAN_ENCRYPTION_KEYS."""

from __future__ import annotations

import base64
import os

import pytest

from ferryman.errors import ConfigError, EncryptionError
from ferryman.upstreams.crypto import NONCE_BYTES, MasterKeys, new_master_key
from ferryman.upstreams.keyring import bound_to

ROW_A = bound_to("0b5f7a0e-aaaa-4000-8000-000000000001")
ROW_B = bound_to("0b5f7a0e-bbbb-4000-8000-000000000002")
SECRET = "sk-or-v1-" + "5" * 64


def keys(*ids: str) -> tuple[str, dict[str, str]]:
    """`ID:KEY,...` for fresh keys with these ids, and the key material by id."""
    material = {key_id: new_master_key() for key_id in ids}
    return ",".join(f"{key_id}:{key}" for key_id, key in material.items()), material


def tamper(sealed: str, index: int) -> str:
    raw = bytearray(base64.urlsafe_b64decode(sealed))
    raw[index] ^= 0x01
    return base64.urlsafe_b64encode(bytes(raw)).decode()


def test_new_master_keys_are_32_random_bytes() -> None:
    first, second = new_master_key(), new_master_key()
    assert len(base64.urlsafe_b64decode(first)) == 32
    assert first != second


@pytest.mark.parametrize("plaintext", [SECRET, "ünïcødé-κλειδί-🔑", "x"])
def test_a_sealed_value_opens_to_the_same_plaintext(plaintext: str) -> None:
    master = MasterKeys.parse(keys("k1")[0])
    key_id, sealed = master.seal(plaintext, ROW_A)
    assert key_id == "k1"
    if len(plaintext) > 4:
        assert plaintext not in sealed
    assert master.open(key_id, sealed, ROW_A) == plaintext


def test_two_seals_of_one_value_differ() -> None:
    master = MasterKeys.parse(keys("k1")[0])
    first = master.seal(SECRET, ROW_A)[1]
    second = master.seal(SECRET, ROW_A)[1]
    assert first != second
    nonce = base64.urlsafe_b64decode(first)[:NONCE_BYTES]
    assert nonce != base64.urlsafe_b64decode(second)[:NONCE_BYTES]
    assert master.open("k1", first, ROW_A) == master.open("k1", second, ROW_A) == SECRET


def test_a_value_sealed_for_one_row_does_not_open_as_another() -> None:
    master = MasterKeys.parse(keys("k1")[0])
    key_id, sealed = master.seal(SECRET, ROW_A)
    with pytest.raises(EncryptionError) as caught:
        master.open(key_id, sealed, ROW_B)
    assert "'k1'" in str(caught.value)
    assert SECRET not in str(caught.value)


def test_an_unknown_key_id_names_it_and_the_configured_ids() -> None:
    master = MasterKeys.parse(keys("k3", "k2")[0])
    sealed = MasterKeys.parse(keys("k1")[0]).seal(SECRET, ROW_A)[1]
    with pytest.raises(EncryptionError) as caught:
        master.open("k1", sealed, ROW_A)
    message = str(caught.value)
    assert "'k1'" in message
    assert "k3" in message and "k2" in message


def test_a_different_key_under_the_same_id_does_not_open() -> None:
    raw, material = keys("k1")
    sealed = MasterKeys.parse(raw).seal(SECRET, ROW_A)[1]
    other, other_material = keys("k1")
    with pytest.raises(EncryptionError) as caught:
        MasterKeys.parse(other).open("k1", sealed, ROW_A)
    message = str(caught.value)
    assert "'k1'" in message
    for value in (SECRET, material["k1"], other_material["k1"]):
        assert value not in message


@pytest.mark.parametrize(
    "index",
    [0, NONCE_BYTES - 1, NONCE_BYTES, NONCE_BYTES + len(SECRET) - 1, -1],
    ids=["nonce-first", "nonce-last", "ciphertext-first", "ciphertext-last", "tag-last"],
)
def test_a_tampered_value_does_not_open(index: int) -> None:
    master = MasterKeys.parse(keys("k1")[0])
    sealed = master.seal(SECRET, ROW_A)[1]
    with pytest.raises(EncryptionError):
        master.open("k1", tamper(sealed, index), ROW_A)


@pytest.mark.parametrize(
    "sealed",
    [
        "",
        "not base64 at all!",
        base64.urlsafe_b64encode(os.urandom(NONCE_BYTES)).decode(),
        base64.urlsafe_b64encode(os.urandom(NONCE_BYTES + 15)).decode(),
        "A" * 41,
    ],
    ids=["empty", "garbage", "nonce-only", "short-tag", "bad-padding"],
)
def test_a_malformed_value_does_not_open(sealed: str) -> None:
    master = MasterKeys.parse(keys("k1")[0])
    with pytest.raises(EncryptionError):
        master.open("k1", sealed, ROW_A)


def test_a_truncated_value_does_not_open() -> None:
    master = MasterKeys.parse(keys("k1")[0])
    raw = base64.urlsafe_b64decode(master.seal(SECRET, ROW_A)[1])
    with pytest.raises(EncryptionError):
        master.open("k1", base64.urlsafe_b64encode(raw[:-1]).decode(), ROW_A)


def test_the_first_entry_is_the_newest_and_seals_new_values() -> None:
    raw, _ = keys("k2", "k1")
    master = MasterKeys.parse(raw)
    assert master.newest == "k2"
    assert master.ids == ("k2", "k1")
    assert master.seal(SECRET, ROW_A)[0] == "k2"


def test_an_older_key_still_opens_what_was_sealed_under_it() -> None:
    old_raw, _ = keys("k1")
    new_raw, _ = keys("k2")
    key_id, sealed = MasterKeys.parse(old_raw).seal(SECRET, ROW_A)
    both = MasterKeys.parse(f"{new_raw},{old_raw}")
    assert key_id == "k1"
    assert both.open("k1", sealed, ROW_A) == SECRET
    # And sealed again, it is under the newest.
    assert both.seal(SECRET, ROW_A)[0] == "k2"
    with pytest.raises(EncryptionError):
        both.open("k2", sealed, ROW_A)


def test_whitespace_and_empty_entries_are_ignored_and_padding_is_optional() -> None:
    newer, older = new_master_key(), new_master_key()
    master = MasterKeys.parse(f"  k.2-a_B:{newer} , ,  k1:{older.rstrip('=')} ,")
    assert master.ids == ("k.2-a_B", "k1")
    key_id, sealed = master.seal(SECRET, ROW_A)
    assert key_id == "k.2-a_B"
    assert MasterKeys.parse(f"k.2-a_B:{newer}").open(key_id, sealed, ROW_A) == SECRET


KEY = new_master_key()
OTHER = new_master_key()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("", "at least one master key"),
        (" , ,", "at least one master key"),
        (KEY, "expected ID:KEY"),
        (f"k1:{KEY},{OTHER}", "entry 2: expected ID:KEY"),
        (f":{KEY}", "expected ID:KEY"),
        (f"bad id:{KEY}", "expected ID:KEY"),
        (f"{'x' * 33}:{KEY}", "expected ID:KEY"),
        (f"{KEY}:{OTHER}", "expected ID:KEY"),
        (f"k1:{KEY},k1:{OTHER}", "'k1' appears twice"),
        ("k1:" + "A" * 41, "(k1): KEY is not URL-safe base64"),
        (f"k1:{KEY[:-2]}", "(k1): KEY must be 32 bytes (AES-256), got 31"),
        ("k1:" + base64.urlsafe_b64encode(os.urandom(16)).decode(), "got 16"),
        ("k1:" + base64.urlsafe_b64encode(os.urandom(33)).decode(), "got 33"),
        ("k1:", "got 0"),
    ],
    ids=[
        "empty",
        "only-commas",
        "missing-colon",
        "second-entry-missing-colon",
        "empty-id",
        "space-in-id",
        "id-too-long",
        "key-and-id-swapped",
        "duplicate-id",
        "bad-base64",
        "truncated",
        "16-bytes",
        "33-bytes",
        "empty-key",
    ],
)
def test_a_bad_key_list_is_a_config_error_without_the_key_material(raw: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        MasterKeys.parse(raw)
    message = str(caught.value)
    assert expected in message
    assert "FERRYMAN_ENCRYPTION_KEYS" in message
    for entry in raw.split(","):
        _, _, material = entry.partition(":")
        for value in (entry.strip(), material.strip()):
            if len(value) >= 8:
                assert value not in message
    assert KEY not in message and OTHER not in message
    assert KEY.rstrip("=") not in message and OTHER.rstrip("=") not in message
