"""The photo cache: memory first, then the Store named by the URL (then the volume's
other replicas), with leases so a miss costs one Store read however many readers want it.

Haystack's admission rule: a photo is kept only when the read came straight from a user
(``via_cdn`` false: the CDN did not see it, so it is not being cached there) and its
volume is write-enabled (reads of photos on write-enabled volumes compete with writes
for the disks; sheltering them there pays most). Entries are keyed by (key, alternate
key) and remember their cookie: a hit with a wrong cookie is NOT_FOUND, like the Store.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from prometheus_client import Counter, Gauge

from cache.leases import LeaseTable
from cache.lru import ByteLRU
from trenchcoat.directory_client import VolumeView
from trenchcoat.errors import DataLoss, NotFound, TrenchcoatError, Unavailable

log = logging.getLogger(__name__)

HITS = Counter("trenchcoat_cache_hits_total", "Reads served from memory.")
MISSES = Counter("trenchcoat_cache_misses_total", "Reads not in memory.")
LEASE_GRANTS = Counter("trenchcoat_cache_lease_grants_total", "Leases granted (Store reads on a miss).")
LEASE_WAITS = Counter("trenchcoat_cache_lease_waits_total", "Misses that waited for another reader's lease.")
ADMITTED = Counter("trenchcoat_cache_admissions_total", "Photos admitted into memory.")
NOT_ADMITTED = Counter("trenchcoat_cache_not_admitted_total", "Misses not admitted, by reason.", ["reason"])
FAILOVERS = Counter("trenchcoat_cache_replica_failovers_total", "Store reads moved to another replica.")
BYTES = Gauge("trenchcoat_cache_bytes", "Photo bytes held.")
ENTRIES = Gauge("trenchcoat_cache_entries", "Photos held.")


class Reader(Protocol):
    async def read(self, address: str, volume_id: int, key: int, alt: int, cookie: int) -> bytes: ...


@dataclass(frozen=True, slots=True)
class Needle:
    logical_volume: int
    key: int
    alternate_key: int
    cookie: int


@dataclass(frozen=True, slots=True)
class Served:
    data: bytes
    hit: bool
    admitted: bool


def _not_found(needle: Needle) -> NotFound:
    return NotFound(f"photo {needle.key:#x}/{needle.alternate_key} not found in volume {needle.logical_volume}")


class PhotoCache:
    def __init__(self, capacity_bytes: int, leases: LeaseTable, reader: Reader,
                 volumes: Callable[[], Mapping[int, VolumeView]]) -> None:
        self.lru: ByteLRU[tuple[int, bytes]] = ByteLRU(capacity_bytes)
        self.leases = leases
        self._reader = reader
        self._volumes = volumes
        self._alts: dict[int, set[int]] = {}
        self.hits = 0
        self.misses = 0

    async def read(self, machine_id: int, needle: Needle, *, via_cdn: bool) -> Served:
        entry = self.lru.get((needle.key, needle.alternate_key))
        if entry is not None:
            cookie, data = entry
            if cookie != needle.cookie:
                raise _not_found(needle)
            self.hits += 1
            HITS.inc()
            return Served(data, hit=True, admitted=False)
        self.misses += 1
        MISSES.inc()
        lease_key = (needle.key, needle.alternate_key, needle.cookie)
        lease = self.leases.acquire(lease_key)
        if lease is None:
            LEASE_WAITS.inc()
            data, valid = await self.leases.wait(lease_key)
            # Another reader's answer; a user-direct read still admits it when eligible.
            admitted = valid and (needle.key, needle.alternate_key) not in self.lru and self._admit(needle, data, via_cdn)
            return Served(data, hit=False, admitted=admitted)
        LEASE_GRANTS.inc()
        try:
            data = await self._fetch(machine_id, needle)
        except TrenchcoatError as exc:
            self.leases.fail(lease, exc)
            raise
        valid = self.leases.fill(lease, data)
        return Served(data, hit=False, admitted=valid and self._admit(needle, data, via_cdn))

    def _admit(self, needle: Needle, data: bytes, via_cdn: bool) -> bool:
        if via_cdn:
            NOT_ADMITTED.labels("via_cdn").inc()
            return False
        volume = self._volumes().get(needle.logical_volume)
        if volume is None or not volume.writable:
            NOT_ADMITTED.labels("read_only_volume").inc()
            return False
        if not self.lru.put((needle.key, needle.alternate_key), (needle.cookie, data), len(data)):
            NOT_ADMITTED.labels("too_large").inc()
            return False
        self._alts.setdefault(needle.key, set()).add(needle.alternate_key)
        ADMITTED.inc()
        self._gauges()
        return True

    async def _fetch(self, machine_id: int, needle: Needle) -> bytes:
        """From the named machine, then the volume's other live replicas. NOT_FOUND is the
        Store's final word; a failed or damaged replica moves on to the next."""
        volume = self._volumes().get(needle.logical_volume)
        if volume is None:
            raise _not_found(needle)
        named = volume.replica_on(machine_id)
        order = ([named] if named else []) + [r for r in volume.replicas if r is not named and r.alive]
        if not order:
            raise _not_found(needle)
        failures = []
        damaged = 0
        for i, replica in enumerate(order):
            if i:
                FAILOVERS.inc()
            try:
                return await self._reader.read(replica.address, replica.volume_id, needle.key,
                                               needle.alternate_key, needle.cookie)
            except NotFound:
                raise _not_found(needle) from None
            except (Unavailable, DataLoss) as exc:
                damaged += isinstance(exc, DataLoss)
                failures.append(f"store {replica.machine_id}: {exc}")
                log.warning("read of %#x from store %d failed: %s", needle.key, replica.machine_id, exc)
        if damaged == len(order):
            raise DataLoss(f"every replica of photo {needle.key:#x} is damaged: {'; '.join(failures)}")
        raise Unavailable(f"no replica of volume {needle.logical_volume} answered: {'; '.join(failures)}")

    def invalidate(self, key: int, alternate_key: int | None) -> int:
        """Drops the photo (one rendition, or all) and voids outstanding leases on it."""
        alts = {alternate_key} if alternate_key is not None else self._alts.pop(key, set())
        dropped = sum(self.lru.pop((key, alt)) is not None for alt in alts)
        self.leases.void_where(lambda k: k[0] == key and (alternate_key is None or k[1] == alternate_key))
        self._gauges()
        return dropped

    def _gauges(self) -> None:
        BYTES.set(self.lru.bytes)
        ENTRIES.set(len(self.lru))
