"""The CPU baseline of bench.upload: the gRPC calls a replicated upload makes, and nothing
else. ``python -m bench.relay_server PORT [UPSTREAM ...]``

With no upstreams it is a bare grpc.aio echo: every call is answered with an empty
message. With upstreams (host:port of echoes) it is a relay: each call's request bytes
are sent to every upstream at once and the call is answered once all have answered, as
the router sends an upload to every replica. Raw bytes throughout (no protobuf, no
chassis, no interceptor, no disk, no database), with the servers' and clients' channel
options (``trenchcoat.rpc``), so the CPU a relay and three echoes spend per call is the
floor under one upload to three replicas."""

from __future__ import annotations

import asyncio
import sys

import grpc

from trenchcoat.rpc import CHANNEL_OPTIONS, SERVER_OPTIONS

METHOD = "/bench.Relay/Call"


async def main(port: int, upstreams: list[str]) -> None:
    channels = [grpc.aio.insecure_channel(u, options=list(CHANNEL_OPTIONS)) for u in upstreams]
    calls: list[grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]] = [c.unary_unary(METHOD) for c in channels]

    async def relay(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        if calls:
            await asyncio.gather(*(call(request) for call in calls))
        return b""

    server = grpc.aio.server(options=list(SERVER_OPTIONS))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        "bench.Relay", {"Call": grpc.unary_unary_rpc_method_handler(relay)}),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2:]))
