"""The Directory's calls to store machines (probe, status, create, repair). Protobuf
stays here; the leader's logic sees plain values."""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from trenchcoat.errors import Unavailable
from trenchcoat.v1 import store_pb2, store_pb2_grpc


@dataclass(frozen=True, slots=True)
class PhysicalVolume:
    """A replica as its store reports it."""

    volume_id: int
    read_only: bool
    needles: int
    deleted: int
    live_bytes: int
    file_bytes: int
    capacity_bytes: int

    def same_contents(self, other: PhysicalVolume) -> bool:
        return (self.needles, self.deleted, self.live_bytes, self.file_bytes) == (
            other.needles, other.deleted, other.live_bytes, other.file_bytes)


class StoreClients:
    """One channel per store address, reused."""

    def __init__(self, timeout_s: float) -> None:
        self._timeout = timeout_s
        self._channels: dict[str, grpc.aio.Channel] = {}

    def _channel(self, address: str) -> grpc.aio.Channel:
        channel = self._channels.get(address)
        if channel is None:
            channel = self._channels[address] = grpc.aio.insecure_channel(address)
        return channel

    def _stub(self, address: str) -> store_pb2_grpc.StoreServiceStub:
        return store_pb2_grpc.StoreServiceStub(self._channel(address))

    async def probe(self, address: str) -> dict[int, PhysicalVolume]:
        """Health, then a status of every volume, then a read of one byte range of each
        volume from disk (its superblock). Raises Unavailable on any failure."""
        try:
            health = await health_pb2_grpc.HealthStub(self._channel(address)).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=self._timeout)
            if health.status != health_pb2.HealthCheckResponse.SERVING:
                raise Unavailable(f"store {address} is not serving")
            volumes = await self.status(address)
            stub = self._stub(address)
            for volume_id in volumes:
                call = stub.ExportVolume(store_pb2.ExportVolumeRequest(volume_id=volume_id, offset=0, chunk_bytes=64),
                                         timeout=self._timeout)
                async for _ in call:
                    call.cancel()
                    break
        except grpc.aio.AioRpcError as exc:
            raise Unavailable(f"store {address}: {exc.code().name}: {exc.details()}") from None
        return volumes

    async def status(self, address: str) -> dict[int, PhysicalVolume]:
        try:
            reply = await self._stub(address).VolumeStatus(store_pb2.VolumeStatusRequest(), timeout=self._timeout)
        except grpc.aio.AioRpcError as exc:
            raise Unavailable(f"store {address}: {exc.code().name}: {exc.details()}") from None
        return {v.volume_id: _physical(v) for v in reply.volumes}

    async def create(self, address: str, volume_id: int) -> int:
        """Creates a physical volume; returns its capacity in bytes."""
        try:
            reply = await self._stub(address).CreateVolume(store_pb2.CreateVolumeRequest(volume_id=volume_id),
                                                           timeout=self._timeout)
        except grpc.aio.AioRpcError as exc:
            raise Unavailable(f"store {address}: create volume {volume_id}: "
                              f"{exc.code().name}: {exc.details()}") from None
        return reply.volume.capacity_bytes

    async def repair(self, address: str, volume_id: int, source: str, chunk_bytes: int) -> int:
        """Has the store at ``address`` replace its copy with the one at ``source``."""
        try:
            reply = await self._stub(address).RepairVolume(
                store_pb2.RepairVolumeRequest(volume_id=volume_id, source_address=source, chunk_bytes=chunk_bytes))
        except grpc.aio.AioRpcError as exc:
            raise Unavailable(f"repair of volume {volume_id} on {address} from {source}: "
                              f"{exc.code().name}: {exc.details()}") from None
        return reply.copied_bytes

    async def set_read_only(self, address: str, volume_id: int, read_only: bool) -> None:
        try:
            await self._stub(address).SetReadOnly(
                store_pb2.SetReadOnlyRequest(volume_id=volume_id, read_only=read_only), timeout=self._timeout)
        except grpc.aio.AioRpcError as exc:
            raise Unavailable(f"store {address}: set read-only on {volume_id}: "
                              f"{exc.code().name}: {exc.details()}") from None

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()


def _physical(v: store_pb2.VolumeInfo) -> PhysicalVolume:
    return PhysicalVolume(v.volume_id, v.read_only, v.needles, v.deleted_needles, v.live_bytes,
                          v.file_bytes, v.capacity_bytes)
