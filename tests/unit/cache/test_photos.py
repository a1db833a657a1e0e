"""cache/: the LRU, leases, admission and failover, with a scripted store reader."""

from __future__ import annotations

import asyncio

import pytest

from cache.leases import LeaseTable, LeaseWaitExpired
from cache.lru import ByteLRU
from cache.photos import PhotoCache
from trenchcoat.clients.directory import ReplicaView, VolumeView
from trenchcoat.errors import (
    ChecksumMismatch,
    DataLoss,
    Internal,
    NeedleNotFound,
    NotFound,
    Unavailable,
    VolumeNotFound,
)
from trenchcoat.needle_ref import NeedleRef
from trenchcoat.store_types import Blob


class Stores:
    """Answers reads from a dict, counting them; machines in ``down`` are unreachable,
    in ``damaged`` answer DATA_LOSS, in ``empty`` do not hold the volume."""

    def __init__(self, photos: dict[tuple[int, int], tuple[int, bytes]], delay: float = 0.0) -> None:
        self.photos = photos
        self.delay = delay
        self.reads: list[str] = []
        self.down: set[str] = set()
        self.damaged: set[str] = set()
        self.empty: set[str] = set()

    async def read(self, replica: ReplicaView, needle: NeedleRef) -> Blob:
        address = replica.address
        self.reads.append(address)
        await asyncio.sleep(self.delay)
        if address in self.down:
            raise Unavailable(f"{address} is down")
        if address in self.damaged:
            raise ChecksumMismatch(f"{address}: checksum mismatch")
        if address in self.empty:
            raise VolumeNotFound(f"{address}: volume {needle.logical_volume} is not on this store")
        found = self.photos.get((needle.key, needle.alternate_key))
        if found is None or found[0] != needle.cookie:
            raise NeedleNotFound("needle not found")
        return Blob(found[1], "image/jpeg")


def volume(writable=True, alive=(True, True, True)):
    replicas = tuple(ReplicaView(m, 5, f"s{m}", a) for m, a in zip((1, 2, 3), alive, strict=True))
    return VolumeView(5, writable, 1 << 30, replicas)


class Directory:
    """The Directory as the cache sees it: ``known`` is this process's copy of the map, which
    may lag; ``volume`` falls back to the Directory's own state (``authority``)."""

    def __init__(self, known: dict[int, VolumeView], authority: dict[int, VolumeView] | None = None) -> None:
        self.known = known
        self.authority = authority if authority is not None else dict(known)
        self.asked: list[int] = []

    async def volume(self, volume_id: int) -> VolumeView:
        if volume_id in self.known:
            return self.known[volume_id]
        self.asked.append(volume_id)
        if volume_id not in self.authority:
            raise NotFound(f"logical volume {volume_id} does not exist")
        self.known[volume_id] = self.authority[volume_id]
        return self.known[volume_id]


def make(stores, writable=True, capacity=1 << 20, wait=5.0, directory=None):
    directory = directory or Directory({5: volume(writable)})
    return PhotoCache(capacity, LeaseTable(period_s=10, wait_s=wait), stores, directory)


PHOTO = NeedleRef(logical_volume=5, key=0xABC, cookie=77)


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


async def test_the_pipelines_own_read_is_served_but_neither_admitted_nor_kept_for_the_lease_period():
    stores = Stores({(0xABC, 0): (77, b"jpeg")})
    cache = make(stores)
    internal = await cache.read(1, PHOTO, via_cdn=False, internal=True)
    assert internal.data == b"jpeg" and not internal.admitted
    user = await cache.read(1, PHOTO, via_cdn=False)  # goes to the store as if the first had not happened
    assert user.admitted and not user.hit and stores.reads == ["s1", "s1"]


async def test_a_hit_with_the_wrong_cookie_is_not_found():
    cache = make(Stores({(0xABC, 0): (77, b"jpeg")}))
    await cache.read(1, PHOTO, via_cdn=False)
    with pytest.raises(NotFound):
        await cache.read(1, NeedleRef(logical_volume=5, key=0xABC, cookie=78), via_cdn=False)


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
    await cache.read(1, NeedleRef(logical_volume=5, key=0xABC, alternate_key=3, cookie=77), via_cdn=False)
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


async def test_a_volume_missing_from_the_local_map_is_asked_of_the_directory_not_declared_missing():
    # The regression behind an acknowledged upload answering 404: the router wrote the
    # photo onto a volume this cache's copy of the map had not heard of yet.
    stores = Stores({(0xABC, 0): (77, b"jpeg")})
    directory = Directory(known={}, authority={5: volume()})
    cache = make(stores, directory=directory)
    served = await cache.read(1, PHOTO, via_cdn=False)
    assert served.data == b"jpeg" and served.admitted
    assert directory.asked == [5]


