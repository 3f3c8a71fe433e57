"""Accounts: registration, login, and what admins may change."""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog

from ferryman.errors import BadRequest, Conflict, Forbidden, Unauthorized
from ferryman.store import sessions as session_rows
from ferryman.store import users as rows
from ferryman.store.users import User

if TYPE_CHECKING:
    from ferryman.auth.services import Auth

log = structlog.get_logger("ferryman.users")

USERNAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{2,63}$")
EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")


@dataclass(frozen=True)
class Registration:
    """Self-service registration: whether it is open, and what a new account may do."""

    open: bool
    permissions: tuple[str, ...] = ()


CLOSED = Registration(open=False)


def normalise_username(username: str) -> str:
    name = username.strip().lower()
    if not USERNAME.match(name):
        raise BadRequest(
            "a username is 3 to 64 letters, digits, '.', '_' or '-', starting with a "
            "letter or digit",
            code="invalid_username",
        )
    return name


class Users:
    def __init__(self, auth: Auth) -> None:
        self._auth = auth

    async def register(
        self,
        username: str | None,
        password: str,
        *,
        email: str | None = None,
        full_name: str | None = None,
        role: str = "user",
        permissions: tuple[str, ...] = (),
    ) -> User:
        """A new account; BadRequest for a weak password, Conflict for a taken name.

        Without a username the email address is the username too. Usernames cannot hold
        an `@`, so such a name never collides with a chosen one, and a login with the
        address finds the account by its email as for any other.
        """
        if email is not None:
            email = email.strip().lower()
            if not EMAIL.match(email):
                raise BadRequest("that is not an email address", code="invalid_email")
        if username is not None:
            name = normalise_username(username)
        elif email is None:
            raise BadRequest("a username or an email is required", code="invalid_username")
        elif not email.isascii():
            # A username may travel upstream in a header, which must be ASCII.
            raise BadRequest(
                "an address with non-ASCII characters cannot be a username; choose one too",
                code="invalid_email",
            )
        else:
            name = email
        problems = self._auth.policy.problems(password)
        if problems:
            raise BadRequest("the password " + "; ".join(problems), code="weak_password")
        password_hash = await self._auth.passwords.hash(password)
        user = await rows.create(
            self._auth.db,
            username=name,
            password_hash=password_hash,
            email=email,
            full_name=full_name,
            role=role,
            permissions=permissions,
            now=self._auth.clock.now(),
        )
        log.info("user_registered", user_id=user.id, role=role)
        return user

    async def login(self, login: str, password: str, client_ip: str) -> User:
        """The user these credentials belong to, or 401; throttled per IP and account.

        An unknown name costs the same password verification as a known one, so the
        answer's timing does not tell which names exist.
        """
        auth = self._auth
        name = login.strip().lower()
        address = "ip:" + client_ip
        await auth.throttle.check(address)
        user = await rows.by_login(auth.db, name)
        # One budget per account, whether it is named by username or email.
        account = "account:" + (user.id if user is not None else name)
        attempt = await auth.throttle.reserve(address, account)
        if user is None:
            await auth.passwords.verify_nobody(password)
            ok = False
        else:
            ok = await auth.passwords.verify(user.password_hash, password)
        if not ok or user is None:
            log.info("login_failed", client_ip=client_ip)
            raise Unauthorized("wrong username or password", code="invalid_login")
        await auth.throttle.succeeded(attempt, clear=(account,), undo=(address,))
        if not user.is_active:
            raise Unauthorized("the account is disabled", code="account_disabled")
        return user

    async def change_password(
        self, user: User, current: str, new: str, *, keep_session: str | None = None
    ) -> int:
        """Set a new password after checking the current one (403 `wrong_password`: the
        caller is logged in but did not prove the password; throttled like logins).
        Every session of the account but `keep_session` (the one making the change)
        ends; returns how many did."""
        auth = self._auth
        account = "account:" + user.id
        await auth.throttle.check(account)
        attempt = await auth.throttle.reserve(account)
        if not await auth.passwords.verify(user.password_hash, current):
            log.info("password_change_refused", user_id=user.id)
            raise Forbidden("the current password is wrong", code="wrong_password")
        await auth.throttle.succeeded(attempt, clear=(account,), undo=())
        problems = auth.policy.problems(new)
        if problems:
            raise BadRequest("the password " + "; ".join(problems), code="weak_password")
        password_hash = await auth.passwords.hash(new)
        now = auth.clock.now()
        await rows.change(auth.db, user.id, now, password_hash=password_hash)
        ended = 0
        for session in await session_rows.for_user(auth.db, user.id):
            if session.id != keep_session and session.revoked_at is None:
                await session_rows.revoke(auth.db, session.id, now)
                await auth.invalidations.credential(session.id)
                ended += 1
        await auth.invalidations.user(user.id)
        log.info("password_changed", user_id=user.id, sessions_ended=ended)
        return ended

    async def reset_password(self, user_id: str) -> tuple[User, str] | None:
        """A new random password for the account (an admin's reset), shown once; every
        session of the account ends. None: no such account."""
        auth = self._auth
        password = secrets.token_urlsafe(15)  # 20 characters, 120 random bits
        now = auth.clock.now()
        password_hash = await auth.passwords.hash(password)
        user = await rows.change(auth.db, user_id, now, password_hash=password_hash)
        if user is None:
            return None
        for session in await session_rows.for_user(auth.db, user_id):
            if session.revoked_at is None:
                await session_rows.revoke(auth.db, session.id, now)
                await auth.invalidations.credential(session.id)
        await auth.invalidations.user(user_id)
        log.info("password_reset", user_id=user_id)
        return user, password

    async def set_active(self, user_id: str, active: bool) -> User | None:
        user = await rows.change(self._auth.db, user_id, self._auth.clock.now(), is_active=active)
        await self._auth.invalidations.user(user_id)
        if user is not None:
            log.info("user_changed", user_id=user_id, is_active=active)
        return user

    async def set_access(
        self,
        user_id: str,
        *,
        role: str | None,
        permissions: tuple[str, ...] | None,
        caps: Mapping[str, object] | None = None,
    ) -> User | None:
        """Change what an account may do; `caps` are allowance columns to set (`rpm`,
        `tpm`, `budget_amount`, `budget_period`; None removes a cap)."""
        values: dict[str, object] = dict(caps or {})
        if role is not None:
            values["role"] = role
        if permissions is not None:
            values["permissions"] = permissions
        if not values:
            return await rows.get(self._auth.db, user_id)
        user = await rows.change(self._auth.db, user_id, self._auth.clock.now(), **values)
        await self._auth.invalidations.user(user_id)
        return user

    async def ensure_admin(self, username: str, password: str) -> User:
        """The admin account with this name, created if it does not exist yet.

        An existing account keeps its password (the environment is not a way to reset
        one) but is made an active admin.
        """
        name = normalise_username(username)
        existing = await rows.by_login(self._auth.db, name)
        if existing is None:
            try:
                user = await self.register(name, password, role="admin")
            except Conflict:
                # Another worker (or instance) starting at the same moment made it first.
                existing = await rows.by_login(self._auth.db, name)
                if existing is None:
                    raise
            else:
                log.warning("admin_created", username=name)
                return user
        if existing.role != "admin" or not existing.is_active:
            changed = await rows.change(
                self._auth.db, existing.id, self._auth.clock.now(), role="admin", is_active=True
            )
            await self._auth.invalidations.user(existing.id)
            log.warning("admin_promoted", username=name)
            assert changed is not None
            return changed
        return existing
