"""The router's writes to store machines (one channel per address). Protobuf stays here."""

from __future__ import annotations

import grpc

from trenchcoat.errors import FailedPrecondition, Unavailable
from trenchcoat.server import MAX_MESSAGE_BYTES
from trenchcoat.v1 import store_pb2, store_pb2_grpc


class ReplicaWriteFailed(Unavailable):
    """A replica did not acknowledge a write durably."""


class StoreWriters:
    def __init__(self) -> None:
        self._stubs: dict[str, store_pb2_grpc.StoreServiceStub] = {}
        self._channels: list[grpc.aio.Channel] = []

    def _stub(self, address: str) -> store_pb2_grpc.StoreServiceStub:
        stub = self._stubs.get(address)
        if stub is None:
            channel = grpc.aio.insecure_channel(address, options=[
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES)])
            self._channels.append(channel)
            stub = self._stubs[address] = store_pb2_grpc.StoreServiceStub(channel)
        return stub

    async def write(self, address: str, volume_id: int, key: int, alt: int, cookie: int, data: bytes,
                    timeout_s: float) -> None:
        """Returns once the store at ``address`` holds the needle durably."""
        request = store_pb2.WriteNeedleRequest(volume_id=volume_id, key=key, alternate_key=alt,
                                               cookie=cookie, data=data)
        try:
            await self._stub(address).WriteNeedle(request, timeout=timeout_s)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.FAILED_PRECONDITION:
                raise FailedPrecondition(f"store {address} refuses writes to volume {volume_id}: "
                                         f"{exc.details()}") from None
            raise ReplicaWriteFailed(f"store {address}, volume {volume_id}: {exc.code().name}: "
                                     f"{exc.details()}") from None

    async def close(self) -> None:
        for channel in self._channels:
            await channel.close()
