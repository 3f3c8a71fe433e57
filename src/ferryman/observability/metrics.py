"""Prometheus metrics: counted cheaply on the hot path, rendered when scraped.

Two implementations behind one interface:

- `LocalMetrics` (one process): plain integers and bucket arrays, turned into metric
  families only when `/metrics` is scraped. Counting a request costs a few dict and
  list operations instead of prometheus-client's locked value objects.
- `SharedMetrics` (several workers; `shared_metrics.py`): prometheus-client's
  multiprocess mode, every worker's samples in one directory.

Both run on the event loop thread only, so the local counters need no lock.
"""

from __future__ import annotations

import os
from bisect import bisect_left
from collections.abc import Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

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

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

_KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


def _method_label(method: str) -> str:
    return method if method in _KNOWN_METHODS else "OTHER"


class Metrics:
    """What the gateway counts; see the module docstring for the two implementations."""

    #: May requests be counted in batches? Only when one process answers the scrapes:
    #: another worker's scrape cannot wait for this worker's batch.
    batched = True

    def request_started(self) -> None:
        raise NotImplementedError

    def request_finished(self) -> None:
        raise NotImplementedError

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        raise NotImplementedError

    def observe_upstream(self, route: str, upstream: str, seconds: float) -> None:
        raise NotImplementedError

    def upstream_error(self, upstream: str, reason: str) -> None:
        raise NotImplementedError

    def key_request(self, upstream: str, key_id: str, key_name: str) -> None:
        raise NotImplementedError

    def key_failure(self, upstream: str, key_id: str, key_name: str, reason: str) -> None:
        raise NotImplementedError

    def key_state(self, upstream: str, key_id: str, key_name: str, state: str) -> None:
        """Set the key's state (the gauge is 1 for it and 0 for the other states)."""
        raise NotImplementedError

    def job_run(self, job: str, ok: bool, at: float) -> None:
        raise NotImplementedError

    def limiter_fallback(self) -> None:
        raise NotImplementedError

    def usage_records(self, outcome: str, count: int = 1) -> None:
        raise NotImplementedError

    def redis_breaker(self, state: str, transition: bool = True) -> None:
        """The Redis breaker is in `state` (moved there, unless `transition` is False)."""
        raise NotImplementedError

    def budget_event(self, scope: str, event: str) -> None:
        raise NotImplementedError

    def upstream_breaker(self, upstream: str, state: str, transition: bool = True) -> None:
        """The upstream's breaker is in `state` (moved there, unless `transition` is
        False)."""
        raise NotImplementedError

    def upstream_breaker_refused(self, upstream: str) -> None:
        raise NotImplementedError

    def websocket_opened(self, route: str) -> None:
        raise NotImplementedError

    def websocket_closed(
        self, route: str, messages: tuple[int, int], size: tuple[int, int], by: str | None
    ) -> None:
        """A connection ended: its messages and bytes (in, out) and what ended it."""
        raise NotImplementedError

    def render(self) -> tuple[bytes, bytes]:
        """The exposition body and its content type."""
        raise NotImplementedError

    def close(self) -> None:
        """Release what this process holds (nothing, unless shared)."""


class _Histogram:
    __slots__ = ("counts", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(LATENCY_BUCKETS, value)] += 1
        self.sum += value

    def buckets(self) -> list[tuple[str, float]]:
        out: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip((*LATENCY_BUCKETS, float("inf")), self.counts, strict=True):
            running += count
            out.append(("+Inf" if bound == float("inf") else repr(bound), running))
        return out


