"""The photo cache: memory first, then the Store named by the URL (then the volume's
other replicas), with leases so a miss costs one Store read however many readers want it.

Haystack's admission rule: a photo is kept only when the read came straight from a user
(``via_cdn`` false: the CDN did not see it, so it is not being cached there) and its
volume is write-enabled (reads of photos on write-enabled volumes compete with writes
for the disks; sheltering them there pays most). Entries are keyed by (key, alternate
key) and remember their cookie: a hit with a wrong cookie is NOT_FOUND, like the Store.

A volume that aged into f4 (state ``warm``) is read from the f4 front: the same URL,
served through the same leases, never admitted (it is not write-enabled).

Only a store (or f4, for a warm volume) can say a photo does not exist (NeedleNotFound:
it holds the volume, not the needle). The replicas come from the Directory
(``Volumes.volume``), which is asked whenever this process's copy of the volume map
lacks the volume: the copy can be behind the router's, and a photo uploaded onto a volume this cache has not heard of yet must
still be found. A replica that is down, damaged or without the volume sends the read to
the next one; when none can answer the read is UNAVAILABLE (retry), never NOT_FOUND.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

from cache import metrics
from cache.leases import LeaseTable
from cache.lru import ByteLRU
from trenchcoat.clients.directory import ReplicaView, VolumeView
from trenchcoat.errors import (
    DataLoss,
    InvalidArgument,
    NeedleNotFound,
    TrenchcoatError,
    Unavailable,
)
from trenchcoat.needle_ref import NeedleRef
from trenchcoat.store_types import Blob

log = logging.getLogger(__name__)



class Reader(Protocol):
    """Reads a needle from one replica (``cache.reads.ReplicaReader``)."""

    async def read(self, replica: ReplicaView, needle: NeedleRef) -> Blob: ...


class WarmReader(Protocol):
    """Reads a blob of a warm volume from f4 (``cache.reads.F4Reader``)."""

    async def read(self, needle: NeedleRef) -> Blob: ...


class Volumes(Protocol):
    """Where a volume's replicas are (``trenchcoat.clients.directory.DirectoryClient``):
    raises NotFound only when the Directory has no such volume, never merely because a
    local copy of the map has not heard of it yet."""

    async def volume(self, volume_id: int) -> VolumeView: ...


@dataclass(frozen=True, slots=True)
class Served:
    blob: Blob
    hit: bool
    admitted: bool

    @property
    def data(self) -> bytes:
        return self.blob.data


class PhotoCache:
    def __init__(self, capacity_bytes: int, leases: LeaseTable, reader: Reader, volumes: Volumes,
                 warm: WarmReader | None = None) -> None:
        self.lru: ByteLRU[tuple[int, Blob]] = ByteLRU(capacity_bytes)
        self.leases = leases
        self._reader = reader
        self._warm = warm
        self._volumes = volumes
        self._alts: dict[int, set[int]] = {}
        self.hits = 0
        self.misses = 0

    async def read(self, machine_id: int, needle: NeedleRef, *, via_cdn: bool, internal: bool = False) -> Served:
        """The photo, from memory or the store; kept (admitted) only when a user read it
        directly (not through the CDN, not the pipeline's own read) from a writable volume."""
        kept_out = "via_cdn" if via_cdn else ("internal" if internal else "")
        entry = self.lru.get((needle.key, needle.alternate_key))
        if entry is not None:
            cookie, blob = entry
            if cookie != needle.cookie:
                raise NeedleNotFound(f"{needle} not found")
            self.hits += 1
            metrics.HITS.inc()
            return Served(blob, hit=True, admitted=False)
        self.misses += 1
        metrics.MISSES.inc()
        lease_key = (needle.key, needle.alternate_key, needle.cookie)
        lease = self.leases.acquire(lease_key)
        if lease is None:
            metrics.LEASE_WAITS.inc()
            blob, valid = await self.leases.wait(lease_key)
            # Another reader's answer; a user-direct read still admits it when eligible.
            admitted = False
            if valid and (needle.key, needle.alternate_key) not in self.lru and not kept_out:
                try:
                    volume = await self._volumes.volume(needle.logical_volume)
                except TrenchcoatError:
                    volume = None  # the read succeeded; only its admission is in doubt
                admitted = self._admit(needle, volume, blob, kept_out)
            return Served(blob, hit=False, admitted=admitted)
        metrics.LEASE_GRANTS.inc()
        try:
            volume = await self._volumes.volume(needle.logical_volume)
            blob = await self._fetch(machine_id, needle, volume)
        except TrenchcoatError as exc:
            self.leases.fail(lease, exc)
            raise
        valid = self.leases.fill(lease, blob)
        if internal:
            # Nor is the pipeline's read kept for the lease's period: its waiters have the
            # answer, and the next user to read the photo reads it as if it had not happened.
            self.leases.void(lease_key)
        return Served(blob, hit=False, admitted=valid and self._admit(needle, volume, blob, kept_out))

    def _admit(self, needle: NeedleRef, volume: VolumeView | None, blob: Blob, kept_out: str) -> bool:
        """Admits the photo if it may be kept; ``kept_out`` names why it may not be
        (``via_cdn``, ``internal``) or is empty."""
        if kept_out:
            metrics.NOT_ADMITTED.labels(kept_out).inc()
            return False
        if volume is None or not volume.writable:
            metrics.NOT_ADMITTED.labels("read_only_volume").inc()
            return False
        if not self.lru.put((needle.key, needle.alternate_key), (needle.cookie, blob), len(blob.data)):
            metrics.NOT_ADMITTED.labels("too_large").inc()
            return False
        self._alts.setdefault(needle.key, set()).add(needle.alternate_key)
        metrics.ADMITTED.inc()
        self._gauges()
        return True

    async def _fetch(self, machine_id: int, needle: NeedleRef, volume: VolumeView) -> Blob:
        """From the named machine, then the volume's other replicas (live ones first). A
        store's NeedleNotFound is final, and so is a request it finds malformed (every
        replica would say the same); any other failure (unreachable, damaged, without the
        volume, a bug on that machine) moves on to the next replica. A warm volume is read
        from f4."""
        if volume.state == "warm":
            if self._warm is None:
                raise Unavailable(f"volume {needle.logical_volume} is warm and this cache has no f4 to read it from")
            metrics.WARM_READS.inc()
            return await self._warm.read(needle)
        named = volume.replica_on(machine_id)
        others = [r for r in volume.replicas if r is not named]
        order = ([named] if named else []) + [r for r in others if r.alive] + [r for r in others if not r.alive]
        order = [r for r in order if r.address]  # a store the Directory has no address for yet
        if not order:
            raise Unavailable(f"volume {needle.logical_volume} has no reachable replica in the map")
        failures = []
        damaged = 0
        for i, replica in enumerate(order):
            if i:
                metrics.FAILOVERS.inc()
            try:
                return await self._reader.read(replica, needle)
            except (NeedleNotFound, InvalidArgument):
                raise
            except TrenchcoatError as exc:  # this replica cannot answer for the needle: the next may
                damaged += isinstance(exc, DataLoss)
                failures.append(f"store {replica.machine_id}: {exc}")
                log.warning("read of %s from store %d failed: %s", needle, replica.machine_id, exc)
        if damaged == len(order):
            raise DataLoss(f"every replica of {needle} is damaged: {'; '.join(failures)}")
        raise Unavailable(f"no replica of volume {needle.logical_volume} could serve {needle}: {'; '.join(failures)}")

    def invalidate(self, key: int, alternate_key: int | None) -> int:
        """Drops the photo (one rendition, or all) and voids outstanding leases on it."""
        alts = {alternate_key} if alternate_key is not None else self._alts.pop(key, set())
        dropped = sum(self.lru.pop((key, alt)) is not None for alt in alts)
        self.leases.void_where(lambda k: isinstance(k, tuple) and k[0] == key
                               and (alternate_key is None or k[1] == alternate_key))
        self._gauges()
        return dropped

    def _gauges(self) -> None:
        metrics.BYTES.set(self.lru.bytes)
        metrics.ENTRIES.set(len(self.lru))
