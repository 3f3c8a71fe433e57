"""Process settings: `FERRYMAN_*` environment variables and an optional `.env` file."""

from __future__ import annotations

import ipaddress
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from ferryman.limits.rates import parse_rate

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Shortest signing key or pepper accepted: HMAC-SHA256 keys shorter than its output
#: weaken it, and a short value is usually a placeholder left in by mistake.
MIN_SECRET_BYTES = 32

_MAKE_ONE = "make one with: python3 -c 'import secrets; print(secrets.token_urlsafe(48))'"


def secret_too_short(value: str) -> str | None:
    """Why a signing key or pepper is refused (never quoting it), or None."""
    size = len(value.encode("utf-8"))
    if size < MIN_SECRET_BYTES:
        return f"must be at least {MIN_SECRET_BYTES} bytes long (it has {size}); {_MAKE_ONE}"
    return None


def master_keys_problem(value: str) -> str | None:
    """Why an `ID:KEY,...` list of master keys is refused (never quoting a key), or None."""
    from ferryman.errors import ConfigError
    from ferryman.upstreams.crypto import MasterKeys

    try:
        MasterKeys.parse(value)
    except ConfigError as exc:
        return str(exc).removeprefix("FERRYMAN_ENCRYPTION_KEYS").lstrip(": ")
    return None