class LocalMetrics(Metrics, Collector):
    """Counters in plain Python objects, collected into metric families on scrape."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.requests: dict[tuple[str, str, int], int] = {}
        self.durations: dict[str, _Histogram] = {}
        self.upstream_durations: dict[tuple[str, str], _Histogram] = {}
        self.errors: dict[tuple[str, str], int] = {}
        self.key_requests: dict[tuple[str, str, str], int] = {}
        self.key_failures: dict[tuple[str, str, str, str], int] = {}
        self.key_states: dict[tuple[str, str, str], str] = {}
        self.job_success: dict[str, float] = {}
        self.job_failures: dict[str, int] = {}
        self.limiter_fallbacks = 0
        self.breaker_state: str | None = None
        self.breaker_transitions: dict[str, int] = {}
        self.usage: dict[str, int] = {}
        self.budget: dict[tuple[str, str], int] = {}
        self.ws_open: dict[str, int] = {}
        self.upstream_breakers: dict[str, str] = {}
        self.upstream_moves: dict[tuple[str, str], int] = {}
        self.upstream_refused: dict[str, int] = {}
        self.ws_traffic: dict[tuple[str, str], list[int]] = {}  # (route, way): [msgs, bytes]
        self.ws_closed: dict[tuple[str, str], int] = {}
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    def request_started(self) -> None:
        self.in_flight += 1

    def request_finished(self) -> None:
        self.in_flight -= 1

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method if method in _KNOWN_METHODS else "OTHER", status)
        requests = self.requests
        requests[key] = requests.get(key, 0) + 1
        histogram = self.durations.get(route)
        if histogram is None:
            histogram = self.durations[route] = _Histogram()
        histogram.observe(seconds)

    def observe_upstream(self, route: str, upstream: str, seconds: float) -> None:
        key = (route, upstream)
        histogram = self.upstream_durations.get(key)
        if histogram is None:
            histogram = self.upstream_durations[key] = _Histogram()
        histogram.observe(seconds)

    def upstream_error(self, upstream: str, reason: str) -> None:
        key = (upstream, reason)
        self.errors[key] = self.errors.get(key, 0) + 1

    def key_request(self, upstream: str, key_id: str, key_name: str) -> None:
        key = (upstream, key_id, key_name)
        self.key_requests[key] = self.key_requests.get(key, 0) + 1

    def key_failure(self, upstream: str, key_id: str, key_name: str, reason: str) -> None:
        key = (upstream, key_id, key_name, reason)
        self.key_failures[key] = self.key_failures.get(key, 0) + 1

    def key_state(self, upstream: str, key_id: str, key_name: str, state: str) -> None:
        for known in [k for k in self.key_states if k[1] == key_id and k[2] != key_name]:
            del self.key_states[known]  # renamed: one series per key
        self.key_states[(upstream, key_id, key_name)] = state

    def job_run(self, job: str, ok: bool, at: float) -> None:
        if ok:
            self.job_success[job] = at
        else:
            self.job_failures[job] = self.job_failures.get(job, 0) + 1

    def limiter_fallback(self) -> None:
        self.limiter_fallbacks += 1

    def usage_records(self, outcome: str, count: int = 1) -> None:
        self.usage[outcome] = self.usage.get(outcome, 0) + count

    def redis_breaker(self, state: str, transition: bool = True) -> None:
        self.breaker_state = state
        if transition:
            self.breaker_transitions[state] = self.breaker_transitions.get(state, 0) + 1

    def budget_event(self, scope: str, event: str) -> None:
        key = (scope, event)
        self.budget[key] = self.budget.get(key, 0) + 1

    def upstream_breaker(self, upstream: str, state: str, transition: bool = True) -> None:
        self.upstream_breakers[upstream] = state
        if transition:
            key = (upstream, state)
            self.upstream_moves[key] = self.upstream_moves.get(key, 0) + 1

    def upstream_breaker_refused(self, upstream: str) -> None:
        self.upstream_refused[upstream] = self.upstream_refused.get(upstream, 0) + 1

    def websocket_opened(self, route: str) -> None:
        self.ws_open[route] = self.ws_open.get(route, 0) + 1

    def websocket_closed(
        self, route: str, messages: tuple[int, int], size: tuple[int, int], by: str | None
    ) -> None:
        self.ws_open[route] -= 1
        for way, count, length in (("in", messages[0], size[0]), ("out", messages[1], size[1])):
            totals = self.ws_traffic.setdefault((route, way), [0, 0])
            totals[0] += count
            totals[1] += length
        key = (route, by or "client")
        self.ws_closed[key] = self.ws_closed.get(key, 0) + 1

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(*REQUESTS, labels=["route", "method", "status"])
        for (route, method, status), count in sorted(self.requests.items()):
            requests.add_metric([route, method, str(status)], count)
        yield requests
        durations = HistogramMetricFamily(*DURATION, labels=["route"])
        for route, histogram in sorted(self.durations.items()):
            durations.add_metric([route], histogram.buckets(), histogram.sum)
        yield durations
        upstream = HistogramMetricFamily(*UPSTREAM, labels=["route", "upstream"])
        for (route, name), histogram in sorted(self.upstream_durations.items()):
            upstream.add_metric([route, name], histogram.buckets(), histogram.sum)
        yield upstream
        errors = CounterMetricFamily(*ERRORS, labels=["upstream", "reason"])
        for (name, reason), count in sorted(self.errors.items()):
            errors.add_metric([name, reason], count)
        yield errors
        yield GaugeMetricFamily(*IN_FLIGHT, value=self.in_flight)
        key_requests = CounterMetricFamily(*KEY_REQUESTS, labels=KEY_LABELS)
        for labels, count in sorted(self.key_requests.items()):
            key_requests.add_metric(list(labels), count)
        yield key_requests
        key_failures = CounterMetricFamily(*KEY_FAILURES, labels=[*KEY_LABELS, "reason"])
        for failure_labels, count in sorted(self.key_failures.items()):
            key_failures.add_metric(list(failure_labels), count)
        yield key_failures
        key_states = GaugeMetricFamily(*KEY_STATE, labels=[*KEY_LABELS, "state"])
        for labels, current in sorted(self.key_states.items()):
            for state in KEY_STATES:
                key_states.add_metric([*labels, state], 1.0 if state == current else 0.0)
        yield key_states
        success = GaugeMetricFamily(*JOB_SUCCESS, labels=["job"])
        for job, at in sorted(self.job_success.items()):
            success.add_metric([job], at)
        yield success
        failures = CounterMetricFamily(*JOB_FAILURES, labels=["job"])
        for job, count in sorted(self.job_failures.items()):
            failures.add_metric([job], count)
        yield failures
        yield CounterMetricFamily(*LIMITER_FALLBACKS, value=self.limiter_fallbacks)
        if self.breaker_state is not None:
            breaker = GaugeMetricFamily(*BREAKER_STATE, labels=["state"])
            for state in BREAKER_STATES:
                breaker.add_metric([state], 1.0 if state == self.breaker_state else 0.0)
            yield breaker
            moves = CounterMetricFamily(*BREAKER_TRANSITIONS, labels=["state"])
            for state in BREAKER_STATES:
                moves.add_metric([state], self.breaker_transitions.get(state, 0))
            yield moves
        usage = CounterMetricFamily(*USAGE, labels=["outcome"])
        for outcome, count in sorted(self.usage.items()):
            usage.add_metric([outcome], count)
        yield usage
        budget = CounterMetricFamily(*BUDGET, labels=["scope", "event"])
        for (scope, event), count in sorted(self.budget.items()):
            budget.add_metric([scope, event], count)
        yield budget
        yield from self._websocket_families()
        yield from self._upstream_breaker_families()

    def _upstream_breaker_families(self) -> Iterator[Metric]:
        if not self.upstream_breakers:
            return
        states = GaugeMetricFamily(*UPSTREAM_BREAKER_STATE, labels=["upstream", "state"])
        moves = CounterMetricFamily(*UPSTREAM_BREAKER_TRANSITIONS, labels=["upstream", "state"])
        refused = CounterMetricFamily(*UPSTREAM_BREAKER_REFUSED, labels=["upstream"])
        for upstream, current in sorted(self.upstream_breakers.items()):
            for state in BREAKER_STATES:
                states.add_metric([upstream, state], 1.0 if state == current else 0.0)
                moves.add_metric([upstream, state], self.upstream_moves.get((upstream, state), 0))
            refused.add_metric([upstream], self.upstream_refused.get(upstream, 0))
        yield states
        yield moves
        yield refused

    def _websocket_families(self) -> Iterator[Metric]:
        if not self.ws_open:
            return
        connections = GaugeMetricFamily(*WS_OPEN, labels=["route"])
        for route, count in sorted(self.ws_open.items()):
            connections.add_metric([route], count)
        yield connections
        messages = CounterMetricFamily(*WS_MESSAGES, labels=["route", "direction"])
        sizes = CounterMetricFamily(*WS_BYTES, labels=["route", "direction"])
        for (route, way), (count, length) in sorted(self.ws_traffic.items()):
            messages.add_metric([route, way], count)
            sizes.add_metric([route, way], length)
        yield messages
        yield sizes
        closes = CounterMetricFamily(*WS_CLOSED, labels=["route", "by"])
        for (route, by), count in sorted(self.ws_closed.items()):
            closes.add_metric([route, by], count)
        yield closes

    def render(self) -> tuple[bytes, bytes]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST.encode()


def create_metrics() -> Metrics:
    """Shared across workers when the multiprocess directory is set, else local."""
    if multiprocess_dir():
        from ferryman.observability.shared_metrics import SharedMetrics

        return SharedMetrics()
    return LocalMetrics()
