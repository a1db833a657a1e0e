"""The baseline of bench.store: a bare grpc.aio server that answers every call with the
same bytes a ReadNeedle of a needle of that size puts on the wire (an encoded
ReadNeedleResponse, built once). No chassis, no interceptor, no decoding, no disk.

It answers at the store's own method path (``/trenchcoat.v1.StoreService/ReadNeedle``),
so the benchmark reads from it with the very client call it reads a store with
(``StoreClient.read``): both sides pay the same client-side cost (stub, request
encoding, the typed-error edge, reply decoding), and the ratio compares only the
servers. It takes the servers' channel options (``trenchcoat.rpc.SERVER_OPTIONS``:
message limits, accepting the pooled client channel's keepalive pings) for the same
reason."""

from __future__ import annotations

import asyncio
import sys

import grpc

from trenchcoat.rpc import SERVER_OPTIONS
from trenchcoat.v1.store_pb2 import DESCRIPTOR, ReadNeedleResponse

SERVICE = DESCRIPTOR.services_by_name["StoreService"].full_name
"""The store's service name: ``trenchcoat.v1.StoreService``."""
METHOD = "ReadNeedle"


async def main(port: int, size: int) -> None:
    payload = ReadNeedleResponse(data=b"e" * size).SerializeToString()

    async def echo(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return payload

    server = grpc.aio.server(options=list(SERVER_OPTIONS))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        SERVICE, {METHOD: grpc.unary_unary_rpc_method_handler(echo)}),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
