"""One message to the workflow, and its answer read as pieces, whatever its shape.

The request follows n8n's chat contract (the body the `@n8n/chat` widget posts to a
Chat Trigger webhook), or a configured template, and carries a short-lived JWT signed
with a secret of the workflow's own and/or an HMAC signature of the body.

The answer may be:

- JSON: `{"output": …}` or `{"text": …}` (or a list of such, as "Respond to Webhook"
  sends), read whole, up to `max_answer`;
- newline-delimited JSON chunks, as n8n streams (`{"type": "begin" | "item" | "end" |
  "error", "content": …}`), read line by line as they come;
- server-sent events whose data are such chunks (or plain text);
- plain text, passed on as it comes.

Each becomes the same sequence of `Piece`s: the answer's text in order, then `end` or
`error`.
"""

from __future__ import annotations

import codecs
import hashlib
import hmac
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from ferryman.config.relay import Relay
from ferryman.errors import ConfigError
from ferryman.store.relay import WidgetSession

ACCEPT = "text/event-stream, application/x-ndjson, application/json;q=0.9, text/plain;q=0.5"
_CHUNK_TYPES = frozenset({"begin", "item", "end", "error"})


@dataclass(frozen=True, slots=True)
class Piece:
    kind: str
    """`item` (text of the answer), `end` (complete) or `error` (failed: `text` says why)."""
    text: str = ""
    code: str = "workflow_failed"
    """An error's code, for the widget and the access log."""


class WorkflowError(Exception):
    """The workflow's answer is not one the relay can read, or says it failed."""


def secret(name: str, what: str) -> bytes:
    value = os.environ.get(name)
    if not value:
        raise ConfigError(f"{what}: environment variable {name} is not set")
    return value.encode()


class WorkflowRequest:
    """Builds one relay's requests to its workflow."""

    def __init__(self, spec: Relay) -> None:
        self.spec = spec
        flow = spec.workflow
        where = f"relays.{spec.name}.workflow"
        self._token_key = secret(flow.token.secret_env, where + ".token") if flow.token else None
        self._sign_key = (
            secret(flow.signature.secret_env, where + ".signature") if flow.signature else None
        )
        if self._token_key is not None:
            import jwt  # noqa: F401 - PyJWT loaded at start, not on the first message

    def body(self, session: WidgetSession, message: str, page_url: str | None) -> bytes:
        metadata = {"origin": session.origin, "page_url": page_url, "relay": self.spec.name}
        flow = self.spec.workflow
        if flow.engine == "n8n":
            payload: Any = {
                "action": "sendMessage",
                "sessionId": session.id,
                "chatInput": message,
                "metadata": metadata,
            }
        else:
            assert flow.template is not None
            values = {
                "session_id": session.id,
                "message": message,
                "origin": session.origin,
                "page_url": page_url or "",
            }
            payload = _fill(flow.template, values)
        return orjson.dumps(payload)

    def headers(self, session: WidgetSession, body: bytes, now: float) -> list[tuple[str, str]]:
        out = [("Content-Type", "application/json"), ("Accept", ACCEPT)]
        flow = self.spec.workflow
        if flow.token is not None and self._token_key is not None:
            import jwt

            claims = {
                "iss": flow.token.issuer,
                "sub": session.id,
                "origin": session.origin,
                "relay": self.spec.name,
                "iat": int(now),
                "exp": int(now) + flow.token.ttl,
                "jti": uuid.uuid4().hex,
            }
            token = jwt.encode(claims, self._token_key, algorithm="HS256")
            out.append((flow.token.header, flow.token.scheme + token))
        if flow.signature is not None and self._sign_key is not None:
            stamp = str(int(now))
            mac = hmac.new(self._sign_key, stamp.encode() + b"." + body, hashlib.sha256)
            out.append((flow.signature.header, f"t={stamp},v1={mac.hexdigest()}"))
        return out


