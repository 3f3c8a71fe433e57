"""Requests are accounted in batches: on a timer, when enough wait, before a scrape."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from ferryman.observability.access_log import Record
from ferryman.observability.metrics import LocalMetrics
from ferryman.observability.recorder import RequestRecorder
from tests.conftest import LogReader
from tests.fakes.upstream import FakeUpstream
from tests.support import client_session, gateway_dict, serve_app


def record(correlation_id: str, route: str = "r") -> Record:
    return (
        1_800_000_000.0, logging.INFO, "GET", b"/x", b"token=abc", route, 200, 0.002,
        "up", 0.001, 0.0015, 0, 10, correlation_id, "127.0.0.1", None, None, None, None, 0, None,
    )  # fmt: skip


def lines_for(logs: LogReader, prefix: str) -> list[dict[str, Any]]:
    return [e for e in logs.events("request") if e["correlation_id"].startswith(prefix)]


async def test_records_wait_for_the_interval_then_are_written_together(logs: LogReader) -> None:
    metrics = LocalMetrics()
    recorder = RequestRecorder(metrics, interval=0.05, batch=100)
    recorder.record(record("timer-1"))
    recorder.record(record("timer-2"))
    assert lines_for(logs, "timer-") == []
    assert metrics.requests == {}
    await asyncio.sleep(0.15)
    lines = lines_for(logs, "timer-")
    assert [line["correlation_id"] for line in lines] == ["timer-1", "timer-2"]
    assert metrics.requests == {("r", "GET", 200): 2}
    line = lines[0]
    assert line["path"] == "/x?token=[redacted]"
    assert line["timestamp"] == "2027-01-15T08:00:00.000Z"
    assert (line["duration_ms"], line["upstream_ms"], line["upstream_total_ms"]) == (2.0, 1.0, 1.5)


async def test_a_full_batch_is_written_at_once(logs: LogReader) -> None:
    recorder = RequestRecorder(LocalMetrics(), interval=60, batch=3)
    recorder.record(record("batch-1"))
    recorder.record(record("batch-2"))
    assert lines_for(logs, "batch-") == []
    recorder.record(record("batch-3"))
    assert len(lines_for(logs, "batch-")) == 3
    recorder.flush()  # nothing left, nothing written twice
    assert len(lines_for(logs, "batch-")) == 3


async def test_debug_lines_are_counted_but_not_written_above_debug(logs: LogReader) -> None:
    from ferryman.observability.logging import Sink

    metrics = LocalMetrics()
    recorder = RequestRecorder(metrics, interval=0)
    quiet = (*record("quiet-1", route="health")[:1], logging.DEBUG, *record("quiet-1")[2:])
    previous, Sink.level = Sink.level, logging.INFO
    try:
        recorder.record(quiet)  # type: ignore[arg-type]
    finally:
        Sink.level = previous
    assert lines_for(logs, "quiet-") == []
    assert metrics.requests == {("r", "GET", 200): 1}


async def test_a_scrape_sees_every_finished_request(
    settings_factory: Any, upstream: FakeUpstream
) -> None:
    settings = settings_factory(log_flush_interval=10)
    async with serve_app(settings, gateway_dict(upstream.url)) as gw, client_session() as http:
        for _ in range(5):
            async with http.get(f"{gw.url}/echo") as r:
                await r.read()
        async with http.get(f"{gw.url}/metrics") as r:
            text = await r.text()
    assert 'ferryman_requests_total{method="GET",route="main",status="200"} 5.0' in text