class Settings(BaseSettings):
    """How this Ferryman process runs: where its data lives and how it listens.

    The gateway itself (upstreams, routes) comes from the YAML file named by `config`.
    """

    model_config = SettingsConfigDict(
        env_prefix="FERRYMAN_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
    )

    config: Path | None = None
    """The gateway YAML file; without one the built-in OpenRouter gateway is used."""

    data_dir: Path = Path("ferryman-data")
    """Where the SQLite database and generated secrets live."""

    database_url: str | None = None
    """SQLAlchemy URL; default `sqlite+aiosqlite:///<data_dir>/ferryman.db`."""

    database_schema: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
    """PostgreSQL only: the schema Ferryman's tables live in (default: the search path)."""

    database_pool_size: int = Field(default=10, ge=1, le=1000)
    """PostgreSQL connection pool size per process."""

    migrate_on_start: bool = True
    """Apply pending migrations when `serve` starts."""

    redis_url: str | None = None
    """Redis for a fleet of instances; unset means in-process state."""

    redis_prefix: str = "ferryman:"
    """Prefix of every Redis key Ferryman writes."""

    secret_key: SecretStr | None = None
    """Signs tokens and cookies; generated into the data dir when unset."""

    encryption_keys: SecretStr | None = None
    """`ID:KEY,...` master keys, newest first; generated into the data dir when unset."""

    key_pepper: SecretStr | None = None
    """Keys client credentials are hashed under; generated into the data dir when unset."""

    admin_username: str | None = None
    """With `admin_password`: an admin account created at start-up if it does not exist."""
    admin_password: SecretStr | None = None

    registration_enabled: bool | None = None
    """Anyone may register an account at `POST /api/v1/auth/register`; unset, the gateway
    file's `accounts.registration` decides (closed unless it says open)."""

    docs_enabled: bool = False
    """Serve the management API's OpenAPI schema and pages at `/docs`."""

    console_enabled: bool = True
    """Serve the web console (at `console_path`)."""
    console_path: str = Field(
        default="/console", pattern=r"^/[A-Za-z0-9_.~-]+(/[A-Za-z0-9_.~-]+)*$"
    )
    """Where the console lives on the gateway (a prefix no route may use)."""
    root_path: str = Field(default="", pattern=r"^(/[A-Za-z0-9_.~-]+)*$")
    """The path prefix a reverse proxy in front adds (`/gateway`), for the console's
    links; a trusted proxy's `X-Forwarded-Prefix` wins over it."""

    jwt_expire_minutes: int = Field(default=60, ge=1, le=60 * 24 * 30)
    password_min_length: int = Field(default=12, ge=8, le=128)
    password_require_classes: bool = False
    """Also require upper and lower case, a digit and one of `!@#$%^&*` (seed 003)."""
    password_hash_time_cost: int = Field(default=3, ge=1)
    password_hash_memory_kib: int = Field(default=65536, ge=8)
    password_hash_parallelism: int = Field(default=4, ge=1)

    login_max_failures: int = Field(default=5, ge=1)
    """Failed logins per IP and per account within `login_failure_window` (429 beyond)."""
    login_failure_window: float = Field(default=60.0, gt=0)

    auth_rate_limit: str | None = "5/minute"
    """Registration and login attempts (`/auth/register`, `/auth/login`, `/auth/session`)
    per client IP, successful or not: a rate as in route limits (`off`: unlimited)."""
    stats_rate_limit: str | None = "100/hour"
    """Stats API calls (`/stats*`, `/usage`, `/usage.csv`) per credential (`off`: unlimited)."""

    max_keys_per_user: int = Field(default=100, ge=1)
    max_upstream_keys_per_user: int = Field(default=10, ge=0)
    """Provider keys a user may add for their own traffic (0: only admins add keys)."""
    upstream_sync_interval: float = Field(default=3600.0, ge=0)
    """Seconds between syncs of each provider key's usage and credit (0: never)."""
    upstream_validation_interval: float = Field(default=86_400.0, ge=0)
    """Seconds between validations of every provider key, disabled ones included."""
    upstream_history_days: int = Field(default=400, ge=1)
    """Days of per-day provider figures kept for each upstream key (pruned daily): a
    year and a month, so this month can be set beside the same month a year ago."""
    upstream_refresh_interval: float = Field(default=30.0, gt=0)
    """Seconds between reloads of the key pool from the database (changes made through
    this process or announced over Redis apply at once)."""
    access_pass_durations: Annotated[tuple[int, ...], NoDecode] = (1, 12, 24, 168, 720)
    """Hours an access pass may be bought for (comma-separated)."""
    access_pass_prices: Annotated[dict[int, Decimal], NoDecode] = Field(default_factory=dict)
    """Price of a pass per duration, debited from the buyer's credit balance:
    `1:0.50,24:5,720:60` (durations not listed cost 0)."""

    session_max_age: int = Field(default=86_400, ge=60)
    """Seconds a session lives at most."""
    session_idle_timeout: int = Field(default=1800, ge=60)
    """Seconds of inactivity that end a session."""
    session_cookie_secure: bool = True
    """Mark the session cookie `Secure` (turn off only for local plain-HTTP use)."""

    usage_flush_interval: float = Field(default=1.0, gt=0, le=60)
    """Seconds between batched writes of usage records (sooner once a batch is full)."""
    usage_batch_size: int = Field(default=500, ge=1, le=100_000)
    usage_queue_size: int = Field(default=100_000, ge=100)
    """Usage records that may wait in memory; beyond, records are dropped and counted."""
    usage_retention_days: int = Field(default=30, ge=1)
    """Raw usage records older than this are pruned daily (daily aggregates are kept)."""
    price_table: Path | None = None
    """YAML/JSON prices per model (per million input/output tokens), reloaded on change."""

    credential_cache_ttl: float = Field(default=60.0, ge=0)
    """Seconds a verified credential is trusted without reading the database again;
    revocations reach the cache sooner (immediately in-process, via Redis across)."""

    host: str = "127.0.0.1"
    """Address `serve` binds to."""

    port: int = Field(default=8080, ge=0, le=65535)
    workers: int = Field(default=1, ge=1, le=256)

    shutdown_grace: float = Field(default=30.0, ge=0)
    """Seconds SIGTERM waits for in-flight requests before cancelling them."""

    keepalive_timeout: int = Field(default=5, ge=1)
    """Seconds an idle client connection is kept open."""

    header_timeout: float = Field(default=10.0, gt=0, le=3600)
    """Seconds a connection may take to send a request's head (from opening, or from the
    first byte of the next request); slower ones are closed."""

    max_connections_per_ip: int = Field(default=256, ge=0)
    """Connections one client address may hold at once, per process (0: no cap); the
    addresses of FERRYMAN_TRUSTED_PROXIES are exempt."""

    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "json", "console"] = "auto"
    """`json` (one object a line), `console` (readable lines), or `auto`: console when
    standard output is a terminal, JSON otherwise."""

    log_flush_interval: float = Field(default=0.1, ge=0, le=10)
    """Seconds a finished request's access line and metrics may wait to be accounted in a
    batch (a scrape of /metrics never waits); 0 accounts for each at once."""

    openrouter_url: str = "https://openrouter.ai/api/v1"
    """Base URL of the built-in OpenRouter gateway (used when no config file is given)."""

    metrics_enabled: bool = True
    """Serve Prometheus metrics at `/metrics`."""

    trusted_proxies: Annotated[list[IPNetwork], NoDecode] = Field(default_factory=list)
    """Comma-separated addresses or networks whose `X-Forwarded-*` headers are believed."""

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split_networks(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("access_pass_durations", mode="before")
    @classmethod
    def _split_durations(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(int(part) for part in value.split(",") if part.strip())
        return value

    @field_validator("access_pass_durations")
    @classmethod
    def _positive_durations(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value or any(hours <= 0 for hours in value):
            raise ValueError("must be positive whole hours, e.g. 1,12,24,168,720")
        return tuple(sorted(set(value)))

    @field_validator("access_pass_prices", mode="before")
    @classmethod
    def _split_prices(cls, value: object) -> object:
        if isinstance(value, str):
            prices: dict[str, str] = {}
            for part in (p.strip() for p in value.split(",")):
                if not part:
                    continue
                hours, sep, price = part.partition(":")
                if not sep:
                    raise ValueError(f"{part!r}: expected HOURS:PRICE, e.g. 24:5.00")
                prices[hours.strip()] = price.strip()
            return prices
        return value

    @field_validator("access_pass_prices")
    @classmethod
    def _non_negative_prices(cls, value: dict[int, Decimal]) -> dict[int, Decimal]:
        for hours, price in value.items():
            if price < 0 or price != price.quantize(Decimal("0.000001")):
                raise ValueError(f"price for {hours} h must be >= 0 with at most 6 decimals")
        return value

    def pass_price_micros(self, hours: int) -> int:
        return int(self.access_pass_prices.get(hours, Decimal(0)) * 1_000_000)

    @field_validator("secret_key", "key_pepper")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            problem = secret_too_short(value.get_secret_value())
            if problem:
                raise ValueError(problem)
        return value

    @field_validator("encryption_keys")
    @classmethod
    def _master_keys(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            problem = master_keys_problem(value.get_secret_value())
            if problem:
                raise ValueError(problem)
        return value

    @field_validator("auth_rate_limit", "stats_rate_limit", mode="before")
    @classmethod
    def _rate_or_off(cls, value: object) -> object:
        if isinstance(value, str):
            if value.strip().lower() in ("", "off"):
                return None
            parse_rate(value)  # a typo stops start-up, with the rates that would do
            return value.strip()
        return value

    @field_validator("redis_url", "database_url", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @property
    def resolved_database_url(self) -> str:
        """The database URL, defaulting to SQLite in the data directory."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'ferryman.db').resolve()}"
