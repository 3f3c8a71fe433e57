"""Metrics for several workers: prometheus-client's multiprocess mode.

`ferryman serve` points `PROMETHEUS_MULTIPROC_DIR` at a fresh directory before the
workers start; each writes its samples there and any worker's `/metrics` answers for
all. The one-process counters are `metrics.LocalMetrics`; both keep `Metrics`' interface.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from ferryman.observability.metric_names import (
    BREAKER_STATE,
    BREAKER_STATES,
    BREAKER_TRANSITIONS,
    BUDGET,
    DURATION,
    ERRORS,
    IN_FLIGHT,
    JOB_FAILURES,
    JOB_SUCCESS,
    KEY_FAILURES,
    KEY_LABELS,
    KEY_REQUESTS,
    KEY_STATE,
    KEY_STATES,
    LATENCY_BUCKETS,
    LIMITER_FALLBACKS,
    REQUESTS,
    UPSTREAM,
    UPSTREAM_BREAKER_REFUSED,
    UPSTREAM_BREAKER_STATE,
    UPSTREAM_BREAKER_TRANSITIONS,
    USAGE,
    WS_BYTES,
    WS_CLOSED,
    WS_MESSAGES,
    WS_OPEN,
)
from ferryman.observability.metrics import Metrics, _method_label


class SharedMetrics(Metrics):
    """prometheus-client's multiprocess mode, for several workers."""

    batched = False

    def __init__(self) -> None:
        r = CollectorRegistry()
        self._requests = Counter(*REQUESTS, ["route", "method", "status"], registry=r)
        self._duration = Histogram(*DURATION, ["route"], buckets=LATENCY_BUCKETS, registry=r)
        self._upstream = Histogram(
            *UPSTREAM, ["route", "upstream"], buckets=LATENCY_BUCKETS, registry=r
        )
        self._errors = Counter(*ERRORS, ["upstream", "reason"], registry=r)
        self._in_flight = Gauge(*IN_FLIGHT, registry=r, multiprocess_mode="livesum")
        self._key_requests = Counter(*KEY_REQUESTS, KEY_LABELS, registry=r)
        self._key_failures = Counter(*KEY_FAILURES, [*KEY_LABELS, "reason"], registry=r)
        self._key_state = Gauge(
            *KEY_STATE, [*KEY_LABELS, "state"], registry=r, multiprocess_mode="mostrecent"
        )
        self._job_success = Gauge(*JOB_SUCCESS, ["job"], registry=r, multiprocess_mode="max")
        self._job_failures = Counter(*JOB_FAILURES, ["job"], registry=r)
        self._limiter_fallbacks = Counter(*LIMITER_FALLBACKS, registry=r)
        # Each worker has a breaker of its own: one series per live worker (`pid`).
        self._breaker_state = Gauge(
            *BREAKER_STATE, ["state"], registry=r, multiprocess_mode="liveall"
        )
        self._breaker_transitions = Counter(*BREAKER_TRANSITIONS, ["state"], registry=r)
        self._usage = Counter(*USAGE, ["outcome"], registry=r)
        self._budget = Counter(*BUDGET, ["scope", "event"], registry=r)
        self._ws_open = Gauge(*WS_OPEN, ["route"], registry=r, multiprocess_mode="livesum")
        self._ws_messages = Counter(*WS_MESSAGES, ["route", "direction"], registry=r)
        self._ws_bytes = Counter(*WS_BYTES, ["route", "direction"], registry=r)
        self._ws_closed = Counter(*WS_CLOSED, ["route", "by"], registry=r)
        self._upstream_breaker = Gauge(
            *UPSTREAM_BREAKER_STATE, ["upstream", "state"], registry=r, multiprocess_mode="liveall"
        )
        self._upstream_moves = Counter(
            *UPSTREAM_BREAKER_TRANSITIONS, ["upstream", "state"], registry=r
        )
        self._upstream_refused = Counter(*UPSTREAM_BREAKER_REFUSED, ["upstream"], registry=r)

    def request_started(self) -> None:
        self._in_flight.inc()

    def request_finished(self) -> None:
        self._in_flight.dec()

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        self._requests.labels(route, _method_label(method), str(status)).inc()
        self._duration.labels(route).observe(seconds)

    def observe_upstream(self, route: str, upstream: str, seconds: float) -> None:
        self._upstream.labels(route, upstream).observe(seconds)

    def upstream_error(self, upstream: str, reason: str) -> None:
        self._errors.labels(upstream, reason).inc()

    def key_request(self, upstream: str, key_id: str, key_name: str) -> None:
        self._key_requests.labels(upstream, key_id, key_name).inc()

    def key_failure(self, upstream: str, key_id: str, key_name: str, reason: str) -> None:
        self._key_failures.labels(upstream, key_id, key_name, reason).inc()

    def key_state(self, upstream: str, key_id: str, key_name: str, state: str) -> None:
        for known in KEY_STATES:
            self._key_state.labels(upstream, key_id, key_name, known).set(
                1.0 if known == state else 0.0
            )

    def job_run(self, job: str, ok: bool, at: float) -> None:
        if ok:
            self._job_success.labels(job).set(at)
        else:
            self._job_failures.labels(job).inc()

    def limiter_fallback(self) -> None:
        self._limiter_fallbacks.inc()

    def usage_records(self, outcome: str, count: int = 1) -> None:
        self._usage.labels(outcome).inc(count)

    def redis_breaker(self, state: str, transition: bool = True) -> None:
        for known in BREAKER_STATES:
            self._breaker_state.labels(known).set(1.0 if known == state else 0.0)
        if transition:
            self._breaker_transitions.labels(state).inc()

    def budget_event(self, scope: str, event: str) -> None:
        self._budget.labels(scope, event).inc()

    def upstream_breaker(self, upstream: str, state: str, transition: bool = True) -> None:
        for known in BREAKER_STATES:
            self._upstream_breaker.labels(upstream, known).set(1.0 if known == state else 0.0)
        if transition:
            self._upstream_moves.labels(upstream, state).inc()

    def upstream_breaker_refused(self, upstream: str) -> None:
        self._upstream_refused.labels(upstream).inc()

    def websocket_opened(self, route: str) -> None:
        self._ws_open.labels(route).inc()

    def websocket_closed(
        self, route: str, messages: tuple[int, int], size: tuple[int, int], by: str | None
    ) -> None:
        self._ws_open.labels(route).dec()
        for way, count, length in (("in", messages[0], size[0]), ("out", messages[1], size[1])):
            self._ws_messages.labels(route, way).inc(count)
            self._ws_bytes.labels(route, way).inc(length)
        self._ws_closed.labels(route, by or "client").inc()

    def render(self) -> tuple[bytes, bytes]:
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST.encode()

    def close(self) -> None:
        mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]
