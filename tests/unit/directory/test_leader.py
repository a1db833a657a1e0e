"""directory/leader.py carrying out a repair round against scripted stores: a replica
without the volume is refilled; an unreachable replica fails the round (counted, retried
next tick) instead of being mistaken for an empty one; a volume asked for in f4 settles
read-only."""

from __future__ import annotations

from dataclasses import replace

from directory import metrics
from directory.leader import Leader
from directory.migration import REQUESTED_REASON
from directory.model import ClusterMap, Replica, State, Store, Volume
from trenchcoat.config import DirectoryConfig
from trenchcoat.errors import Unavailable, VolumeNotFound
from trenchcoat.store_types import PhysicalVolume

GiB = 1 << 30


class Stores:
    """Scripted stores: each address holds some copies of volume 1; ``down`` addresses are
    unreachable."""

    def __init__(self, copies: dict[str, PhysicalVolume | None]) -> None:
        self.copies = copies
        self.down: set[str] = set()
        self.read_only: dict[str, bool] = {}
        self.repairs: list[tuple[str, str]] = []

    def _reach(self, address: str) -> None:
        if address in self.down:
            raise Unavailable(f"store {address}: connection refused")

    async def set_read_only(self, address: str, volume_id: int, read_only: bool) -> PhysicalVolume:
        self._reach(address)
        copy = self.copies[address]
        if copy is None:
            raise VolumeNotFound(f"store {address}: volume {volume_id} is not on this store")
        self.read_only[address] = read_only
        return copy

    async def status(self, address: str, volume_id: int = 0) -> dict[int, PhysicalVolume]:
        self._reach(address)
        copy = self.copies[address]
        return {} if copy is None else {1: copy}

    async def repair(self, address: str, volume_id: int, source: str, chunk_bytes: int = 0) -> int:
        self._reach(address)
        self.repairs.append((address, source))
        self.copies[address] = self.copies[source]
        return 1000


class State_:
    """The etcd-backed state, as far as a repair round touches it."""

    def __init__(self, volume: Volume) -> None:
        self.volume = volume
        self.etcd = None

    async def update_volume(self, volume_id: int, change):
        updated = change(self.volume)
        if updated is not None:
            self.volume = updated
        return self.volume


def setup(copies: dict[str, PhysicalVolume | None]) -> tuple[Leader, Stores, State_, ClusterMap]:
    volume = Volume(id=1, replicas=tuple(Replica(m, 1) for m in (1, 2, 3)), state=State.READ_ONLY,
                    capacity_bytes=GiB, created_ms=0, repair=True)
    cmap = ClusterMap(stores={m: Store(machine_id=m, address=f"s{m}", rack="abc"[m - 1], registered=True)
                              for m in (1, 2, 3)}, volumes={1: volume})
    stores, state = Stores(copies), State_(volume)
    leader = Leader(state, stores, DirectoryConfig(), name="test", address="-",  # type: ignore[arg-type]
                    refresh=lambda: None)
    return leader, stores, state, cmap


def copy(file_bytes: int) -> PhysicalVolume:
    return PhysicalVolume(1, True, file_bytes // 100, 0, file_bytes, file_bytes, GiB)


def failed_repairs() -> float:
    return metrics.REPAIRS.labels("failed")._value.get()


async def test_a_replica_without_the_volume_is_refilled_from_the_fullest_copy():
    leader, stores, state, cmap = setup({"s1": copy(5000), "s2": copy(4000), "s3": None})
    await leader._repair(cmap, cmap.volumes[1])
    assert sorted(stores.repairs) == [("s2", "s1"), ("s3", "s1")]
    assert state.volume.repair  # compared again next round, from fresh reports
    await leader._repair(cmap, cmap.volumes[1])
    assert not state.volume.repair and state.volume.state is State.WRITABLE
    assert stores.read_only == {"s1": False, "s2": False, "s3": False}


async def test_an_unreachable_replica_fails_the_round_instead_of_being_taken_for_empty():
    leader, stores, state, cmap = setup({"s1": copy(5000), "s2": copy(5000), "s3": copy(5000)})
    stores.down.add("s3")
    before = failed_repairs()
    await leader._repair(cmap, cmap.volumes[1])
    assert failed_repairs() == before + 1
    assert stores.repairs == [] and state.volume.repair and state.volume.state is State.READ_ONLY
    stores.down.clear()  # next tick: it answers, all copies match, the volume settles
    await leader._repair(cmap, cmap.volumes[1])
    assert stores.repairs == [] and not state.volume.repair and state.volume.state is State.WRITABLE


async def test_a_full_volume_settles_read_only():
    leader, stores, state, cmap = setup({"s1": copy(GiB), "s2": copy(GiB), "s3": copy(GiB)})
    await leader._repair(cmap, cmap.volumes[1])
    assert state.volume == replace(state.volume, repair=False, state=State.READ_ONLY, reason="full")
    assert stores.read_only == {"s1": True, "s2": True, "s3": True}


async def test_a_repaired_volume_asked_for_in_f4_settles_read_only_and_stays_asked_for():
    leader, stores, state, cmap = setup({"s1": copy(5000), "s2": copy(5000), "s3": copy(5000)})
    asked = replace(cmap.volumes[1], warm_requested=True)
    state.volume = asked
    await leader._repair(cmap, asked)
    assert state.volume == replace(asked, repair=False, state=State.READ_ONLY, reason=REQUESTED_REASON,
                                   used_bytes=5000, used_ms=state.volume.used_ms)
    assert state.volume.used_ms > 0  # the figure the repair read is stamped as reported
    assert stores.read_only == {"s1": True, "s2": True, "s3": True}  # the copies never took writes again


async def test_fill_records_what_the_stores_reported_and_when_they_reported_it():
    leader, _stores, state, cmap = setup({"s1": None, "s2": None, "s3": None})
    reported = replace(cmap.volumes[1], repair=False, state=State.WRITABLE, used_bytes=8, used_ms=1_000)
    state.volume, cmap.volumes[1] = reported, reported
    leader._reports = {m: {1: replace(copy(400_000), read_only=False)} for m in (1, 2, 3)}
    leader._probed_unix_ms = 1_000 + 60_000  # a minute after the figure on record: a small move is due
    await leader.fill(cmap)
    assert state.volume == replace(reported, used_bytes=400_000, used_ms=61_000)  # and nothing else changed
