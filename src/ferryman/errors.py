"""Every error Ferryman raises on purpose, drawn once.

    FerrymanError
     ├── ConfigError                 an invalid settings value or gateway file; start-up stops
     ├── SecretsError                the data directory's secrets cannot be read or written
     ├── StorageError                the database cannot be reached or migrated
     ├── EncryptionError             a master key is malformed, missing or wrong
     └── GatewayError                answered to a client as the JSON error format
          ├── BadRequest             400 (invalid_path, invalid_header, invalid_host, ...)
          ├── Unauthorized           401, with WWW-Authenticate
          ├── Forbidden              403
          ├── NotFound               404 no_route
          ├── MethodNotAllowed       405, with Allow
          ├── PaymentRequired        402 (a balance too small for a purchase)
          ├── Conflict               409 (a username, a limit reached, ...)
          ├── RequestTimeout         408 (a client too slow to send its body)
          ├── PayloadTooLarge        413
          ├── TooManyRequests        429, with Retry-After
          ├── ServiceUnavailable     503
          └── UpstreamError          502 upstream_error
               ├── UpstreamConnectError   502 (also ConnectionError): refused, reset, DNS
               ├── UpstreamTimeout        504 (also TimeoutError): connect, read or total
               └── UpstreamProtocolError  502: the upstream spoke broken HTTP

aiohttp's exceptions are translated into UpstreamError in one place,
`ferryman.proxy.upstream_errors`, always with `raise ... from exc`.
"""

from __future__ import annotations


class FerrymanError(Exception):
    """Base of every error Ferryman raises on purpose."""


class ConfigError(FerrymanError):
    """Invalid configuration: the message is meant for an operator, never a traceback."""


class SecretsError(FerrymanError):
    """The secrets in the data directory are unreadable, malformed or unwritable."""


class StorageError(FerrymanError):
    """The database cannot be reached, or its schema cannot be migrated."""


class EncryptionError(FerrymanError):
    """A sealed value cannot be opened: its master key is not configured, or is not the
    key it was sealed under (or the stored value was altered)."""


class GatewayError(FerrymanError):
    """An error answered to the client in the JSON error format."""

    status: int = 500
    code: str = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.headers: list[tuple[bytes, bytes]] = headers or []


class BadRequest(GatewayError):
    status = 400
    code = "bad_request"


class Unauthorized(GatewayError):
    status = 401
    code = "unauthorized"

    def __init__(
        self, message: str, *, code: str | None = None, challenge: str = 'Bearer realm="ferryman"'
    ) -> None:
        super().__init__(message, code=code, headers=[(b"www-authenticate", challenge.encode())])


class Forbidden(GatewayError):
    status = 403
    code = "forbidden"


class NotFound(GatewayError):
    status = 404
    code = "not_found"


class MethodNotAllowed(GatewayError):
    status = 405
    code = "method_not_allowed"

    def __init__(self, message: str, *, allow: tuple[str, ...]) -> None:
        super().__init__(message, headers=[(b"allow", ", ".join(allow).encode())])
        self.allow = allow


class PaymentRequired(GatewayError):
    status = 402
    code = "insufficient_balance"


class Conflict(GatewayError):
    status = 409
    code = "conflict"


class TooManyRequests(GatewayError):
    status = 429
    code = "too_many_requests"

    def __init__(self, message: str, *, retry_after: int, code: str | None = None) -> None:
        super().__init__(message, code=code, headers=[(b"retry-after", str(retry_after).encode())])
        self.retry_after = retry_after


class RequestTimeout(GatewayError):
    status = 408
    code = "request_timeout"

    def __init__(self, message: str) -> None:
        # What is left of the body will not be read: the connection cannot carry on.
        super().__init__(message, headers=[(b"connection", b"close")])


class PayloadTooLarge(GatewayError):
    status = 413
    code = "payload_too_large"


class ServiceUnavailable(GatewayError):
    status = 503
    code = "service_unavailable"


class UpstreamError(GatewayError):
    status = 502
    code = "upstream_error"


class UpstreamConnectError(UpstreamError, ConnectionError):
    status = 502
    code = "upstream_unreachable"


class UpstreamTimeout(UpstreamError, TimeoutError):
    status = 504
    code = "upstream_timeout"


class UpstreamProtocolError(UpstreamError):
    status = 502
    code = "upstream_protocol_error"
