"""Everything identity needs, built once per process and shared by the gateway and the
management API."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ferryman.auth.api_keys import ApiKeys
from ferryman.auth.cache import CredentialCache, UserState
from ferryman.auth.hashing import KeyedHash, Signer
from ferryman.auth.invalidation import Invalidations
from ferryman.auth.jwt_tokens import JwtAuth, JwtCodec
from ferryman.auth.pass_cookie import PassCookies
from ferryman.auth.passes import AccessPasses
from ferryman.auth.passwords import PasswordPolicy, Passwords
from ferryman.auth.sessions import Sessions
from ferryman.auth.shared_throttle import LoginThrottle
from ferryman.auth.throttle import FailureThrottle
from ferryman.auth.touch import Touches
from ferryman.auth.users import CLOSED, Registration, Users
from ferryman.auth.watch import Watchers
from ferryman.clock import Clock
from ferryman.config.secrets import Secrets
from ferryman.config.settings import Settings
from ferryman.store import users as user_rows
from ferryman.store.engine import Database

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from ferryman.store.breaker import Breaker
    from ferryman.store.users import User


class Auth:
    """The identity services of one process."""

    def __init__(
        self,
        db: Database,
        settings: Settings,
        secrets: Secrets,
        clock: Clock,
        *,
        cache_ttl: float | None = None,
        registration: Registration = CLOSED,
    ) -> None:
        self.db = db
        self.settings = settings
        self.clock = clock
        self.registration = registration
        ttl = settings.credential_cache_ttl if cache_ttl is None else cache_ttl
        self.cache = CredentialCache(clock, ttl=ttl)
        #: Open connections (WebSocket) that end when their credential or account does.
        self.watchers = Watchers(self.load_state)
        self.invalidations = Invalidations(self.cache, self.watchers)
        self.hash = KeyedHash(secrets.key_pepper.get_secret_value().encode())
        secret = secrets.secret_key.get_secret_value()
        self.session_signer = Signer(secret.encode(), "session")
        self.passwords = Passwords(
            time_cost=settings.password_hash_time_cost,
            memory_cost=settings.password_hash_memory_kib,
            parallelism=settings.password_hash_parallelism,
        )
        self.policy = PasswordPolicy(
            min_length=settings.password_min_length,
            require_classes=settings.password_require_classes,
        )
        self.jwt_codec = JwtCodec(secret, settings.jwt_expire_minutes, clock)
        local = FailureThrottle(
            clock, limit=settings.login_max_failures, window=settings.login_failure_window
        )
        self.throttle = LoginThrottle(local, clock)
        """In this process until `share_throttle` (a fleet's Redis) is called."""
        self.touches = Touches()
        self.users = Users(self)
        self.api_keys = ApiKeys(self)
        self.passes = AccessPasses(self)
        self.pass_cookies = PassCookies(secret, clock)
        self.sessions = Sessions(self)
        self.jwt = JwtAuth(self)

    def share_throttle(self, redis: Redis, prefix: str, breaker: Breaker | None) -> None:
        """Count failed logins in Redis, shared by every instance."""
        local = self.throttle.local
        self.throttle = LoginThrottle(local, self.clock, redis, prefix, breaker)

    def state_of(self, user: User) -> UserState:
        return self.cache.user(
            user.id,
            user.username,
            user.role,
            frozenset(user.permissions),
            user.is_active,
            user.allowance,
        )

    async def load_state(self, user_id: str) -> UserState | None:
        user = await user_rows.get(self.db, user_id)
        return None if user is None else self.state_of(user)
