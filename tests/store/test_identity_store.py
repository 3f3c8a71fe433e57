"""The identity tables on SQLite and PostgreSQL alike."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from ferryman.errors import Conflict
from ferryman.store import api_keys, migrate, passes, sessions, users
from ferryman.store.engine import Database

NOW = datetime(2026, 3, 1, 12, 30, 45, 123456, tzinfo=UTC)


@pytest.fixture
async def db(database: Database) -> Database:
    await migrate.upgrade(database)
    return database


async def new_user(db: Database, name: str = "alice") -> users.User:
    return await users.create(db, username=name, password_hash="h", now=NOW, email=f"{name}@x.io")


async def test_users(db: Database) -> None:
    alice = await new_user(db)
    assert alice.created_at == NOW and alice.created_at.tzinfo is not None
    with pytest.raises(Conflict):
        await new_user(db)
    with pytest.raises(Conflict):
        await users.create(db, username="other", password_hash="h", now=NOW, email="alice@x.io")
    assert (await users.by_login(db, "alice")) == alice
    assert (await users.by_login(db, "alice@x.io")) == alice
    assert await users.get(db, "missing") is None
    changed = await users.change(
        db, alice.id, NOW + timedelta(hours=1), permissions=("read:users",), is_active=False
    )
    assert changed is not None
    assert (changed.permissions, changed.is_active) == (("read:users",), False)
    assert changed.updated_at == NOW + timedelta(hours=1)
    assert await users.change(db, "missing", NOW, is_active=True) is None
    for name in ("bob", "carol"):
        await new_user(db, name)
    page, total = await users.page(db, offset=1, limit=1)
    assert total == 3 and len(page) == 1


async def test_api_keys(db: Database) -> None:
    owner = await new_user(db)
    key = await api_keys.create(
        db,
        limit=1,
        user_id=owner.id,
        name="k",
        key_hash="a" * 64,
        prefix="fm_abcd",
        last4="wxyz",
        scopes=("proxy", "stats:read"),
        expires_at=NOW + timedelta(days=1),
        now=NOW,
    )
    assert await api_keys.by_hash(db, "a" * 64) == key
    assert key.masked == "fm_abcd…wxyz"

    async def another(digest: str) -> api_keys.ApiKey:
        return await api_keys.create(
            db, limit=1, user_id=owner.id, name="k2", key_hash=digest, prefix="fm_efgh",
            last4="abcd", scopes=(), expires_at=None, now=NOW,
        )  # fmt: skip

    with pytest.raises(Conflict):  # the limit counts live keys
        await another("d" * 64)
    revoked = await api_keys.revoke(db, key.id, NOW)
    again = await api_keys.revoke(db, key.id, NOW + timedelta(hours=1))
    assert revoked is not None and again is not None and again.revoked_at == NOW
    second = await another("d" * 64)  # a revoked key no longer counts
    await api_keys.touch(db, {key.id: NOW + timedelta(minutes=5)})
    fetched = await api_keys.get(db, key.id)
    assert fetched is not None and fetched.last_used_at == NOW + timedelta(minutes=5)
    assert {k.id for k in await api_keys.for_user(db, owner.id)} == {key.id, second.id}
    assert {k.id for k in await api_keys.for_user(db, None)} == {key.id, second.id}


async def test_key_search_ignores_case_counts_every_match_and_pages(db: Database) -> None:
    owner = await new_user(db)
    names = ("Gamma one", "gamma_two", "GAMMA%three", "delta")
    for i, name in enumerate(names):
        await api_keys.create(
            db, limit=10, user_id=owner.id, name=name, key_hash=str(i) * 64,
            prefix=f"fm_{i}abc", last4="wxyz", scopes=("proxy",), expires_at=None,
            now=NOW + timedelta(minutes=i),
        )  # fmt: skip

    async def found(text: str, **how: int) -> tuple[list[str], int]:
        keys, total = await api_keys.search(db, owner.id, text=text, **how)  # type: ignore[arg-type]
        return [k.name for k in keys], total

    assert await found("gamma") == (["GAMMA%three", "gamma_two", "Gamma one"], 3)
    assert await found("gAmMa", limit=1) == (["GAMMA%three"], 3)  # counted past the page
    assert await found("gamma", offset=2, limit=2) == (["Gamma one"], 3)
    assert await found("gamma", offset=5) == ([], 3)  # past the end: still counted
    assert await found("%") == (["GAMMA%three"], 1)  # a wildcard is a character
    assert await found("a_t") == (["gamma_two"], 1)
    assert await found("FM_2ABC") == (["GAMMA%three"], 1)  # the prefix too
    assert await found("nothing") == ([], 0)
    assert (await found(""))[1] == 4


async def test_a_pass_is_activated_once_by_concurrent_updates(db: Database) -> None:
    owner = await new_user(db)
    record = await passes.create(
        db, user_id=owner.id, token_hash="b" * 64, duration_hours=12, now=NOW
    )
    assert record.state(NOW) == "not_activated" and record.expires_at is None
    results = await asyncio.gather(
        *(passes.activate(db, record.id, NOW + timedelta(seconds=i)) for i in range(50))
    )
    winners = [stored for stored, activated in results if activated]
    assert len(winners) == 1
    activated_at = winners[0].activated_at
    assert all(stored is not None and stored.activated_at == activated_at for stored, _ in results)
    stored = await passes.get(db, record.id)
    assert stored is not None and stored.expires_at == activated_at + timedelta(hours=12)
    assert stored.state(activated_at) == "active"
    assert stored.state(activated_at + timedelta(hours=12)) == "expired"
    revoked = await passes.revoke(db, record.id, NOW + timedelta(hours=1))
    again = await passes.revoke(db, record.id, NOW + timedelta(hours=2))
    assert revoked is not None and again is not None
    assert again.revoked_at == revoked.revoked_at == NOW + timedelta(hours=1)
    assert again.state(NOW) == "revoked"


async def test_sessions(db: Database) -> None:
    owner = await new_user(db)
    session = await sessions.create(
        db,
        user_id=owner.id,
        token_hash="c" * 64,
        csrf_token="csrf",
        now=NOW,
        expires_at=NOW + timedelta(days=1),
        user_agent="ua",
        client_ip="127.0.0.1",
    )
    assert await sessions.by_hash(db, "c" * 64) == session
    await sessions.touch(db, {session.id: NOW + timedelta(minutes=3)})
    await sessions.revoke(db, session.id, NOW + timedelta(minutes=4))
    [stored] = await sessions.for_user(db, owner.id)
    assert stored.last_seen_at == NOW + timedelta(minutes=3)
    assert stored.revoked_at == NOW + timedelta(minutes=4)
