"""The DirectoryService servicer: protobuf in, a question to the map or a change to the
state, protobuf out."""

from __future__ import annotations

import itertools
import random
from collections.abc import AsyncIterator, Sequence

from grpc.aio import ServicerContext

from directory import migration, policy
from directory.errors import MigrationOff, NoWritableVolume
from directory.healing import damaged_needles
from directory.leader import Leader
from directory.model import ClusterMap, Replica, State, Volume, choose_for_write
from directory.state import DirectoryState
from directory.view import MapView
from trenchcoat.errors import InvalidArgument, Unavailable
from trenchcoat.v1 import directory_pb2 as pb
from trenchcoat.v1 import directory_pb2_grpc

SERVICE_NAME = "trenchcoat.v1.DirectoryService"

_STATES = {
    State.WRITABLE: pb.VOLUME_STATE_WRITABLE,
    State.READ_ONLY: pb.VOLUME_STATE_READ_ONLY,
    State.SEALED: pb.VOLUME_STATE_SEALED,
    State.WARM: pb.VOLUME_STATE_WARM,
}






def logical_volume(cmap: ClusterMap, volume: Volume, replicas: Sequence[Replica] | None = None) -> pb.LogicalVolume:
    return pb.LogicalVolume(
        id=volume.id,
        replicas=[
            pb.Replica(machine_id=r.machine_id, volume_id=r.volume_id, address=cmap.address(r.machine_id),
                       rack=cmap.rack(r.machine_id), alive=cmap.alive(r.machine_id),
                       http_address=cmap.http_address(r.machine_id))
            for r in (replicas if replicas is not None else volume.replicas)
        ],
        state=_STATES[volume.state],
        used_bytes=volume.used_bytes,
        capacity_bytes=volume.capacity_bytes,
        created_unix_ms=volume.created_ms,
        freed_machines=volume.freed_machines,
        used_reported_unix_ms=volume.used_ms,
        repair=volume.repair,
        reason=volume.reason,
        replacing=pb.Replacement(lost_machine=volume.replacing.lost, new_machine=volume.replacing.new,
                                 source_machine=volume.replacing.source,
                                 new_address=cmap.address(volume.replacing.new)) if volume.replacing else None,
    )


