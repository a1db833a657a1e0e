"""directory/service.py: a directory whose copy of the map lacks a volume asks etcd before
it says the volume does not exist; one without f4.migrate refuses MigrateVolume saying so;
a volume's fill travels with when its stores reported it."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from directory.model import ClusterMap, Replica, State, Store, Volume
from directory.service import DirectoryServicer, MigrationOff, logical_volume
from directory.state import VolumeMissing
from trenchcoat.errors import FailedPrecondition, InvalidArgument
from trenchcoat.v1 import directory_pb2 as pb

NEW = Volume(id=7, replicas=tuple(Replica(m, 7) for m in (1, 2, 3)), state=State.WRITABLE,
             capacity_bytes=1 << 30, created_ms=0)


class View:
    """A copy of the map taken before volume 7 was created."""

    def __init__(self) -> None:
        self.woken = asyncio.Event()
        self.map = ClusterMap(stores={m: Store(machine_id=m, address=f"s{m}", rack="abc"[m - 1], registered=True)
                                      for m in (1, 2, 3)}, volumes={})

    def now(self) -> ClusterMap:
        return self.map

    def wake(self) -> None:
        self.woken.set()


class Etcd:
    def __init__(self, volumes: dict[int, Volume]) -> None:
        self.volumes = volumes
        self.asked: list[int] = []

    async def volume(self, volume_id: int) -> Volume:
        self.asked.append(volume_id)
        if volume_id not in self.volumes:
            raise VolumeMissing(f"logical volume {volume_id} does not exist")
        return self.volumes[volume_id]


async def test_a_volume_missing_from_this_directorys_copy_is_answered_from_etcd():
    view, state = View(), Etcd({7: NEW})
    servicer = DirectoryServicer(state, view, leader=None)
    reply = await servicer.Locate(pb.LocateRequest(logical_volume=7), context=None)
    assert reply.volume.id == 7 and sorted(r.address for r in reply.volume.replicas) == ["s1", "s2", "s3"]
    assert state.asked == [7] and view.woken.is_set()  # and the copy is refreshed soon


async def test_only_etcd_can_say_a_volume_does_not_exist():
    servicer = DirectoryServicer(Etcd({}), View(), leader=None)
    with pytest.raises(VolumeMissing):
        await servicer.Locate(pb.LocateRequest(logical_volume=8), context=None)


async def test_migrate_volume_is_refused_naming_f4_migrate_when_it_is_off():
    state = Etcd({7: NEW})
    servicer = DirectoryServicer(state, View(), leader=None)
    with pytest.raises(MigrationOff) as info:
        await servicer.MigrateVolume(pb.MigrateVolumeRequest(logical_volume=7), context=None)
    assert isinstance(info.value, FailedPrecondition) and "f4.migrate" in str(info.value)
    assert state.asked == []  # refused before anything is read or changed


async def test_migrate_volume_needs_a_volume():
    servicer = DirectoryServicer(Etcd({}), View(), leader=None, migrate=True)
    with pytest.raises(InvalidArgument):
        await servicer.MigrateVolume(pb.MigrateVolumeRequest(), context=None)


def test_a_volumes_fill_is_listed_with_when_its_stores_reported_it():
    reported = replace(NEW, used_bytes=4_600_000, used_ms=1_800_000_000_123)
    message = logical_volume(View().map, reported)
    assert (message.used_bytes, message.used_reported_unix_ms) == (4_600_000, 1_800_000_000_123)
