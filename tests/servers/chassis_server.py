"""A service process for testing the chassis (trenchcoat.server) from the outside.

Serves raw-bytes methods through a generic handler, behind the same ServiceHost every
real service uses:

- ``/test.Chassis/Sleep``: sleeps the number of ms in the request (ASCII), answers b"done";
- ``/test.Chassis/Missing``: raises ``trenchcoat.errors.NotFound``;
- ``/test.Chassis/Crash``: raises ``ValueError`` (an unexpected error).
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import grpc

from trenchcoat import server
from trenchcoat.errors import NotFound
from trenchcoat.v1 import store_pb2_grpc


async def sleep(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    await asyncio.sleep(int(request.decode() or "0") / 1000)
    return b"done"


async def missing(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    raise NotFound(f"no such thing: {request.decode()!r}")


async def crash(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    raise ValueError("boom")


def handler() -> grpc.GenericRpcHandler:
    methods = {"Sleep": sleep, "Missing": missing, "Crash": crash}
    return grpc.method_handlers_generic_handler(
        "test.Chassis",
        {name: grpc.unary_unary_rpc_method_handler(fn) for name, fn in methods.items()},
    )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--metrics-port", type=int, required=True)
    parser.add_argument("--grace", type=float, default=5.0)
    parser.add_argument("--drain-notice", type=float, default=0.0)
    args = parser.parse_args()
    server.setup_logging("INFO")

    async def build() -> server.ServiceHost:
        return server.ServiceHost(
            name="chassis-test",
            host="127.0.0.1",
            port=args.port,
            metrics_port=args.metrics_port,
            grace_period_s=args.grace,
            drain_notice_s=args.drain_notice,
            generic_handlers=[handler()],
            # The generated base servicer (every method UNIMPLEMENTED): enough to show that
            # reflection describes the real contract. Not a service of the product.
            bindings=[server.Binding("trenchcoat.v1.StoreService", store_pb2_grpc.StoreServiceServicer(),
                                     store_pb2_grpc.add_StoreServiceServicer_to_server)],
        )

    return server.run(build)


if __name__ == "__main__":
    sys.exit(main())