async def test_a_volume_the_directory_does_not_know_is_not_found():
    cache = make(Stores({}), directory=Directory(known={}, authority={}))
    with pytest.raises(NotFound):
        await cache.read(1, PHOTO, via_cdn=False)


async def test_a_replica_without_the_volume_sends_the_read_to_the_next():
    stores = Stores({(0xABC, 0): (77, b"jpeg")})
    stores.empty.add("s1")
    cache = make(stores)
    assert (await cache.read(1, PHOTO, via_cdn=False)).data == b"jpeg"
    assert stores.reads == ["s1", "s2"]


async def test_a_store_saying_the_needle_is_not_there_is_final_and_kept_for_the_lease():
    stores = Stores({})
    cache = make(stores)
    for _ in range(3):
        with pytest.raises(NeedleNotFound):
            await cache.read(1, PHOTO, via_cdn=False)
    assert stores.reads == ["s1"]


async def test_when_no_replica_can_answer_the_read_is_unavailable_never_not_found():
    stores = Stores({(0xABC, 0): (77, b"jpeg")})
    stores.down.add("s1")
    stores.empty.update({"s2", "s3"})
    cache = make(stores)
    with pytest.raises(Unavailable):
        await cache.read(1, PHOTO, via_cdn=False)
    stores.down.clear()
    stores.empty.clear()
    assert (await cache.read(1, PHOTO, via_cdn=False)).data == b"jpeg"  # not kept: the next reader retries


async def test_replicas_marked_dead_are_still_tried_last():
    stores = Stores({(0xABC, 0): (77, b"jpeg")})
    stores.down.update({"s1", "s2"})
    cache = make(stores, directory=Directory({5: volume(alive=(True, True, False))}))
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


async def test_a_replica_failing_in_an_unexpected_way_sends_the_read_to_the_next():
    class Broken(Stores):
        async def read(self, replica, needle):
            if replica.address == "s1":
                self.reads.append(replica.address)
                raise Internal("store s1: internal error (OSError) in ReadNeedle; see the server log")
            return await super().read(replica, needle)

    stores = Broken({(0xABC, 0): (77, b"jpeg")})
    assert (await make(stores).read(1, PHOTO, via_cdn=False)).data == b"jpeg"
    assert stores.reads == ["s1", "s2"]


async def test_a_replica_the_directory_has_no_address_for_is_skipped():
    stores = Stores({(0xABC, 0): (77, b"jpeg")})
    replicas = (ReplicaView(1, 5, "", False), ReplicaView(2, 5, "s2", True))
    cache = make(stores, directory=Directory({5: VolumeView(5, True, 1 << 30, replicas)}))
    assert (await cache.read(1, PHOTO, via_cdn=False)).data == b"jpeg"
    assert stores.reads == ["s2"]


class Warm:
    """f4 as the cache sees it: blobs of warm volumes."""

    def __init__(self, photos: dict[tuple[int, int], bytes]) -> None:
        self.photos = photos
        self.reads = 0

    async def read(self, needle: NeedleRef) -> Blob:
        self.reads += 1
        found = self.photos.get((needle.key, needle.alternate_key))
        if found is None:
            raise NeedleNotFound("deleted")
        return Blob(found, "image/png")


async def test_a_warm_volume_is_read_from_f4_through_the_leases_and_never_admitted():
    stores = Stores({(0xABC, 0): (77, b"hot copy")})
    warm = Warm({(0xABC, 0): b"warm copy"})
    view = VolumeView(5, False, 0, (), state="warm")  # aged into f4: no hot replicas left
    cache = PhotoCache(1 << 20, LeaseTable(period_s=10, wait_s=5), stores, Directory({5: view}), warm)
    served = await asyncio.gather(*(cache.read(1, PHOTO, via_cdn=False) for _ in range(20)))
    assert {s.data for s in served} == {b"warm copy"} and not any(s.admitted for s in served)
    assert warm.reads == 1 and stores.reads == []  # one f4 read for the stampede, no store asked
    with pytest.raises(NotFound):
        await cache.read(1, NeedleRef(logical_volume=5, key=0xDEF, cookie=77), via_cdn=False)


async def test_a_warm_volume_without_f4_is_unavailable_not_not_found():
    view = VolumeView(5, False, 0, (), state="warm")
    cache = PhotoCache(1 << 20, LeaseTable(period_s=10, wait_s=5), Stores({}), Directory({5: view}))
    with pytest.raises(Unavailable, match="warm and this cache has no f4"):
        await cache.read(1, PHOTO, via_cdn=False)
