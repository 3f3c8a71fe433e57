"""The key pool's background jobs.

    upstream_key_accounting   every 5 s: health decisions and per-key counts to the database
    upstream_key_refresh      reload the pools (keys added or changed by other instances)
    upstream_probe:<name>     per pooled upstream with a probe: every enabled key, at the
                              upstream's `probe_interval`; a success restores a key
    upstream_key_sync         usage, limit and credit of every key (providers that have them)
    upstream_key_validation   every key, disabled ones included, once a day by default
    upstream_key_history_retention
                              daily: per-day figures older than `upstream_history_days`

In a fleet the probe, sync, validation and retention jobs run on one instance per interval.
"""

from __future__ import annotations

from datetime import timedelta

import structlog

from ferryman.config.settings import Settings
from ferryman.observability.metrics import Metrics
from ferryman.store import key_history
from ferryman.tasks import Leader, Periodic
from ferryman.upstreams.service import UpstreamKeys

log = structlog.get_logger("ferryman.upstream_keys")

ACCOUNTING_INTERVAL = 5.0
DAY = 86_400.0


class MonitorError(Exception):
    """Some keys could not be probed this round."""


def pool_jobs(
    service: UpstreamKeys,
    settings: Settings,
    metrics: Metrics,
    leader: Leader | None,
) -> list[Periodic]:
    keyring = service.keyring
    jobs = [
        Periodic(
            "upstream_key_accounting",
            ACCOUNTING_INTERVAL,
            keyring.flush,
            metrics=metrics,
            final=True,
        ),
        Periodic(
            "upstream_key_refresh",
            settings.upstream_refresh_interval,
            keyring.load,
            metrics=metrics,
        ),
    ]

    def probe_round(
        job: str,
        interval: float,
        upstreams: list[str],
        *,
        enabled_only: bool = True,
        sync: bool = False,
        validation: bool = False,
    ) -> None:
        """A job that asks the provider about every key of `upstreams` each `interval`."""
        if not upstreams or interval <= 0:
            return

        async def run() -> None:
            keys = [
                key
                for name in upstreams
                for key in keyring.pools[name].keys.values()
                if key.enabled or not enabled_only
            ]
            _, failed = await service.probe_many(keys, sync=sync, validation=validation)
            if failed:
                raise MonitorError(f"{failed} of {len(keys)} key(s) could not be asked about")

        jobs.append(Periodic(job, interval, run, metrics=metrics, leader=leader))

    providers = service.providers
    for name, pool in keyring.pools.items():
        if providers[name].can_probe:
            probe_round(f"upstream_probe:{name}", pool.spec.probe_interval, [name])
    probe_round(
        "upstream_key_sync",
        settings.upstream_sync_interval,
        [name for name in keyring.pools if providers[name].can_sync],
        sync=True,
    )
    probe_round(
        "upstream_key_validation",
        settings.upstream_validation_interval,
        [name for name in keyring.pools if providers[name].can_probe],
        enabled_only=False,
        validation=True,
    )

    async def prune_history() -> None:
        before = service.clock.now().date() - timedelta(days=settings.upstream_history_days - 1)
        removed = await key_history.prune(service.db, before)
        if removed:
            log.info("upstream_key_history_pruned", rows=removed, before=before.isoformat())

    jobs.append(
        Periodic(
            "upstream_key_history_retention",
            DAY,
            prune_history,
            metrics=metrics,
            leader=leader,
            first_delay=60.0,
        )
    )
    return jobs
