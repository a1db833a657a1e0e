"""A client's view of the Directory (routers, caches): a copy of the volume map kept current by the
WatchVolumes stream (reconnecting to any directory process when one goes away), plus the
few calls that change things. Protobuf stays in this module."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import grpc

from trenchcoat.errors import NotFound, Unavailable
from trenchcoat.v1 import directory_pb2 as pb
from trenchcoat.v1 import directory_pb2_grpc

log = logging.getLogger(__name__)

_RETRYABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED)


@dataclass(frozen=True, slots=True)
class ReplicaView:
    machine_id: int
    volume_id: int
    address: str
    alive: bool


@dataclass(frozen=True, slots=True)
class VolumeView:
    id: int
    writable: bool
    room: int
    replicas: tuple[ReplicaView, ...]

    def writable_for(self, size: int) -> bool:
        return self.writable and self.room >= size and all(r.alive for r in self.replicas)

    def replica_on(self, machine_id: int) -> ReplicaView | None:
        return next((r for r in self.replicas if r.machine_id == machine_id), None)


def _view(v: pb.LogicalVolume) -> VolumeView:
    return VolumeView(
        id=v.id,
        writable=v.state == pb.VOLUME_STATE_WRITABLE,
        room=max(0, v.capacity_bytes - v.used_bytes),
        replicas=tuple(ReplicaView(r.machine_id, r.volume_id, r.address, r.alive) for r in v.replicas),
    )


class DirectoryClient:
    def __init__(self, endpoints: Sequence[str], timeout_s: float = 3.0) -> None:
        if not endpoints:
            raise ValueError("no directory endpoints")
        self._endpoints = list(endpoints)
        self._channels = [grpc.aio.insecure_channel(e) for e in self._endpoints]
        self._stubs = [directory_pb2_grpc.DirectoryServiceStub(c) for c in self._channels]
        self._next = itertools.count()
        self._timeout = timeout_s
        self.volumes: dict[int, VolumeView] = {}
        self.ready = asyncio.Event()
        self._stop = asyncio.Event()
        self._stream: grpc.aio.UnaryStreamCall | None = None

    async def _call(self, method: str, request: object) -> object:
        """Calls ``method`` on the directories in turn until one answers."""
        start = next(self._next)
        last: grpc.aio.AioRpcError | None = None
        for i in range(len(self._stubs)):
            stub = self._stubs[(start + i) % len(self._stubs)]
            try:
                return await getattr(stub, method)(request, timeout=self._timeout)
            except grpc.aio.AioRpcError as exc:
                if exc.code() not in _RETRYABLE:
                    if exc.code() == grpc.StatusCode.NOT_FOUND:
                        raise NotFound(exc.details()) from None
                    raise Unavailable(f"directory {method}: {exc.code().name}: {exc.details()}") from None
                last = exc
        raise Unavailable(f"no directory answered {method} ({', '.join(self._endpoints)}): "
                          f"{last.details() if last else ''}")

    async def allocate(self, size: int, exclude: Sequence[int], avoid_machines: Sequence[int] = ()) -> VolumeView:
        reply = await self._call("Allocate", pb.AllocateRequest(size_bytes=size, exclude=list(exclude),
                                                                avoid_machines=list(avoid_machines)))
        view = _view(reply.volume)  # type: ignore[attr-defined]
        self.volumes[view.id] = view
        return view

    async def mark_read_only(self, volume_id: int, reason: str, *, repair: bool) -> None:
        reply = await self._call("MarkReadOnly", pb.MarkReadOnlyRequest(logical_volume=volume_id, reason=reason,
                                                                        repair=repair))
        self.volumes[volume_id] = _view(reply.volume)  # type: ignore[attr-defined]

    async def run(self) -> None:
        """Follows WatchVolumes, moving to the next directory when a stream breaks."""
        for turn in itertools.count():
            if self._stop.is_set():
                return
            stub = self._stubs[turn % len(self._stubs)]
            try:
                self._stream = stub.WatchVolumes(pb.WatchVolumesRequest())
                async for message in self._stream:
                    if message.snapshot:
                        self.volumes = {v.id: _view(v) for v in message.volumes}
                    else:
                        for v in message.volumes:
                            self.volumes[v.id] = _view(v)
                    self.ready.set()
            except grpc.aio.AioRpcError as exc:
                if not self._stop.is_set():
                    log.warning("volume map stream from %s ended: %s; switching directory",
                                self._endpoints[turn % len(self._endpoints)], exc.code().name)
            except asyncio.CancelledError:
                if self._stop.is_set():
                    return
                raise
            try:
                await asyncio.wait_for(self._stop.wait(), 0.5)
            except TimeoutError:
                pass

    async def shutdown(self) -> None:
        self._stop.set()
        if self._stream is not None:
            self._stream.cancel()

    async def close(self) -> None:
        for channel in self._channels:
            await channel.close()
