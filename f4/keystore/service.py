"""The F4KeyStoreService servicer: protobuf in, a call on Keys, protobuf out."""

from __future__ import annotations

from grpc.aio import ServicerContext

from f4.keystore.keys import Keys
from trenchcoat.v1 import f4_pb2, f4_pb2_grpc

SERVICE_NAME = "trenchcoat.v1.F4KeyStoreService"


class KeyStoreServicer(f4_pb2_grpc.F4KeyStoreServiceServicer):
    def __init__(self, keys: Keys) -> None:
        self._keys = keys

    async def CreateKey(
        self, request: f4_pb2.CreateKeyRequest,
        context: ServicerContext[f4_pb2.CreateKeyRequest, f4_pb2.CreateKeyResponse],
    ) -> f4_pb2.CreateKeyResponse:
        return f4_pb2.CreateKeyResponse(key=await self._keys.create(request.needle.key, request.needle.alternate_key))

    async def GetKey(
        self, request: f4_pb2.GetKeyRequest,
        context: ServicerContext[f4_pb2.GetKeyRequest, f4_pb2.GetKeyResponse],
    ) -> f4_pb2.GetKeyResponse:
        return f4_pb2.GetKeyResponse(key=await self._keys.get(request.needle.key, request.needle.alternate_key))

    async def DiscardKey(
        self, request: f4_pb2.DiscardKeyRequest,
        context: ServicerContext[f4_pb2.DiscardKeyRequest, f4_pb2.DiscardKeyResponse],
    ) -> f4_pb2.DiscardKeyResponse:
        alt = None if request.every_rendition else request.needle.alternate_key
        count = await self._keys.discard(request.needle.key, alt)
        return f4_pb2.DiscardKeyResponse(discarded=count > 0, keys_discarded=count)
