"""Logs on stdout, one event a line, with secrets scrubbed on the way out.

JSON (one object a line) for files and pipes, readable lines on a terminal
(`FERRYMAN_LOG_FORMAT=auto`, see `console`). structlog renders Ferryman's own events;
the standard library's loggers (uvicorn, alembic, aiohttp) go through the same
processors, so every line has one shape. Redaction is the last processor before either
renderer: a secret that reached a log call by mistake still never reaches the stream.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from collections.abc import Mapping
from typing import Any, BinaryIO

import orjson
import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from ferryman.observability.console import (
    ConsoleRenderer,
    QuietUvicorn,
    quiet_startup,
    resolve_format,
)

REDACTED = "[redacted]"

#: Field names whose values are never logged.
SENSITIVE_FIELDS = frozenset(
    {
        "authorization",
        "proxy_authorization",
        "cookie",
        "set_cookie",
        "x_api_key",
        "x_client_api_key",
        "x_access_token",
        "api_key",
        "apikey",
        "access_token",
        "refresh_token",
        "token",
        "password",
        "secret",
        "secret_key",
        "encryption_keys",
        "session_token",
        "client_secret",
    }
)

#: Query parameters whose values are never logged.
SENSITIVE_PARAMS = frozenset(
    {
        "token",
        "access_token",
        "refresh_token",
        "id_token",
        "api_key",
        "apikey",
        "api-key",
        "key",
        "password",
        "passwd",
        "secret",
        "client_secret",
        "session",
        "session_token",
        "sig",
        "signature",
        "jwt",
        "code",
        "auth",
        "x-api-key",
    }
)

_SECRET_SHAPES = re.compile(
    r"(?P<bearer>\b(?:Bearer|Basic)\s+)[A-Za-z0-9._~+/=-]{8,}"
    r"|(?P<jwt>\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]+)"
    r"|(?P<fm>\bfm_)[A-Za-z0-9_-]{16,}"
    r"|(?P<sk>\bsk-)[A-Za-z0-9_-]{16,}",
)
_QUERY_PARAM = re.compile(r"(?P<name>[^&=?\s]+)=(?P<value>[^&\s]*)")


def _mask(match: re.Match[str]) -> str:
    for group in ("bearer", "fm", "sk"):
        prefix = match.group(group)
        if prefix:
            return prefix + REDACTED
    return REDACTED


def scrub(text: str) -> str:
    """Mask anything in free text shaped like a bearer token, JWT or API key, or like
    the random tokens Ferryman hands out (access passes, session tokens)."""
    # Every named shape starts with one of these: five substring tests cost a tenth of
    # the regex, which every access line's path would otherwise pay.
    if "fm_" in text or "sk-" in text or "eyJ" in text or "Bearer" in text or "Basic" in text:
        text = _SECRET_SHAPES.sub(_mask, text)
    if len(text) >= TOKEN_LENGTH:
        text = _LONG_TOKEN.sub(_mask_token, text)
    return text


#: Random tokens (passes: 64 characters, session tokens: 43, client keys: 46) are at
#: least this long; identifiers people write (hex ids, slugs, paths) are rarely this long
#: and mixed-case at once.
TOKEN_LENGTH = 40
_LONG_TOKEN = re.compile(rf"[A-Za-z0-9_-]{{{TOKEN_LENGTH},}}")


def _mask_token(match: re.Match[str]) -> str:
    token = match.group(0)
    # Base64url randomness has both cases; hex ids, numbers and slugs do not.
    if token.lower() != token and token.upper() != token:
        return REDACTED
    return token


def looks_secret(text: str) -> bool:
    """Would `scrub` mask any of this text?"""
    return scrub(text) != text


def redact_query(query: str) -> str:
    """Mask the values of sensitive query parameters (`?token=…` → `?token=[redacted]`)."""

    def mask(match: re.Match[str]) -> str:
        name = match.group("name")
        if name.lower() in SENSITIVE_PARAMS:
            return f"{name}={REDACTED}"
        return match.group(0)

    return _QUERY_PARAM.sub(mask, query)


def _redact_url(text: str) -> str:
    path, _, query = text.partition("?")
    return f"{scrub(path)}?{redact_query(query)}"


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, Mapping):
        return {k: _redact_field(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_value(v) for v in value]
    return value


def _redact_field(key: str, value: Any) -> Any:
    if key.lower().replace("-", "_") in SENSITIVE_FIELDS:
        return REDACTED
    return _redact_value(value)


def redact(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """structlog processor: the last line of defence against a secret in a log line."""
    for key, value in event_dict.items():
        if key in SENSITIVE_FIELDS or key.lower().replace("-", "_") in SENSITIVE_FIELDS:
            event_dict[key] = REDACTED
        elif isinstance(value, str):
            if len(value) > 7:
                event_dict[key] = scrub(value)
        elif value is not None and not isinstance(value, int | float | bool):
            event_dict[key] = _redact_field(key, value)
    exc = event_dict.get("exception")
    if isinstance(exc, str):
        event_dict["exception"] = scrub(exc)
    return event_dict


_ts_cache: tuple[int, str] = (0, "")


def timestamp(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """ISO-8601 UTC with milliseconds, the second-level part formatted once a second."""
    event_dict["timestamp"] = iso_time(time.time())
    return event_dict


def iso_time(now: float) -> str:
    """A `time.time()` value as ISO-8601 UTC with milliseconds."""
    global _ts_cache
    second = int(now)
    if _ts_cache[0] != second:
        _ts_cache = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
    return f"{_ts_cache[1]}.{int((now - second) * 1000):03d}Z"


def _render(_: WrappedLogger, __: str, event_dict: EventDict) -> bytes:
    return orjson.dumps(event_dict, default=str)


_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING}


class Sink:
    """Where log lines go, for the one writer that bypasses structlog (the access log)."""

    stream: BinaryIO = sys.stdout.buffer
    level = logging.INFO
    json = True


class _StreamAbortFilter(logging.Filter):
    """uvicorn reports an app exception with a traceback; a stream we cut on purpose
    (the upstream failed mid-response) is logged by us already, without one."""

    def filter(self, record: logging.LogRecord) -> bool:
        from ferryman.proxy.streaming import StreamAborted

        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, StreamAborted)


class _WebSocketLineFilter(logging.Filter):
    """uvicorn logs each WebSocket handshake itself (`"WebSocket /path?token=…" 403`,
    `[accepted]`, `connection open`/`closed`) with the query string in clear, where a
    browser's pass travels; the access log has the same facts, redacted. Its lines are
    dropped, and a query string in any other uvicorn line is redacted."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.msg if isinstance(record.msg, str) else ""
        if '"WebSocket %s"' in message or message in ("connection open", "connection closed"):
            return False
        if record.args and isinstance(record.args, tuple):
            record.args = tuple(
                _redact_url(a) if isinstance(a, str) and "?" in a else a for a in record.args
            )
        return True


