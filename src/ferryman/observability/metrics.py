"""Prometheus metrics, per application, and shared across workers when there are several.

With more than one worker `ferryman serve` points `PROMETHEUS_MULTIPROC_DIR` at a fresh
directory before the workers start; each worker then writes its samples there and any
worker's `/metrics` answers for all of them.
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

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

_LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    120.0, 300.0,
)  # fmt: skip

_KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


class Metrics:
    """The gateway's metrics, registered in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.multiprocess = multiprocess_dir() is not None
        r = self.registry
        self.requests = Counter(
            "ferryman_requests",
            "Requests answered, by route, method and status.",
            ["route", "method", "status"],
            registry=r,
        )
        self.duration = Histogram(
            "ferryman_request_duration_seconds",
            "Time from the request's arrival to the end of its response.",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.upstream_duration = Histogram(
            "ferryman_upstream_duration_seconds",
            "Time from sending the request upstream to the upstream's response headers.",
            ["route", "upstream"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.upstream_errors = Counter(
            "ferryman_upstream_errors",
            "Upstream exchanges that failed, by upstream and reason.",
            ["upstream", "reason"],
            registry=r,
        )
        self.in_flight = Gauge(
            "ferryman_requests_in_flight",
            "Requests being handled now.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self._request_children: dict[tuple[str, str, int], Counter] = {}
        self._duration_children: dict[str, Histogram] = {}
        self._upstream_children: dict[tuple[str, str], Histogram] = {}

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        if method not in _KNOWN_METHODS:
            method = "OTHER"
        key = (route, method, status)
        counter = self._request_children.get(key)
        if counter is None:
            counter = self.requests.labels(route, method, str(status))
            self._request_children[key] = counter
        counter.inc()
        histogram = self._duration_children.get(route)
        if histogram is None:
            histogram = self.duration.labels(route)
            self._duration_children[route] = histogram
        histogram.observe(seconds)

    def observe_upstream(self, route: str, upstream: str, seconds: float) -> None:
        key = (route, upstream)
        histogram = self._upstream_children.get(key)
        if histogram is None:
            histogram = self.upstream_duration.labels(route, upstream)
            self._upstream_children[key] = histogram
        histogram.observe(seconds)

    def render(self) -> tuple[bytes, bytes]:
        """The exposition body and its content type."""
        if self.multiprocess:
            registry = CollectorRegistry()
            MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return generate_latest(registry), CONTENT_TYPE_LATEST.encode()
        return generate_latest(self.registry), CONTENT_TYPE_LATEST.encode()

    def close(self) -> None:
        """Forget this worker's live gauges (multi-worker mode)."""
        if self.multiprocess:
            mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]