def _fill(template: Any, values: dict[str, str]) -> Any:
    """The template with `{{name}}` put into its strings (values as they are: a
    string value that is exactly one placeholder keeps the value's own type)."""
    if isinstance(template, dict):
        return {key: _fill(value, values) for key, value in template.items()}
    if isinstance(template, list):
        return [_fill(value, values) for value in template]
    if isinstance(template, str):
        for name, value in values.items():
            template = template.replace("{{" + name + "}}", value)
    return template


def output_of(answer: Any) -> str:
    """The answer's text from a whole JSON answer."""
    if isinstance(answer, list) and answer:
        answer = answer[0]
    if isinstance(answer, str):
        return answer
    if isinstance(answer, dict):
        for field in ("output", "text", "message", "response", "content"):
            value = answer.get(field)
            if isinstance(value, str):
                return value
    raise WorkflowError("the workflow's answer has no output or text")


def _chunk(value: Any) -> Piece | None:
    """A streamed chunk as a piece (None: nothing to pass on, as a `begin`)."""
    kind = value.get("type")
    content = value.get("content")
    if kind == "item":
        return Piece("item", content) if isinstance(content, str) and content else None
    if kind == "end":
        return Piece("end")
    if kind == "error":
        return Piece("error", str(content or "the workflow failed")[:300])
    return None


async def pieces(response: aiohttp.ClientResponse, max_answer: int) -> AsyncIterator[Piece]:
    """The answer as pieces; always ends with `end` or `error` (or raises the transport's
    error, for the caller to word)."""
    kind = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if response.status >= 400:
        raise WorkflowError(f"the workflow answered {response.status}")
    if kind == "text/event-stream":
        stream = _events(response)
    elif kind.endswith("json") or kind == "":
        stream = _json(response, max_answer)
    else:
        stream = _text(response)
    async for piece in stream:
        yield piece
        if piece.kind != "item":
            return
    yield Piece("end")


async def _lines(response: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    pending = b""
    while chunk := await response.content.readany():
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            yield line
    if pending:
        yield pending


async def _json(response: aiohttp.ClientResponse, max_answer: int) -> AsyncIterator[Piece]:
    held = bytearray()
    streaming = False
    async for line in _lines(response):
        text = line.strip()
        if not text:
            continue
        if not streaming and held:
            held += b"\n" + line  # a whole JSON answer over several lines
        else:
            try:
                value = orjson.loads(text)
            except orjson.JSONDecodeError:
                if streaming:
                    raise WorkflowError("the workflow sent a chunk that is not JSON") from None
                held += line
            else:
                if isinstance(value, dict) and value.get("type") in _CHUNK_TYPES:
                    streaming = True
                    piece = _chunk(value)
                    if piece is not None:
                        yield piece
                    continue
                if streaming:
                    continue  # an unknown line inside a stream: skipped
                yield Piece("item", output_of(value))
                yield Piece("end")
                return
        if len(held) > max_answer:
            raise WorkflowError(f"the workflow's answer is larger than {max_answer} bytes")
    if held:
        try:
            value = orjson.loads(bytes(held))
        except orjson.JSONDecodeError:
            raise WorkflowError("the workflow's answer is not valid JSON") from None
        yield Piece("item", output_of(value))
    elif not streaming:
        raise WorkflowError("the workflow's answer was empty")


async def _events(response: aiohttp.ClientResponse) -> AsyncIterator[Piece]:
    data: list[bytes] = []
    async for line in _lines(response):
        line = line.rstrip(b"\r")
        if line.startswith(b"data:"):
            data.append(line[5:].removeprefix(b" "))
            continue
        if line or not data:
            continue
        payload, data = b"\n".join(data), []
        try:
            value = orjson.loads(payload)
        except orjson.JSONDecodeError:
            value = payload.decode("utf-8", "replace")
        if isinstance(value, dict) and value.get("type") in _CHUNK_TYPES:
            piece = _chunk(value)
            if piece is not None:
                yield piece
        elif isinstance(value, str) and value and value != "[DONE]":
            yield Piece("item", value)


async def _text(response: aiohttp.ClientResponse) -> AsyncIterator[Piece]:
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    while chunk := await response.content.readany():
        if text := decoder.decode(chunk):
            yield Piece("item", text)
    if rest := decoder.decode(b"", final=True):
        yield Piece("item", rest)
