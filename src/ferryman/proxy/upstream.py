"""One upstream at run time: its pooled aiohttp session and how to address it."""

from __future__ import annotations

import base64
import os
import ssl
from urllib.parse import urlsplit

import aiohttp
from yarl import URL

from ferryman.config.upstreams import BasicCredential, FixedCredential, Upstream
from ferryman.errors import ConfigError
from ferryman.upstreams.breaker import UpstreamBreaker

#: aiohttp adds these unless told not to; a proxy must send only what the client sent.
_SKIP_AUTO_HEADERS = frozenset({"Accept", "Accept-Encoding", "User-Agent", "Content-Type"})


class UpstreamClient:
    """The session and address of one configured upstream.

    The session keeps connections alive in a pool of `pool.size`, never decompresses
    (bytes pass through as sent), never stores cookies (they belong to the clients)
    and never follows redirects (the caller passes `allow_redirects=False`).
    """

    def __init__(self, name: str, spec: Upstream) -> None:
        self.name = name
        self.spec = spec
        parts = urlsplit(spec.url)
        self.origin = f"{parts.scheme}://{parts.netloc}"
        self.path_prefix = parts.path.rstrip("/")
        self.timeout = aiohttp.ClientTimeout(
            total=spec.timeout.total,
            connect=spec.pool.acquire_timeout,
            sock_connect=spec.timeout.connect,
            sock_read=spec.timeout.read,
        )
        self.credential_header: tuple[str, str] | None = None
        #: The credential header's name as clients' headers arrive (lower case): a
        #: client's own copy is never forwarded beside the gateway's.
        self.credential_drop: frozenset[bytes] = frozenset()
        self.breaker: UpstreamBreaker | None = None
        """The upstream's circuit breaker, when it has one (set by `install_breakers`)."""
        self._session: aiohttp.ClientSession | None = None
        self._ws_session: aiohttp.ClientSession | None = None

    def resolve_credential(self) -> None:
        """Read a fixed credential from the environment; ConfigError when it is missing."""
        credential = self.spec.credential
        if isinstance(credential, FixedCredential):
            value = self._variable(credential.value_env)
            self.credential_header = (credential.header, credential.prefix + value)
        elif isinstance(credential, BasicCredential):
            pair = (
                f"{self._variable(credential.user_env)}:{self._variable(credential.password_env)}"
            )
            encoded = base64.b64encode(pair.encode()).decode("ascii")
            self.credential_header = ("Authorization", f"Basic {encoded}")
        if self.credential_header is not None:
            self.credential_drop = frozenset({self.credential_header[0].lower().encode()})

    def _variable(self, name: str) -> str:
        value = os.environ.get(name)
        if not value:
            raise ConfigError(
                f"upstreams.{self.name}.credential: environment variable {name} is not set"
            )
        return value

    async def start(self, *, credentials: bool = True) -> None:
        """Open the pool; `credentials=False` skips the fixed credential (tools that only
        probe pool keys need no other secret)."""
        if credentials:
            self.resolve_credential()
        ssl_context: ssl.SSLContext | bool = bool(self.spec.tls_verify)
        connector = aiohttp.TCPConnector(
            limit=self.spec.pool.size,
            limit_per_host=0,
            keepalive_timeout=self.spec.pool.keepalive,
            ttl_dns_cache=300,
            ssl=ssl_context,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=self.timeout,
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
            skip_auto_headers=_SKIP_AUTO_HEADERS,
            trust_env=False,
            raise_for_status=False,
        )

    def websocket_session(self) -> aiohttp.ClientSession:
        """A session of its own for WebSocket connections: each holds its connection for
        as long as it is open, so they must not take the pool's `size` slots from HTTP
        requests (a route's `max_parallel` is what caps them)."""
        if self._ws_session is None:
            connector = aiohttp.TCPConnector(
                limit=0, ttl_dns_cache=300, ssl=bool(self.spec.tls_verify), force_close=True
            )
            self._ws_session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(
                    total=None, sock_connect=self.spec.timeout.connect, sock_read=None
                ),
                auto_decompress=False,
                cookie_jar=aiohttp.DummyCookieJar(),
                skip_auto_headers=_SKIP_AUTO_HEADERS,
                trust_env=False,
            )
        return self._ws_session

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError(f"upstream {self.name!r} is not started")
        return self._session

    def url(self, path: str, query: bytes) -> URL:
        """The upstream URL for an already checked and joined path (raw, not re-encoded)."""
        if query:
            return URL(f"{self.origin}{path}?{query.decode('ascii')}", encoded=True)
        return URL(self.origin + path, encoded=True)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._ws_session is not None:
            await self._ws_session.close()
            self._ws_session = None
