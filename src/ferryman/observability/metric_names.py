"""The names, help texts and fixed label values of the gateway's Prometheus metrics,
shared by the one-process (`metrics.LocalMetrics`) and multiprocess
(`shared_metrics.SharedMetrics`) implementations."""

from __future__ import annotations

LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    120.0, 300.0,
)  # fmt: skip

#: The states an upstream key can be in (`ferryman.upstreams.health.KeyState`), and
#: `disabled` for a key an operator switched off.
KEY_STATES = ("healthy", "cooling_down", "out_of_credit", "invalid", "disabled")


REQUESTS = ("ferryman_requests", "Requests answered, by route, method and status.")
DURATION = (
    "ferryman_request_duration_seconds",
    "Time from the request's arrival to the end of its response.",
)
UPSTREAM = (
    "ferryman_upstream_duration_seconds",
    "Time from sending the request upstream to the upstream's response headers.",
)
ERRORS = ("ferryman_upstream_errors", "Upstream exchanges that failed, by upstream and reason.")
IN_FLIGHT = ("ferryman_requests_in_flight", "Requests being handled now.")
KEY_REQUESTS = (
    "ferryman_upstream_key_requests",
    "Exchanges made with each upstream key (every attempt counts).",
)
KEY_FAILURES = (
    "ferryman_upstream_key_failures",
    "Exchanges that counted against an upstream key, by reason.",
)
KEY_STATE = (
    "ferryman_upstream_key_state",
    "1 for the state each upstream key is in, 0 for the others.",
)
JOB_SUCCESS = (
    "ferryman_job_last_success_timestamp_seconds",
    "When each background job last succeeded (Unix time).",
)
JOB_FAILURES = ("ferryman_job_failures", "Failed iterations of each background job.")
KEY_LABELS = ["upstream", "key_id", "key_name"]
USAGE = (
    "ferryman_usage_records",
    "Usage records, by outcome: written, dropped (queue full), unpriced (model not in the"
    " price table).",
)
LIMITER_FALLBACKS = (
    "ferryman_limiter_fallbacks",
    "Rate-limit checks counted in-process because Redis failed or was too slow.",
)


BREAKER_STATE = (
    "ferryman_redis_breaker_state",
    "1 for the state the Redis circuit breaker is in (closed, open, half_open), 0 for the"
    " others; only with FERRYMAN_REDIS_URL.",
)
BREAKER_TRANSITIONS = (
    "ferryman_redis_breaker_transitions",
    "Times the Redis circuit breaker moved to each state.",
)
#: The Redis breaker's states (`ferryman.store.breaker.STATES`).
BREAKER_STATES = ("closed", "open", "half_open")

BUDGET = (
    "ferryman_budget_events",
    "Budget events by scope (credential, user) and event: refused (a request turned away"
    " with the budget spent) or alert_50 / alert_80 / alert_100 (a threshold crossed).",
)
WS_OPEN = ("ferryman_websocket_connections", "WebSocket connections open now, by route.")
WS_MESSAGES = (
    "ferryman_websocket_messages",
    "Messages relayed over closed WebSocket connections, by route and direction (in: from"
    " the client).",
)
WS_BYTES = (
    "ferryman_websocket_bytes",
    "Payload bytes relayed over closed WebSocket connections, by route and direction.",
)
WS_CLOSED = (
    "ferryman_websocket_closes",
    "WebSocket connections ended, by route and what ended them: client, upstream, limit"
    " (a message too big), idle, duration.",
)
UPSTREAM_BREAKER_STATE = (
    "ferryman_upstream_breaker_state",
    "1 for the state each upstream's circuit breaker is in (closed, open, half_open), 0"
    " for the others; only upstreams with a breaker.",
)
UPSTREAM_BREAKER_TRANSITIONS = (
    "ferryman_upstream_breaker_transitions",
    "Times each upstream's circuit breaker moved to each state.",
)
UPSTREAM_BREAKER_REFUSED = (
    "ferryman_upstream_breaker_refusals",
    "Requests refused with 503 because the upstream's circuit breaker was open.",
)
