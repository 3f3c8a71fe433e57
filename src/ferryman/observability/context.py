"""What the gateway learns about one request while it handles it."""

from __future__ import annotations

import re
import time
from random import getrandbits

from ferryman.metering.reading import Reading
from ferryman.observability.logging import looks_secret
from ferryman.types import Scope

SCOPE_KEY = "ferryman.context"
#: Set in a request's scope by the server when the client broke HTTP's framing midway
#: (the server answered 400 itself and closed the connection).
INVALID_REQUEST = "ferryman.invalid_request"

_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:@/+=-]{1,128}$")


def new_request_id() -> str:
    """128 random bits as 32 hex characters (the shape of a UUID's hex, made cheaper).

    From the process's Mersenne Twister (reseeded from the OS at start and in each forked
    worker), not `os.urandom`: a request id must be unique, not unguessable (a client
    may choose its own), and a system call per request cost more than the rest of it."""
    return f"{getrandbits(128):032x}"


def pick_request_id(incoming: bytes | None) -> str:
    """Keep a caller's `X-Request-ID` when it is sane, else make a new one.

    One shaped like a secret (a client key or token sent there by mistake, or to get it
    written into the logs) is replaced: the id is logged, echoed and stored as is."""
    if incoming and _REQUEST_ID.match(incoming):
        text = incoming.decode("ascii")
        if not looks_secret(text):
            return text
    return new_request_id()


class RequestContext:
    """Filled in along the hot path, read once by the access log and metrics."""

    __slots__ = (
        "attempts",
        "bytes_in",
        "bytes_out",
        "client_gone",
        "client_ip",
        "consumer",
        "correlation_id",
        "credential",
        "error",
        "meter",
        "reading",
        "response_done",
        "response_headers",
        "route",
        "session",
        "started",
        "status",
        "upstream",
        "upstream_ended",
        "upstream_headers",
        "upstream_key",
        "upstream_sent",
        "websocket",
    )

    def __init__(self, correlation_id: str, client_ip: str) -> None:
        self.correlation_id = correlation_id
        self.client_ip = client_ip
        self.started = time.perf_counter()
        self.route: str | None = None
        self.upstream: str | None = None
        self.upstream_key: str | None = None
        self.attempts = 0
        self.meter = False
        self.reading: Reading | None = None
        self.consumer: str | None = None
        self.credential: str | None = None
        self.session: str | None = None
        self.status = 0
        self.error: str | None = None
        self.bytes_in = 0
        self.bytes_out = 0
        self.upstream_sent = 0.0
        self.upstream_headers = 0.0
        self.upstream_ended = 0.0
        self.response_done = False
        self.response_headers: list[tuple[bytes, bytes]] | None = None
        self.client_gone = False
        #: A relayed WebSocket connection: (close code, messages in, messages out).
        self.websocket: tuple[int | None, int, int] | None = None


def context_of(scope: Scope) -> RequestContext:
    ctx: RequestContext = scope[SCOPE_KEY]
    return ctx
