"""One chat message: the workflow called, its answer streamed to the widget as SSE.

The SSE answer starts as soon as the message is admitted, so the widget hears at once
that it was taken, and heartbeat comments keep the connection (and any proxy on the
way) alive while the workflow thinks. Then:

    event: begin   {"type": "begin", "session_id": …, "message_id": …}
    event: chunk   {"type": "chunk", "content": "…"}          (as many as come)
    event: done    {"type": "done", "message_id": …}           the answer is complete
    event: error   {"type": "error", "error": code, "message": …}   it failed

A workflow that hangs ends with `workflow_timeout` after the upstream's read timeout;
one that dies mid-answer with `workflow_disconnected`; neither leaks an address. A
widget that leaves cancels the workflow call (its connection is closed).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field

import aiohttp
import structlog
from yarl import URL

from ferryman.observability.context import RequestContext
from ferryman.proxy.upstream import UpstreamClient
from ferryman.proxy.upstream_errors import reason, translate
from ferryman.relay.history import HistoryWriter
from ferryman.relay.http import HEARTBEAT, SSE_HEADERS, Headers, event
from ferryman.relay.workflow import Piece, WorkflowError, WorkflowRequest, pieces
from ferryman.store.relay import WidgetSession
from ferryman.types import Receive, Send

log = structlog.get_logger("ferryman.relay")

_TRANSPORT_CODES = {
    "upstream_timeout": "workflow_timeout",
    "upstream_unreachable": "workflow_unreachable",
    "upstream_disconnected": "workflow_disconnected",
}


@dataclass(slots=True)
class Answer:
    text: list[str] = field(default_factory=list)
    size: int = 0
    error: Piece | None = None
    verdict: bool = False


class ChatCall:
    """Relays one admitted message (see the module docstring)."""

    def __init__(
        self,
        upstream: UpstreamClient,
        request: WorkflowRequest,
        history: HistoryWriter | None,
        heartbeat: float,
        max_answer: int,
    ) -> None:
        self.upstream = upstream
        self.request = request
        self.history = history
        self.heartbeat = heartbeat
        self.max_answer = max_answer
        self.url = URL(upstream.spec.url)

    async def run(
        self,
        receive: Receive,
        send: Send,
        ctx: RequestContext,
        session: WidgetSession,
        message: str,
        page_url: str | None,
        headers: Headers,
        ticket: int,
        now: float,
    ) -> None:
        history = self.history
        asked = history.add(session.id, "user", message) if history else None
        await send(
            {"type": "http.response.start", "status": 200, "headers": [*SSE_HEADERS, *headers]}
        )
        begin = {"type": "begin", "session_id": session.id}
        if asked is not None:
            begin["message_id"] = asked.id
        await send({"type": "http.response.body", "body": event("begin", begin), "more_body": True})
        queue: asyncio.Queue[Piece] = asyncio.Queue()
        answer = Answer()
        producer = asyncio.create_task(
            self._produce(queue, answer, ctx, session, message, page_url, ticket, now)
        )
        watcher = asyncio.create_task(_disconnected(receive))
        try:
            await self._stream(queue, watcher, send, answer, ctx)
        finally:
            watcher.cancel()
            if not producer.done():
                producer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await producer
            breaker = self.upstream.breaker
            if breaker is not None and not answer.verdict:
                breaker.abandoned(ticket)
            complete = answer.error is None and not ctx.client_gone
            if history is not None and (answer.text or complete):
                # An answer cut short is kept as far as it came, marked incomplete.
                history.add(session.id, "assistant", "".join(answer.text), complete)

    async def _stream(
        self,
        queue: asyncio.Queue[Piece],
        watcher: asyncio.Task[None],
        send: Send,
        answer: Answer,
        ctx: RequestContext,
    ) -> None:
        while True:
            getter = asyncio.ensure_future(queue.get())
            done, _ = await asyncio.wait(
                {getter, watcher}, timeout=self.heartbeat, return_when=asyncio.FIRST_COMPLETED
            )
            if watcher in done:
                getter.cancel()
                ctx.client_gone = True
                ctx.error = "client_disconnected"
                return
            if getter not in done:
                getter.cancel()
                await send({"type": "http.response.body", "body": HEARTBEAT, "more_body": True})
                continue
            piece = getter.result()
            if piece.kind == "item":
                if answer.size < self.max_answer:
                    answer.text.append(piece.text)
                    answer.size += len(piece.text)
                data = event("chunk", {"type": "chunk", "content": piece.text})
            elif piece.kind == "end":
                data = event("done", {"type": "done"})
            else:
                answer.error = piece
                ctx.error = piece.code
                data = event("error", {"type": "error", "error": piece.code, "message": piece.text})
            last = piece.kind != "item"
            await send({"type": "http.response.body", "body": data, "more_body": not last})
            if last:
                ctx.response_done = True
                return

    async def _produce(
        self,
        queue: asyncio.Queue[Piece],
        answer: Answer,
        ctx: RequestContext,
        session: WidgetSession,
        message: str,
        page_url: str | None,
        ticket: int,
        now: float,
    ) -> None:
        upstream, breaker = self.upstream, self.upstream.breaker
        body = self.request.body(session, message, page_url)
        headers = self.request.headers(session, body, now)
        if upstream.credential_header is not None:
            headers.append(upstream.credential_header)
        response: aiohttp.ClientResponse | None = None
        try:
            ctx.upstream_sent = time.perf_counter()
            response = await upstream.session.post(
                self.url, data=body, headers=headers, allow_redirects=False
            )
            ctx.upstream_headers = time.perf_counter()
            if breaker is not None:
                answer.verdict = breaker.answered(ticket, response.status)
            async for piece in pieces(response, self.max_answer):
                await queue.put(piece)
        except WorkflowError as exc:
            await queue.put(Piece("error", str(exc), "workflow_failed"))
        except (aiohttp.ClientError, TimeoutError) as exc:
            error = translate(exc, upstream.name)
            if breaker is not None:
                answer.verdict = breaker.failed(ticket, reason(error))
            code = _TRANSPORT_CODES.get(error.code, "workflow_failed")
            text = (
                "the workflow did not answer in time"
                if code == "workflow_timeout"
                else (
                    "the workflow could not be reached"
                    if code == "workflow_unreachable"
                    else "the workflow broke off its answer"
                )
            )
            log.warning(
                "relay_workflow_failed",
                upstream=upstream.name,
                reason=error.message,
                correlation_id=ctx.correlation_id,
            )
            await queue.put(Piece("error", text, code))
        finally:
            ctx.upstream_ended = time.perf_counter()
            if response is not None:
                response.close()


async def _disconnected(receive: Receive) -> None:
    """Returns once the widget has gone (its body was already read)."""
    while (await receive())["type"] != "http.disconnect":
        pass
