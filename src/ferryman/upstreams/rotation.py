"""Re-sealing every stored secret under the newest master key.

Each value is opened with the key it names and sealed again under the newest, one row
per transaction, and written only if the row still names the old key. An interrupted
rotation leaves every row under either its old key or the newest, each of which still
opens while both are configured; running it again finishes the job. Once it reports no
value left under an older key, that key can be removed from FERRYMAN_ENCRYPTION_KEYS.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ferryman.errors import EncryptionError
from ferryman.store import upstream_keys as rows
from ferryman.store.engine import Database
from ferryman.upstreams.crypto import MasterKeys
from ferryman.upstreams.keyring import bound_to


@dataclass
class RotationReport:
    newest: str
    resealed: int = 0
    current: int = 0
    failed: list[str] = field(default_factory=list)


async def rotate(db: Database, master_keys: MasterKeys) -> RotationReport:
    report = RotationReport(newest=master_keys.newest)
    for row in await rows.listing(db, everyone=True):
        if row.master_key_id == master_keys.newest:
            report.current += 1
            continue
        try:
            secret = master_keys.open(row.master_key_id, row.sealed_key, bound_to(row.id))
        except EncryptionError as exc:
            report.failed.append(f"upstream key {row.id} ({row.upstream}/{row.name}) {exc}")
            continue
        key_id, sealed = master_keys.seal(secret, bound_to(row.id))
        if await rows.reseal(
            db, row.id, was=row.master_key_id, master_key_id=key_id, sealed_key=sealed
        ):
            report.resealed += 1
        else:
            report.current += 1  # resealed meanwhile by a concurrent rotation
    return report
