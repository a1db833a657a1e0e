"""A service process for testing the chassis (trenchcoat.server) from the outside.

Serves raw-bytes methods through a generic handler, behind the same ServiceHost every
real service uses:

- ``/test.Chassis/Sleep``: sleeps the number of ms in the request (ASCII), answers b"done";
- ``/test.Chassis/Missing``: raises ``trenchcoat.errors.NotFound``;
- ``/test.Chassis/Crash``: raises ``ValueError`` (an unexpected error);
- ``/test.Chassis/NeedleGone``: raises a service's own subclass of the chassis's
  ``NeedleNotFound`` (as ``store.errors`` does), to show the class crosses the wire;
- ``/test.Chassis/Custom``: raises a service-only ``Unavailable`` subclass, which arrives
  as the nearest chassis class;
- ``/test.Chassis/FailTicks``: from now on every tick of the ``Ticker`` worker (every
  50 ms) raises ``ValueError`` (a bug one tick meets: the loop must go on);
- ``/test.Chassis/BreakWorker``: the ``Breakable`` worker's ``run()`` raises
  ``RuntimeError`` (a worker that cannot go on: the service must turn NOT_SERVING).

With ``--ready-file PATH`` the process reports NOT_SERVING until that file exists (a
readiness condition, like a cache waiting for its first volume map).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

import grpc

from trenchcoat import permissions, server, tls
from trenchcoat.config import env_key
from trenchcoat.errors import NeedleNotFound, NotFound, Unavailable
from trenchcoat.v1 import store_pb2_grpc
from trenchcoat.workers import PeriodicWorker


class ServiceNeedleGone(NeedleNotFound):
    """A service's own subclass of a chassis error."""


class ServiceHiccup(Unavailable):
    """A service-only error class the chassis does not know."""


async def sleep(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    await asyncio.sleep(int(request.decode() or "0") / 1000)
    return b"done"


async def missing(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    raise NotFound(f"no such thing: {request.decode()!r}")


async def crash(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    raise ValueError("boom")


async def needle_gone(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    raise ServiceNeedleGone("needle 0x1/0 not found in volume 3")


async def custom(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    raise ServiceHiccup("the disk is busy; retry")


class Ticker(PeriodicWorker):
    """Ticks every 50 ms; each tick raises once ``failing`` is set."""

    def __init__(self) -> None:
        super().__init__("ticker", 0.05)
        self.failing = False

    async def tick(self) -> None:
        if self.failing:
            raise ValueError("a tick met a bug")


class Breakable:
    """A worker that runs until ``shutdown()``, or raises once ``breaks()`` is called."""

    def __init__(self) -> None:
        self.broken = False
        self._ended = asyncio.Event()

    def breaks(self) -> None:
        self.broken = True
        self._ended.set()

    async def run(self) -> None:
        await self._ended.wait()
        if self.broken:
            raise RuntimeError("broken on purpose by the test")

    async def shutdown(self) -> None:
        self._ended.set()


def handler(ticker: Ticker, breakable: Breakable) -> grpc.GenericRpcHandler:
    async def fail_ticks(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        ticker.failing = True
        return b"failing"

    async def break_worker(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        breakable.breaks()
        return b"broken"

    methods = {"Sleep": sleep, "Missing": missing, "Crash": crash, "NeedleGone": needle_gone, "Custom": custom,
               "FailTicks": fail_ticks, "BreakWorker": break_worker}
    assert set(methods) == set(METHODS)
    return grpc.method_handlers_generic_handler(
        "test.Chassis",
        {name: grpc.unary_unary_rpc_method_handler(fn) for name, fn in methods.items()},
    )


METHODS = ("Sleep", "Missing", "Crash", "NeedleGone", "Custom", "FailTicks", "BreakWorker")
"""The test service's methods, which any caller of the cluster may call."""


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--metrics-port", type=int, required=True)
    parser.add_argument("--grace", type=float, default=5.0)
    parser.add_argument("--drain-notice", type=float, default=0.0)
    parser.add_argument("--ready-file", type=Path, default=None)
    args = parser.parse_args()
    server.setup_logging("INFO")

    async def ready_file() -> None:
        while not args.ready_file.exists():
            await asyncio.sleep(0.05)

    async def build() -> server.ServiceHost:
        ticker, breakable = Ticker(), Breakable()
        return server.ServiceHost(
            name="chassis-test",
            host="127.0.0.1",
            port=args.port,
            metrics_port=args.metrics_port,
            grace_period_s=args.grace,
            drain_notice_s=args.drain_notice,
            generic_handlers=[handler(ticker, breakable)],
            # The generated base servicer (every method UNIMPLEMENTED): enough to show that
            # reflection describes the real contract. Not a service of the product.
            bindings=[server.Binding("trenchcoat.v1.StoreService", store_pb2_grpc.StoreServiceServicer(),
                                     store_pb2_grpc.add_StoreServiceServicer_to_server)],
            ready=[ready_file] if args.ready_file else [],
            # The suite's TLS directory (tests/conftest.py), as the store's identity: the
            # chassis serves the suite's stand-in callers as any service does.
            tls=tls.ServerTls(tls.Identity(Path(os.environ[env_key("cluster", "tls_dir")]), "store")),
            permissions={**permissions.contract(), **{f"/test.Chassis/{name}": permissions.EVERY_ROLE for name in METHODS}},
            workers=[ticker, breakable],
        )

    return server.run(build)


if __name__ == "__main__":
    sys.exit(main())
