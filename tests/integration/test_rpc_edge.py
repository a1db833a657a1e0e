"""trenchcoat.rpc against a real chassis process: a server's typed error arrives as the same
class (the remote named), transport failures become Unavailable, a pooled channel serves
every call, and a service with readiness conditions is NOT_SERVING until they hold."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests import harness
from trenchcoat import rpc
from trenchcoat.errors import (
    DeadlineExceeded,
    Internal,
    NeedleNotFound,
    NotFound,
    Unavailable,
    Unimplemented,
)
from trenchcoat.ops import ports
from trenchcoat.v1 import store_pb2, store_pb2_grpc

pytestmark = pytest.mark.integration


def chassis(service, *extra: str) -> harness.ServiceProcess:
    port, metrics_port = ports.free_port(), ports.free_port()
    return service("chassis", harness.python_module(
        "tests.servers.chassis_server", "--port", str(port), "--metrics-port", str(metrics_port), *extra),
        port=port, metrics_port=metrics_port, wait=not extra)


def raw(pool: rpc.ChannelPool, address: str, name: str):
    return pool.channel(address).unary_unary(f"/test.Chassis/{name}")


async def test_a_servers_typed_error_arrives_as_the_same_class_with_the_remote_named(service):
    proc = chassis(service)
    async with rpc.ChannelPool() as pool:
        with pytest.raises(NeedleNotFound) as info:
            await rpc.unary(raw(pool, proc.address, "NeedleGone"), b"", remote="chassis", timeout=10)
        assert str(info.value) == "chassis: needle 0x1/0 not found in volume 3"
        assert info.value.remote == "chassis" and info.value.status == "NOT_FOUND"
        with pytest.raises(Unavailable) as hiccup:  # a service-only class: its chassis ancestor
            await rpc.unary(raw(pool, proc.address, "Custom"), b"", remote="chassis", timeout=10)
        assert type(hiccup.value) is Unavailable and "retry" in str(hiccup.value)
        with pytest.raises(NotFound) as missing:
            await rpc.unary(raw(pool, proc.address, "Missing"), b"x", remote="chassis", timeout=10)
        assert type(missing.value) is NotFound
        with pytest.raises(Internal, match="see the server log"):
            await rpc.unary(raw(pool, proc.address, "Crash"), b"", remote="chassis", timeout=10)
        with pytest.raises(Unimplemented):
            await rpc.unary(pool.stub(store_pb2_grpc.StoreServiceStub, proc.address).ReadNeedle,
                            store_pb2.ReadNeedleRequest(), remote="chassis", timeout=10)


async def test_transport_failures_are_unavailable_and_deadlines_deadline_exceeded(service):
    proc = chassis(service)
    async with rpc.ChannelPool() as pool:
        with pytest.raises(DeadlineExceeded) as late:
            await rpc.unary(raw(pool, proc.address, "Sleep"), b"5000", remote="chassis", timeout=0.2)
        assert isinstance(late.value, Unavailable)  # retryable
        nobody = f"127.0.0.1:{ports.free_port()}"
        with pytest.raises(Unavailable) as down:
            await rpc.unary(raw(pool, nobody, "Sleep"), b"0", remote=f"chassis {nobody}", timeout=5)
        assert nobody in str(down.value)


async def test_one_channel_per_address_is_shared_by_every_call(service):
    proc = chassis(service)
    async with rpc.ChannelPool() as pool:
        assert pool.channel(proc.address) is pool.channel(proc.address)
        assert pool.stub(store_pb2_grpc.StoreServiceStub, proc.address) is pool.stub(
            store_pb2_grpc.StoreServiceStub, proc.address)
        replies = await asyncio.gather(*(rpc.unary(raw(pool, proc.address, "Sleep"), b"1", remote="c", timeout=10)
                                         for _ in range(50)))
        assert replies == [b"done"] * 50


async def test_a_service_is_not_serving_until_its_readiness_conditions_hold(service, tmp_path):
    ready = tmp_path / "ready"
    proc = chassis(service, "--ready-file", str(ready))

    async def health() -> str:
        # rpc.health, not the generated HealthStub: its stubs declare no Check method.
        try:
            return await rpc.health(pool, proc.address, remote="chassis", timeout=2)
        except Unavailable:
            return ""  # not listening yet

    async with rpc.ChannelPool() as pool:
        deadline = time.monotonic() + 60
        while (status := await health()) == "" and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert status == "NOT_SERVING"
        ready.touch()
        while (status := await health()) != "SERVING" and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert status == "SERVING"
