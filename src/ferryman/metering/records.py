"""A usage row from what the request path kept: its access record and its reading.

Built in the usage writer's batches, not per request: the access record already holds
every fact a usage row needs but the usage, and the reading holds that.
"""

from __future__ import annotations

import os

from ferryman.metering.pricing import PriceTable
from ferryman.metering.reading import Reading
from ferryman.observability.access_log import Record
from ferryman.store.usage import UsageRow


def usage_row(record: Record, reading: Reading | None, prices: PriceTable) -> UsageRow:
    """The row of one request, priced from the table when the provider named no cost."""
    (
        at, _, _, _, _, route, status, seconds, upstream, ttfb, upstream_total, bytes_in,
        bytes_out, correlation_id, _, user, credential, _, upstream_key, _, _,
    ) = record  # fmt: skip
    if reading is None:
        model = prompt = completion = total = cost = None
    else:
        model, prompt, completion, total, cost = reading.usage()
        if cost is None and model is not None:
            cost = prices.table_cost(model, prompt, completion)
    return UsageRow(
        correlation_id if len(correlation_id) == 32 else new_id(),
        at,
        route,
        user,
        credential,
        upstream,
        upstream_key,
        model,
        status,
        int(seconds * 1_000_000) / 1000,  # milliseconds to the microsecond
        None if ttfb is None else int(ttfb * 1_000_000) / 1000,
        None if upstream_total is None else int(upstream_total * 1_000_000) / 1000,
        bytes_in,
        bytes_out,
        prompt,
        completion,
        total,
        cost,
        correlation_id,
    )


def new_id() -> str:
    """A record id for a request whose correlation id is not one (32 hex characters)."""
    return os.urandom(16).hex()
