"""The Cache's reads from store machines. Protobuf stays here."""

from __future__ import annotations

import grpc

from trenchcoat.errors import DataLoss, NotFound, Unavailable
from trenchcoat.server import MAX_MESSAGE_BYTES
from trenchcoat.v1 import store_pb2, store_pb2_grpc


class StoreReaders:
    def __init__(self, timeout_s: float) -> None:
        self._timeout = timeout_s
        self._stubs: dict[str, store_pb2_grpc.StoreServiceStub] = {}
        self._channels: list[grpc.aio.Channel] = []
        self.reads = 0

    def _stub(self, address: str) -> store_pb2_grpc.StoreServiceStub:
        stub = self._stubs.get(address)
        if stub is None:
            channel = grpc.aio.insecure_channel(address, options=[("grpc.max_receive_message_length", MAX_MESSAGE_BYTES)])
            self._channels.append(channel)
            stub = self._stubs[address] = store_pb2_grpc.StoreServiceStub(channel)
        return stub

    async def read(self, address: str, volume_id: int, key: int, alt: int, cookie: int) -> bytes:
        """The needle's bytes; NotFound, DataLoss, or Unavailable (try another replica)."""
        self.reads += 1
        request = store_pb2.ReadNeedleRequest(volume_id=volume_id, key=key, alternate_key=alt, cookie=cookie)
        try:
            return (await self._stub(address).ReadNeedle(request, timeout=self._timeout)).data
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                raise NotFound(exc.details()) from None
            if exc.code() == grpc.StatusCode.DATA_LOSS:
                raise DataLoss(exc.details()) from None
            raise Unavailable(f"store {address}: {exc.code().name}: {exc.details()}") from None

    async def close(self) -> None:
        for channel in self._channels:
            await channel.close()