def configure_logging(
    level: str = "info", fmt: str = "auto", stream: BinaryIO | None = None
) -> None:
    """Set up structlog and the standard library's logging to write to `stream`:
    `json`, `console`, or `auto` (console when `stream` is a terminal)."""
    out = stream if stream is not None else sys.stdout.buffer
    fmt = resolve_format(fmt, out)
    renderer: Processor = _render if fmt == "json" else ConsoleRenderer()
    numeric = _LEVELS.get(level, logging.ERROR)
    Sink.stream, Sink.level, Sink.json = out, numeric, fmt == "json"
    shared: list[Processor] = [structlog.processors.add_log_level, timestamp]
    quiet = fmt == "console" and numeric > logging.DEBUG
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            *shared,
            *([quiet_startup] if quiet else []),
            structlog.processors.format_exc_info,
            redact,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.BytesLoggerFactory(file=out),
        cache_logger_on_first_use=True,
    )

    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            redact,
            _TextRenderer(renderer),
        ],
    )
    handler = logging.StreamHandler(_BinaryToText(out))
    handler.setFormatter(formatter)
    if quiet:
        handler.addFilter(QuietUvicorn())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
    for name in ("uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    logging.getLogger("uvicorn.access").disabled = True
    logging.getLogger("uvicorn.error").addFilter(_StreamAbortFilter())
    logging.getLogger("uvicorn.error").addFilter(_WebSocketLineFilter())
    # Libraries that are chatty at INFO: their warnings still show.
    for name in ("aiosqlite", "asyncio", "sqlalchemy.engine", "alembic"):
        logging.getLogger(name).setLevel(max(numeric, logging.WARNING))


class _TextRenderer:
    """ProcessorFormatter wants text; our renderers make bytes."""

    def __init__(self, inner: Processor) -> None:
        self._inner = inner

    def __call__(self, logger: WrappedLogger, name: str, event_dict: EventDict) -> str:
        rendered = self._inner(logger, name, event_dict)
        if isinstance(rendered, bytes):
            return rendered.decode("utf-8", "replace")
        return str(rendered)


class _BinaryToText:
    """A text stream over the same binary stream structlog writes to."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out

    def write(self, text: str) -> int:
        self._out.write(text.encode("utf-8", "replace"))
        return len(text)

    def flush(self) -> None:
        self._out.flush()