class DirectoryServicer(directory_pb2_grpc.DirectoryServiceServicer):
    def __init__(self, state: DirectoryState, view: MapView, leader: Leader, *, migrate: bool = False) -> None:
        self._state = state
        self._view = view
        self._leader = leader
        self._migrate = migrate  # f4.migrate: this directory's leader moves volumes into f4
        self._turn = itertools.count()
        self._rng = random.Random()

    async def Allocate(
        self, request: pb.AllocateRequest,
        context: ServicerContext[pb.AllocateRequest, pb.AllocateResponse],
    ) -> pb.AllocateResponse:
        cmap = self._view.now()
        candidates = cmap.writable(size=request.size_bytes, exclude=request.exclude,
                                   avoid_machines=request.avoid_machines)
        if not candidates:
            why = self._leader.placement_error or (cmap.leader and "the leader is creating more") or \
                "no directory leads yet"
            raise NoWritableVolume(f"no writable volume has room for {request.size_bytes} bytes "
                                   f"({len(cmap.volumes)} volumes known); {why}")
        return pb.AllocateResponse(volume=logical_volume(cmap, choose_for_write(candidates, self._rng)))

    async def Locate(
        self, request: pb.LocateRequest,
        context: ServicerContext[pb.LocateRequest, pb.LocateResponse],
    ) -> pb.LocateResponse:
        cmap = self._view.now()
        volume = cmap.volumes.get(request.logical_volume)
        if volume is None:
            # This process's copy may be behind etcd (a volume created a moment ago): the
            # answer "no such volume" must come from etcd, never from a stale copy.
            volume = await self._state.volume(request.logical_volume)
            self._view.wake()
        order = cmap.read_order(volume, next(self._turn))
        return pb.LocateResponse(volume=logical_volume(cmap, volume, order))

    async def MarkReadOnly(
        self, request: pb.MarkReadOnlyRequest,
        context: ServicerContext[pb.MarkReadOnlyRequest, pb.MarkReadOnlyResponse],
    ) -> pb.MarkReadOnlyResponse:
        if not request.logical_volume:
            raise InvalidArgument("logical_volume is required")
        reason = request.reason or "marked read-only by a client"
        volume = await self._state.mark_read_only(request.logical_volume, reason, repair=request.repair)
        cmap = await self._view.refresh()
        return pb.MarkReadOnlyResponse(volume=logical_volume(cmap, cmap.volumes.get(volume.id, volume)))

    async def MigrateVolume(
        self, request: pb.MigrateVolumeRequest,
        context: ServicerContext[pb.MigrateVolumeRequest, pb.MigrateVolumeResponse],
    ) -> pb.MigrateVolumeResponse:
        if not request.logical_volume:
            raise InvalidArgument("logical_volume is required")
        if not self._migrate:
            raise MigrationOff("this directory does not move volumes into f4: set f4.migrate = true "
                               "(TRENCHCOAT_F4__MIGRATE) on every directory, with an f4 cell at f4.port")
        volume = await migration.request(self._state, request.logical_volume)
        cmap = await self._view.refresh()
        return pb.MigrateVolumeResponse(volume=logical_volume(cmap, cmap.volumes.get(volume.id, volume)))

    async def ListVolumes(
        self, request: pb.ListVolumesRequest,
        context: ServicerContext[pb.ListVolumesRequest, pb.ListVolumesResponse],
    ) -> pb.ListVolumesResponse:
        cmap = self._view.now()
        return pb.ListVolumesResponse(volumes=[logical_volume(cmap, cmap.volumes[v]) for v in sorted(cmap.volumes)])

    async def ListStores(
        self, request: pb.ListStoresRequest,
        context: ServicerContext[pb.ListStoresRequest, pb.ListStoresResponse],
    ) -> pb.ListStoresResponse:
        cmap = self._view.now()
        return pb.ListStoresResponse(stores=[
            pb.StoreMachine(machine_id=s.machine_id, address=s.address, rack=s.rack,
                            capacity_bytes=s.capacity_bytes, free_bytes=s.free_bytes, alive=s.alive,
                            http_address=s.http_address)
            for s in sorted(cmap.stores.values(), key=lambda s: s.machine_id)
        ])

    async def WatchVolumes(
        self, request: pb.WatchVolumesRequest,
        context: ServicerContext[pb.WatchVolumesRequest, pb.WatchVolumesResponse],
    ) -> AsyncIterator[pb.WatchVolumesResponse]:
        async for snapshot, volumes, cmap in self._view.watch():
            yield pb.WatchVolumesResponse(snapshot=snapshot, revision=cmap.revision,
                                          volumes=[logical_volume(cmap, v) for v in volumes])

    async def GetLeader(
        self, request: pb.GetLeaderRequest,
        context: ServicerContext[pb.GetLeaderRequest, pb.GetLeaderResponse],
    ) -> pb.GetLeaderResponse:
        leader = self._view.now().leader
        if not leader:
            raise Unavailable("no directory leads right now (an election is under way)")
        return pb.GetLeaderResponse(leader=leader.get("name", ""), address=leader.get("address", ""))

    async def ListDamagedNeedles(
        self, request: pb.ListDamagedNeedlesRequest,
        context: ServicerContext[pb.ListDamagedNeedlesRequest, pb.ListDamagedNeedlesResponse],
    ) -> pb.ListDamagedNeedlesResponse:
        cmap = self._view.now()
        damaged = await damaged_needles(self._state)
        unrecoverable = {(n.volume_id, n.key, n.alternate_key) for n in policy.plan_needle_repairs(cmap, damaged).unrecoverable}
        return pb.ListDamagedNeedlesResponse(needles=[
            pb.DamagedNeedleReport(volume_id=n.volume_id, key=n.key, alternate_key=n.alternate_key,
                                   machines=sorted(n.machines),
                                   unrecoverable=(n.volume_id, n.key, n.alternate_key) in unrecoverable)
            for n in sorted(damaged, key=lambda n: (n.volume_id, n.key, n.alternate_key))])
