"""Deletes carried out where the bytes are, from a durable journal.

Reads never consult the metadata, so a deleted photo stops serving only when every
replica of its volume has the needle flagged deleted (the Store then answers NOT_FOUND)
and every cache has dropped it. A delete journals that work in the same transaction that
marks the row deleted (``MediaStore.mark_deleted``), tries it at once, and leaves what did
not succeed (a replica down or unreachable, a cache not answering) to this worker, which
retries every router's entries with backoff until all are done. A replica refilled by a
repair keeps the flags of the copy it replaces (``VolumeSet.restore``), and an entry is
finished only when the volume's current replicas all have the flag, so neither a replica
that was down nor one refilled from it brings the photo back. With f4 in use
(``f4.migrate``) every delete also has the media's keys discarded in f4's key store,
whatever state the volume seems to be in: that stops an encode under way from making
new ones, and a warm copy is unreadable at once.
"""

from __future__ import annotations

import asyncio
import logging

from router import metrics
from router.metadata import MediaStore, PendingDelete
from trenchcoat import media_facts, redisio
from trenchcoat.backoff import Backoff
from trenchcoat.clients.cache import CacheClient
from trenchcoat.clients.directory import DirectoryClient
from trenchcoat.clients.f4 import F4Client
from trenchcoat.clients.store import StoreClient
from trenchcoat.errors import NeedleNotFound, TrenchcoatError, Unavailable
from trenchcoat.needle_ref import NeedleRef
from trenchcoat.workers import PeriodicWorker

log = logging.getLogger(__name__)


BATCH = 100
"""Journal entries one pass claims."""


class DeleteJournal(PeriodicWorker):
    """Carries out journalled deletes; ``carry_out`` is the one attempt, ``tick`` the
    retry pass over due entries (every ``interval_s``)."""

    def __init__(self, media: MediaStore, directory: DirectoryClient, stores: StoreClient, caches: CacheClient, *,
                 interval_s: float, max_backoff_s: float, call_timeout_s: float, f4: F4Client | None = None,
                 feed_facts: redisio.Client | None = None) -> None:
        super().__init__("delete journal", interval_s)
        self._media = media
        self._directory = directory
        self._stores = stores
        self._caches = caches
        self._f4 = f4
        self._feed_facts = feed_facts
        self._max_backoff_s = max_backoff_s
        self._call_timeout_s = call_timeout_s

    async def carry_out(self, entry: PendingDelete) -> bool:
        """One attempt; True when the delete is done everywhere (the entry is gone),
        False when it was put back for a retry."""
        try:
            await self._apply(entry)
        except TrenchcoatError as exc:
            metrics.DELETE_ATTEMPTS.labels("retry").inc()
            retry_in = Backoff(base_s=self.interval_s, max_s=self._max_backoff_s).pause(entry.attempts + 1)
            log.warning("delete of %d not carried out everywhere yet (retry in %.1fs): %s",
                        entry.media_id, retry_in, exc)
            await self._media.delay_delete(entry, str(exc), retry_in)
            return False
        await self._media.finish_delete(entry)
        metrics.DELETE_ATTEMPTS.labels("done").inc()
        return True

    async def _apply(self, entry: PendingDelete) -> None:
        """Flags the needle on every replica the volume has now, then drops it from every
        cache (a fill under way when it is dropped is not admitted: its lease is voided).
        Raises Unavailable naming what is left."""
        volume = await self._directory.volume(entry.logical_volume)
        needle = NeedleRef(logical_volume=entry.logical_volume, key=entry.media_id,
                           alternate_key=entry.alternate_key, cookie=entry.cookie)
        results = await asyncio.gather(
            *(self._stores.delete(r.address, needle, timeout_s=self._call_timeout_s) for r in volume.replicas),
            return_exceptions=True)
        left = []
        for replica, result in zip(volume.replicas, results, strict=True):
            if isinstance(result, NeedleNotFound):
                continue  # the replica holds no such needle (the upload never reached it): nothing to serve
            if isinstance(result, TrenchcoatError):
                left.append(f"store {replica.machine_id} not flagged: {result}")
            elif isinstance(result, BaseException):
                raise result
        # A stray (a rendition's dropped copy) was never given a URL: no cache holds it, and
        # the f4 keys under its media_id are the live media's.
        if not entry.stray:
            if self._f4 is not None:
                if entry.alternate_key == 0:
                    # Whatever the volume's state looks like from here (this copy of the map may
                    # be behind an encode under way), f4 records the media as deleted: no key is
                    # made for it afterwards, and one made already is discarded. Once, with the
                    # original's entry: it discards the keys of every rendition too.
                    try:
                        await self._f4.delete_blob(entry.media_id)  # every rendition
                    except TrenchcoatError as exc:
                        left.append(f"f4 keys not discarded: {exc}")
            elif volume.state in ("sealed", "warm"):
                left.append(f"volume {entry.logical_volume} is {volume.state} but f4.migrate is off for this router")
            if self._feed_facts is not None and entry.alternate_key == 0:
                try:  # feeds stop showing it now, not when their cached facts expire
                    await media_facts.drop(self._feed_facts, entry.media_id)
                except TrenchcoatError as exc:
                    left.append(f"the feed's cached facts not dropped: {exc}")
            try:  # a rendition's entry drops that rendition; the original's, every one
                await self._caches.invalidate(entry.media_id, entry.alternate_key or None)
            except TrenchcoatError as exc:
                left.append(str(exc))
        if left:
            raise Unavailable("; ".join(left))

    async def tick(self) -> None:
        for entry in await self._media.claim_deletes(BATCH, hold_s=self._max_backoff_s):
            await self.carry_out(entry)
        metrics.DELETES_PENDING.set(await self._media.pending_deletes())
