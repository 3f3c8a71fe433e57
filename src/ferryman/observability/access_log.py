"""The access log: one JSON line per request, written in batches by the recorder.

The lines are built only from fields that are safe by construction: the query string
has sensitive parameters redacted and the path is scrubbed of secret shapes. Nothing
from headers is ever logged.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
import structlog

from ferryman.observability.logging import Sink, iso_time, redact_query, scrub

#: (time, level, method, raw path, query, route, status, seconds, upstream,
#:  upstream seconds, upstream total seconds, bytes in, bytes out, correlation id,
#:  client ip, consumer, credential, error, upstream key id, upstream attempts,
#:  WebSocket (close code, messages in, messages out) or None)
Record = tuple[
    float, int, str, bytes, bytes, str, int, float, "str | None", "float | None",
    "float | None", int, int, str, str, "str | None", "str | None", "str | None",
    "str | None", int, "tuple[int | None, int, int] | None",
]  # fmt: skip


def _ms(seconds: float | None) -> float | None:
    """Milliseconds with microsecond precision."""
    return None if seconds is None else int(seconds * 1_000_000) / 1000


def render(record: Record) -> dict[str, Any]:
    """One access line as a mapping (the JSON object that is written)."""
    (
        at, level, method, raw_path, query, route, status, seconds, upstream,
        upstream_seconds, upstream_total, bytes_in, bytes_out, correlation_id,
        client_ip, consumer, credential, error, upstream_key, attempts, websocket,
    ) = record  # fmt: skip
    path = raw_path.decode("latin-1")
    if query:
        path = f"{path}?{redact_query(query.decode('latin-1'))}"
    line = {
        "event": "request",
        "level": "info" if level == logging.INFO else "debug",
        "timestamp": iso_time(at),
        "method": method,
        # Every secret shape scrub() knows is longer than 16 characters.
        "path": scrub(path) if len(path) > 16 else path,
        "route": route,
        "status": status,
        "duration_ms": _ms(seconds),
        "upstream": upstream,
        "upstream_ms": _ms(upstream_seconds),
        "upstream_total_ms": _ms(upstream_total),
        "bytes_in": bytes_in,
        "bytes_out": bytes_out,
        "correlation_id": correlation_id,
        "client_ip": client_ip,
        "consumer": consumer,
        "credential": credential,
        "error": error,
        "upstream_key": upstream_key,
        "attempts": attempts,
    }
    if websocket is not None:
        line["close_code"], line["messages_in"], line["messages_out"] = websocket
    return line


def write(records: list[Record]) -> None:
    """Write the access lines of these records (those at an enabled level)."""
    level = Sink.level
    if Sink.json:
        option = orjson.OPT_APPEND_NEWLINE
        lines = [orjson.dumps(render(r), option=option) for r in records if r[1] >= level]
        if lines:
            Sink.stream.write(b"".join(lines))
            Sink.stream.flush()
        return
    logger = structlog.get_logger("ferryman.access")
    for record in records:
        # For a person reading: no empty fields (the level is the logger's own).
        fields = {k: v for k, v in render(record).items() if v is not None and k != "level"}
        logger.log(record[1], fields.pop("event"), **fields)
