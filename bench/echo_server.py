"""The baseline of bench.store: a bare grpc.aio server that answers every call with the
same bytes a ReadNeedle of a needle of that size puts on the wire (an encoded
ReadNeedleResponse, built once). No chassis, no interceptor, no decoding, no disk."""

from __future__ import annotations

import asyncio
import sys

import grpc

from trenchcoat.v1.store_pb2 import ReadNeedleResponse


async def main(port: int, size: int) -> None:
    payload = ReadNeedleResponse(data=b"e" * size).SerializeToString()

    async def echo(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return payload

    server = grpc.aio.server()
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        "bench.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(echo)}),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
