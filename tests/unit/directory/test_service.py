"""directory/service.py: a directory whose copy of the map lacks a volume asks etcd before
it says the volume does not exist; one without f4.migrate refuses MigrateVolume saying so;
a volume's fill travels with when its stores reported it."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any, cast

import pytest
from grpc.aio import ServicerContext

from directory.leader import Leader
from directory.model import ClusterMap, Replica, State, Store, Volume
from directory.service import DirectoryServicer, MigrationOff, logical_volume
from directory.state import DirectoryState, VolumeMissing
from directory.view import MapView
from trenchcoat.errors import FailedPrecondition, InvalidArgument
from trenchcoat.v1 import directory_pb2 as pb

NO_CONTEXT = cast("ServicerContext[Any, Any]", None)
"""gRPC's context of a call, which none of the calls here touches."""

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


def servicer_over(state: Etcd, view: View, *, migrate: bool = False) -> DirectoryServicer:
    """A servicer over the stand-ins for etcd and the map view, with no leader (the calls
    here never ask it)."""
    return DirectoryServicer(cast(DirectoryState, state), cast(MapView, view), leader=cast(Leader, None),
                             migrate=migrate)


async def test_a_volume_missing_from_this_directorys_copy_is_answered_from_etcd():
    view, state = View(), Etcd({7: NEW})
    servicer = servicer_over(state, view)
    reply = await servicer.Locate(pb.LocateRequest(logical_volume=7), context=NO_CONTEXT)
    assert reply.volume.id == 7 and sorted(r.address for r in reply.volume.replicas) == ["s1", "s2", "s3"]
    assert state.asked == [7] and view.woken.is_set()  # and the copy is refreshed soon


async def test_only_etcd_can_say_a_volume_does_not_exist():
    servicer = servicer_over(Etcd({}), View())
    with pytest.raises(VolumeMissing):
        await servicer.Locate(pb.LocateRequest(logical_volume=8), context=NO_CONTEXT)


async def test_migrate_volume_is_refused_naming_f4_migrate_when_it_is_off():
    state = Etcd({7: NEW})
    servicer = servicer_over(state, View())
    with pytest.raises(MigrationOff) as info:
        await servicer.MigrateVolume(pb.MigrateVolumeRequest(logical_volume=7), context=NO_CONTEXT)
    assert isinstance(info.value, FailedPrecondition) and "f4.migrate" in str(info.value)
    assert state.asked == []  # refused before anything is read or changed


async def test_migrate_volume_needs_a_volume():
    servicer = servicer_over(Etcd({}), View(), migrate=True)
    with pytest.raises(InvalidArgument):
        await servicer.MigrateVolume(pb.MigrateVolumeRequest(), context=NO_CONTEXT)


def test_a_volumes_fill_is_listed_with_when_its_stores_reported_it():
    reported = replace(NEW, used_bytes=4_600_000, used_ms=1_800_000_000_123)
    message = logical_volume(View().map, reported)
    assert (message.used_bytes, message.used_reported_unix_ms) == (4_600_000, 1_800_000_000_123)
