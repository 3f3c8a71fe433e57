"""The key pool's background jobs.

    upstream_key_accounting   every 5 s: health decisions and per-key counts to the database
    upstream_key_refresh      reload the pools (keys added or changed by other instances)
    upstream_probe:<name>     per pooled upstream with a probe: every enabled key, at the
                              upstream's `probe_interval`; a success restores a key
    upstream_key_sync         usage, limit and credit of every key (providers that have them)
    upstream_key_validation   every key, disabled ones included, once a day by default

In a fleet the probe, sync and validation jobs run on one instance per interval.
"""

from __future__ import annotations

from ferryman.config.settings import Settings
from ferryman.observability.metrics import Metrics
from ferryman.tasks import Leader, Periodic
from ferryman.upstreams.service import UpstreamKeys

ACCOUNTING_INTERVAL = 5.0


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

    for name, pool in keyring.pools.items():
        provider = service.providers[name]
        if not provider.can_probe or pool.spec.probe_interval <= 0:
            continue

        async def probe(upstream: str = name) -> None:
            enabled = [k for k in keyring.pools[upstream].keys.values() if k.enabled]
            _, failed = await service.probe_many(enabled, sync=False, validation=False)
            if failed:
                raise MonitorError(f"{failed} key(s) of {upstream!r} could not be probed")

        jobs.append(
            Periodic(
                f"upstream_probe:{name}",
                pool.spec.probe_interval,
                probe,
                metrics=metrics,
                leader=leader,
            )
        )

    syncable = [name for name in keyring.pools if service.providers[name].can_sync]
    if syncable and settings.upstream_sync_interval > 0:

        async def sync() -> None:
            keys = [k for n in syncable for k in keyring.pools[n].keys.values() if k.enabled]
            _, failed = await service.probe_many(keys, sync=True, validation=False)
            if failed:
                raise MonitorError(f"{failed} key(s) could not be synced")

        jobs.append(
            Periodic(
                "upstream_key_sync",
                settings.upstream_sync_interval,
                sync,
                metrics=metrics,
                leader=leader,
            )
        )

    probeable = [name for name in keyring.pools if service.providers[name].can_probe]
    if probeable and settings.upstream_validation_interval > 0:

        async def validate() -> None:
            keys = [k for n in probeable for k in keyring.pools[n].keys.values()]
            _, failed = await service.probe_many(keys, sync=False, validation=True)
            if failed:
                raise MonitorError(f"{failed} key(s) could not be validated")

        jobs.append(
            Periodic(
                "upstream_key_validation",
                settings.upstream_validation_interval,
                validate,
                metrics=metrics,
                leader=leader,
            )
        )
    return jobs
