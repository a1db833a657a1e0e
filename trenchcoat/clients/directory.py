"""A client's view of the Directory (routers, caches): a copy of the volume map kept
current by the WatchVolumes stream (reconnecting to any directory process when one goes
away), the few calls that change things, and the command-line tools' questions.

The copy is a cache of the Directory's state, never the authority: it may be behind
(the stream follows one directory process, which may be stalled; until the first
snapshot arrives it is empty). So ``volume(id)`` answers a volume missing from the copy
by asking a directory, which checks etcd before it says NOT_FOUND: a photo is never
declared missing because this process has not heard of its volume yet. ``ready`` is set
once the first snapshot arrived (services report SERVING only then).

Protobuf stays in this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from trenchcoat import rpc
from trenchcoat.backoff import Backoff
from trenchcoat.errors import TrenchcoatError
from trenchcoat.failover import Failover
from trenchcoat.singleflight import SingleFlight
from trenchcoat.v1 import directory_pb2 as pb
from trenchcoat.v1 import directory_pb2_grpc

log = logging.getLogger(__name__)

RECONNECT = Backoff(base_s=0.1, max_s=2.0)
"""Pause before following the map again once every directory failed in a row."""

STATE_NAMES = {pb.VOLUME_STATE_WRITABLE: "writable", pb.VOLUME_STATE_READ_ONLY: "read-only",
               pb.VOLUME_STATE_SEALED: "sealed", pb.VOLUME_STATE_WARM: "warm"}


@dataclass(frozen=True, slots=True)
class ReplicaView:
    machine_id: int
    volume_id: int
    address: str
    alive: bool
    rack: str = ""
    http_address: str = ""
    """Where the store serves needle reads over HTTP (empty: only gRPC)."""


@dataclass(frozen=True, slots=True)
class ReplacementView:
    lost_machine: int
    new_machine: int
    source_machine: int
    new_address: str


@dataclass(frozen=True, slots=True)
class DamagedNeedleView:
    volume_id: int
    key: int
    alternate_key: int
    machines: tuple[int, ...]
    unrecoverable: bool


@dataclass(frozen=True, slots=True)
class VolumeView:
    id: int
    writable: bool
    room: int
    replicas: tuple[ReplicaView, ...]
    state: str = ""
    """"writable", "read-only", "sealed" or "warm"."""
    used_bytes: int = 0
    """Bytes in its fullest replica, as its stores last reported them."""
    capacity_bytes: int = 0
    used_reported_unix_ms: int = 0
    """When its stores reported ``used_bytes`` (ms since the Unix epoch; 0: never)."""
    freed_machines: tuple[int, ...] = ()
    """A warm volume whose hot replicas were freed: the machines that held them."""
    repair: bool = False
    """Its replicas may differ: the leader compares and repairs them before it takes writes."""
    reason: str = ""
    """Why it is not writable."""
    replacing: ReplacementView | None = None
    """A replica on a store lost for good being replaced now."""

    @property
    def under_replicated(self) -> bool:
        """A replica is on a store that is not alive (warm volumes hold no hot replicas)."""
        return self.state != "warm" and any(not r.alive for r in self.replicas)

    def writable_for(self, size: int) -> bool:
        return self.writable and self.room >= size and all(r.alive for r in self.replicas)

    def replica_on(self, machine_id: int) -> ReplicaView | None:
        return next((r for r in self.replicas if r.machine_id == machine_id), None)


@dataclass(frozen=True, slots=True)
class StoreView:
    machine_id: int
    address: str
    rack: str
    capacity_bytes: int
    free_bytes: int
    alive: bool
    http_address: str = ""


def _view(v: pb.LogicalVolume) -> VolumeView:
    return VolumeView(
        id=v.id,
        writable=v.state == pb.VOLUME_STATE_WRITABLE,
        room=max(0, v.capacity_bytes - v.used_bytes),
        replicas=tuple(ReplicaView(r.machine_id, r.volume_id, r.address, r.alive, r.rack, r.http_address)
                       for r in v.replicas),
        state=STATE_NAMES.get(v.state, "?"),
        used_bytes=v.used_bytes,
        capacity_bytes=v.capacity_bytes,
        used_reported_unix_ms=v.used_reported_unix_ms,
        freed_machines=tuple(v.freed_machines),
        repair=v.repair,
        reason=v.reason,
        replacing=ReplacementView(v.replacing.lost_machine, v.replacing.new_machine, v.replacing.source_machine,
                                  v.replacing.new_address) if v.HasField("replacing") else None,
    )


class DirectoryClient:
    def __init__(self, pool: rpc.ChannelPool, endpoints: Sequence[str], timeout_s: float = 3.0) -> None:
        if not endpoints:
            raise ValueError("no directory endpoints")
        self._pool = pool
        self._endpoints = list(endpoints)
        self._directories = Failover(self._endpoints, kind="directory", sticky=True)
        self._timeout = timeout_s
        self.volumes: dict[int, VolumeView] = {}
        self.ready = asyncio.Event()
        self._stop = asyncio.Event()
        self._locating: SingleFlight[int, VolumeView] = SingleFlight()

    def _stub(self, endpoint: str) -> directory_pb2_grpc.DirectoryServiceStub:
        return self._pool.stub(directory_pb2_grpc.DirectoryServiceStub, endpoint)

    async def _call(self, method: str, request: object) -> Any:
        """Calls ``method`` on the directories, starting with the one that answered last,
        until one answers; only Unavailable (unreachable, too slow) moves to the next."""
        return await self._directories.call(method, lambda endpoint: rpc.unary(
            getattr(self._stub(endpoint), method), request, remote=f"directory {endpoint}", timeout=self._timeout))

    # --- the volume map ----------------------------------------------------------------

    async def volume(self, volume_id: int) -> VolumeView:
        """The volume from the local copy, or from a directory when the copy does not have
        it. Raises NotFound only when the Directory's state has no such volume."""
        known = self.volumes.get(volume_id)
        if known is not None:
            return known
        return await self._locating.run(volume_id, lambda: self.locate(volume_id))  # one question per volume

    async def locate(self, volume_id: int) -> VolumeView:
        """The volume as a directory sees it now (replicas in read order), remembered in the
        local copy if the stream has not brought it yet."""
        view = _view((await self._call("Locate", pb.LocateRequest(logical_volume=volume_id))).volume)
        self.volumes.setdefault(volume_id, view)
        return view

    async def list_volumes(self) -> list[VolumeView]:
        return [_view(v) for v in (await self._call("ListVolumes", pb.ListVolumesRequest())).volumes]

    async def damaged_needles(self) -> list[DamagedNeedleView]:
        """Needles stores reported damaged and not yet repaired (unrecoverable: on every replica)."""
        reply = await self._call("ListDamagedNeedles", pb.ListDamagedNeedlesRequest())
        return [DamagedNeedleView(n.volume_id, n.key, n.alternate_key, tuple(n.machines), n.unrecoverable)
                for n in reply.needles]

    async def list_stores(self) -> list[StoreView]:
        reply = await self._call("ListStores", pb.ListStoresRequest())
        return [StoreView(s.machine_id, s.address, s.rack, s.capacity_bytes, s.free_bytes, s.alive, s.http_address)
                for s in reply.stores]

    async def leader(self) -> tuple[str, str]:
        """(name, address) of the directory that leads; Unavailable during an election."""
        reply = await self._call("GetLeader", pb.GetLeaderRequest())
        return reply.leader, reply.address

    # --- changes -----------------------------------------------------------------------

    async def allocate(self, size: int, exclude: Sequence[int], avoid_machines: Sequence[int] = ()) -> VolumeView:
        reply = await self._call("Allocate", pb.AllocateRequest(size_bytes=size, exclude=list(exclude),
                                                                avoid_machines=list(avoid_machines)))
        view = _view(reply.volume)
        self.volumes[view.id] = view
        return view

    async def mark_read_only(self, volume_id: int, reason: str, *, repair: bool) -> VolumeView:
        reply = await self._call("MarkReadOnly", pb.MarkReadOnlyRequest(logical_volume=volume_id, reason=reason,
                                                                        repair=repair))
        view = self.volumes[volume_id] = _view(reply.volume)
        return view

    async def migrate_volume(self, volume_id: int) -> VolumeView:
        """Asks for the volume to move into f4 now, whatever its age; returns it as it is
        after the request (read-only, sealed or already warm). NotFound for an unknown
        volume; FailedPrecondition for one under repair, or when f4.migrate is off."""
        reply = await self._call("MigrateVolume", pb.MigrateVolumeRequest(logical_volume=volume_id))
        view = self.volumes[volume_id] = _view(reply.volume)
        return view

    # --- following WatchVolumes (a service worker) -----------------------------------

    async def run(self) -> None:
        """Follows WatchVolumes, moving to the next directory when a stream breaks; after
        streams that brought nothing, a backoff before the next (every directory away: do
        not spin), reset by a stream that delivered."""
        failures = 0
        for turn in itertools.count():
            if self._stop.is_set():
                return
            endpoint = self._endpoints[turn % len(self._endpoints)]
            delivered = False
            try:
                async for message in rpc.stream_out(self._stub(endpoint).WatchVolumes, pb.WatchVolumesRequest(),
                                                    remote=f"directory {endpoint}", timeout=None):
                    if message.snapshot:
                        self.volumes = {v.id: _view(v) for v in message.volumes}
                    else:
                        for v in message.volumes:
                            self.volumes[v.id] = _view(v)
                    self.ready.set()
                    delivered = True
            except TrenchcoatError as exc:
                if not self._stop.is_set():
                    log.warning("volume map stream ended (%s); switching directory", exc)
            except asyncio.CancelledError:
                if self._stop.is_set():
                    return
                raise
            failures = 0 if delivered else failures + 1
            if failures < len(self._endpoints):
                continue  # the next directory at once: this one broke, that one may serve
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), RECONNECT.pause(failures - len(self._endpoints) + 1))

    async def shutdown(self) -> None:
        self._stop.set()
