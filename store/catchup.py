"""Bringing one copy of a volume up to another by moving only what differs (the
``CatchUpVolume`` RPC), as SeaweedFS's incremental backup and Swift's replicator do rather
than copying whole volumes.

1. The two copies' digest bucket sums are compared (2 KiB from the source): only buckets
   whose sums differ hold differences (``store/digest.py``).
2. Both copies list the needles of those buckets, with each one's digest hash and deleted
   flag as their disks have them.
3. A needle the source holds live and this copy lacks is pulled (``CopyNeedles``, each
   verified at the source) and appended here durably; a needle the source deleted and
   this copy holds live is flagged deleted here. A needle live on both with different
   contents is a conflict: counted, left alone (a whole copy settles it).

What this copy has and the source lacks stays: the Directory's repair catches the source
up from this copy in its turn, so every replica ends with the union of needles and of
deletes (a delete is never undone; an unacknowledged write spread harms nothing).
"""

from __future__ import annotations

import asyncio
import logging

import numpy as np

from store.errors import DigestNotSettled
from store.peer import Peers
from store.volume import Volume
from trenchcoat import needle
from trenchcoat.store_types import CatchUp

log = logging.getLogger(__name__)

COPY_BATCH = 4096
"""Needles asked for in one CopyNeedles call."""


async def catch_up(volume: Volume, peers: Peers, source: str) -> CatchUp:
    volume_id = volume.volume_id
    sums, settled = await peers.volume_digest(source, volume_id)
    if not settled or not volume.digest_settled:
        where = f"source store {source}" if not settled else "this store"
        raise DigestNotSettled(f"volume {volume_id}: the digest of {where} is still being recounted after a "
                               "restart; retry the catch-up shortly")
    received = len(sums)
    differing = volume.digest.differing_buckets(np.frombuffer(sums, dtype="<u8").astype(np.uint64))
    if not differing:
        return CatchUp(bytes_received=received)
    theirs, listed = await peers.list_needles(source, volume_id, differing)
    received += listed
    mine = {(n.key, n.alternate_key): n for n in await volume.list_needles(differing)}
    wanted: list[tuple[int, int]] = []
    gone: list[tuple[int, int]] = []
    conflicts = 0
    for their in theirs:
        ident = (their.key, their.alternate_key)
        own = mine.get(ident)
        if their.deleted:
            if own is not None and not own.deleted:
                gone.append(ident)
        elif their.hash == 0:
            continue  # damaged at the source: its own repair mends it first
        elif own is None:
            wanted.append(ident)
        elif not own.deleted and own.hash not in (0, their.hash):
            conflicts += 1
    applied = await volume.keep_deleted(gone)
    copied = copied_bytes = 0
    for start in range(0, len(wanted), COPY_BATCH):
        async for raws in peers.copy_needles(source, volume_id, wanted[start:start + COPY_BATCH]):
            live = [raw for raw in raws if not raw[needle.FLAGS_OFFSET] & needle.FLAG_DELETED]
            received += sum(len(raw) for raw in raws)
            # Appended together, so one fdatasync of the group commit covers them all.
            await asyncio.gather(*(volume.append_copied(raw) for raw in live))
            copied += len(live)
            copied_bytes += sum(len(raw) for raw in live)
    if conflicts:
        log.warning("volume %d: %d needles differ in contents from the copy at %s; a whole copy settles them",
                    volume_id, conflicts, source)
    log.info("volume %d caught up from %s: %d needles (%d bytes) copied, %d deletes applied, %d buckets compared",
             volume_id, source, copied, copied_bytes, applied, len(differing))
    return CatchUp(copied, copied_bytes, applied, conflicts, received)
