"""cache/: the LRU, leases, admission and failover, with a scripted store reader."""

from __future__ import annotations

import asyncio

import pytest

from cache.leases import LeaseTable, LeaseWaitExpired
from cache.lru import ByteLRU
from cache.photos import Needle, PhotoCache
from trenchcoat.directory_client import ReplicaView, VolumeView
from trenchcoat.errors import DataLoss, NotFound, Unavailable


class Stores:
    """Answers reads from a dict, counting them; machines in ``down`` are unreachable."""

    def __init__(self, photos: dict[tuple[int, int], tuple[int, bytes]], delay: float = 0.0) -> None:
        self.photos = photos
        self.delay = delay
        self.reads: list[str] = []
        self.down: set[str] = set()
        self.damaged: set[str] = set()

    async def read(self, address, volume_id, key, alt, cookie):
        self.reads.append(address)
        await asyncio.sleep(self.delay)
        if address in self.down:
            raise Unavailable(f"{address} is down")
        if address in self.damaged:
            raise DataLoss(f"{address}: checksum mismatch")
        found = self.photos.get((key, alt))
        if found is None or found[0] != cookie:
            raise NotFound("needle not found")
        return found[1]


def volumes(writable=True):
    replicas = tuple(ReplicaView(m, 5, f"s{m}", True) for m in (1, 2, 3))
    return {5: VolumeView(5, writable, 1 << 30, replicas)}


def make(stores, writable=True, capacity=1 << 20, wait=5.0):
    return PhotoCache(capacity, LeaseTable(period_s=10, wait_s=wait), stores, lambda: volumes(writable))


PHOTO = Needle(5, 0xABC, 0, 77)


async def test_a_stampede_of_1000_readers_costs_one_store_read():
    stores = Stores({(0xABC, 0): (77, b"jpeg")}, delay=0.05)
    cache = make(stores)
    served = await asyncio.gather(*(cache.read(1, PHOTO, via_cdn=True) for _ in range(1000)))
    assert {s.data for s in served} == {b"jpeg"}
    assert stores.reads == ["s1"]
    assert cache.leases.grants == 1 and cache.leases.waits == 999


async def test_a_stampede_on_a_missing_photo_shares_the_one_not_found():
    stores = Stores({}, delay=0.05)
    cache = make(stores)
    results = await asyncio.gather(*(cache.read(1, PHOTO, via_cdn=False) for _ in range(50)), return_exceptions=True)
    assert all(isinstance(r, NotFound) for r in results)
    assert len(stores.reads) == 1


async def test_admission_user_direct_on_a_writable_volume_only():
    stores = Stores({(0xABC, 0): (77, b"jpeg")})
    via_cdn = make(stores)
    assert not (await via_cdn.read(1, PHOTO, via_cdn=True)).admitted
    assert not (await via_cdn.read(1, PHOTO, via_cdn=True)).hit
    read_only = make(stores, writable=False)
    assert not (await read_only.read(1, PHOTO, via_cdn=False)).admitted
    direct = make(stores)
    assert (await direct.read(1, PHOTO, via_cdn=False)).admitted
    again = await direct.read(1, PHOTO, via_cdn=True)
    assert again.hit and again.data == b"jpeg"


async def test_a_hit_with_the_wrong_cookie_is_not_found():
    cache = make(Stores({(0xABC, 0): (77, b"jpeg")}))
    await cache.read(1, PHOTO, via_cdn=False)
    with pytest.raises(NotFound):
        await cache.read(1, Needle(5, 0xABC, 0, 78), via_cdn=False)


async def test_a_delete_voids_the_outstanding_lease_so_the_late_fill_is_not_admitted():
    stores = Stores({(0xABC, 0): (77, b"jpeg")}, delay=0.1)
    cache = make(stores)
    reading = asyncio.create_task(cache.read(1, PHOTO, via_cdn=False))
    await asyncio.sleep(0.02)
    cache.invalidate(0xABC, None)
    served = await reading
    assert not served.admitted
    assert cache.lru.get((0xABC, 0)) is None


async def test_invalidate_drops_one_rendition_or_all():
    stores = Stores({(0xABC, 0): (77, b"o"), (0xABC, 3): (77, b"m")})
    cache = make(stores)
    await cache.read(1, PHOTO, via_cdn=False)
    await cache.read(1, Needle(5, 0xABC, 3, 77), via_cdn=False)
    assert cache.invalidate(0xABC, 3) == 1
    assert cache.invalidate(0xABC, None) == 1
    assert len(cache.lru) == 0


async def test_a_dead_or_damaged_store_fails_over_to_the_next_replica():
    stores = Stores({(0xABC, 0): (77, b"jpeg")})
    stores.down.add("s1")
    stores.damaged.add("s2")
    cache = make(stores)
    assert (await cache.read(1, PHOTO, via_cdn=False)).data == b"jpeg"
    assert stores.reads == ["s1", "s2", "s3"]


async def test_every_replica_damaged_is_data_loss():
    stores = Stores({(0xABC, 0): (77, b"jpeg")})
    stores.damaged.update({"s1", "s2", "s3"})
    with pytest.raises(DataLoss):
        await make(stores).read(2, PHOTO, via_cdn=False)


async def test_waiters_give_up_after_the_wait_bound():
    stores = Stores({(0xABC, 0): (77, b"jpeg")}, delay=0.5)
    cache = make(stores, wait=0.05)
    holder = asyncio.create_task(cache.read(1, PHOTO, via_cdn=False))
    await asyncio.sleep(0.01)
    with pytest.raises(LeaseWaitExpired):
        await cache.read(1, PHOTO, via_cdn=False)
    await holder


def test_lru_evicts_least_recently_used_by_bytes():
    lru: ByteLRU[bytes] = ByteLRU(10)
    lru.put("a", b"aaaa", 4)
    lru.put("b", b"bbbb", 4)
    lru.get("a")
    lru.put("c", b"cccc", 4)
    assert lru.keys() == ["a", "c"] and lru.bytes == 8 and lru.evictions == 1
    assert not lru.put("huge", b"x" * 11, 11)
