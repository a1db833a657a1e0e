"""trenchcoat.server from the outside: a real process, real gRPC and HTTP clients."""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
from grpc_reflection.v1alpha import reflection_pb2

from tests import harness
from tests.cluster import eventually
from trenchcoat import rpc
from trenchcoat.errors import (
    Internal,
    NotFound,
    TrenchcoatError,
    Unavailable,
    Unimplemented,
)
from trenchcoat.ops import ports
from trenchcoat.v1 import store_pb2, store_pb2_grpc

pytestmark = pytest.mark.integration

REFLECTION_INFO = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"


def chassis(service, *, grace: float = 5.0, drain_notice: float = 0.0) -> harness.ServiceProcess:
    port, metrics_port = ports.free_port(), ports.free_port()
    return service(
        "chassis",
        harness.python_module(
            "tests.servers.chassis_server", "--port", str(port), "--metrics-port", str(metrics_port),
            "--grace", str(grace), "--drain-notice", str(drain_notice),
        ),
        port=port,
        metrics_port=metrics_port,
    )


async def health(address: str, name: str = "") -> str:
    async with rpc.ChannelPool() as pool:
        return await rpc.health(pool, address, service=name, remote=f"chassis {address}", timeout=2)


def raw(pool: rpc.ChannelPool, address: str, method: str):
    """A raw-bytes method of the chassis test server (no serializers: bytes in, bytes out)."""
    return pool.channel(address).unary_unary(f"/test.Chassis/{method}")


async def test_health_reports_serving_for_the_server_and_each_service(service):
    proc = chassis(service)
    assert await health(proc.address) == "SERVING"
    assert await health(proc.address, "trenchcoat.v1.StoreService") == "SERVING"
    with pytest.raises(NotFound) as info:
        await health(proc.address, "no.such.Service")
    assert info.value.status == "NOT_FOUND"


async def test_reflection_lists_and_describes_the_contract(service):
    proc = chassis(service)
    async with rpc.ChannelPool() as pool:
        # The method on the pooled channel, as rpc.health makes its call: the reflection stubs
        # type the generated stub for a blocking channel only, and its method not at all.
        reflection = pool.channel(proc.address).stream_stream(
            REFLECTION_INFO, request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
            response_deserializer=reflection_pb2.ServerReflectionResponse.FromString)

        async def ask(**kwargs):
            responses = rpc.stream_out(reflection, iter([reflection_pb2.ServerReflectionRequest(**kwargs)]),
                                       remote=f"chassis {proc.address}", timeout=10)
            async for response in responses:
                return response
            raise AssertionError("reflection answered nothing")

        listed = await ask(list_services="")
        names = {s.name for s in listed.list_services_response.service}
        assert {"trenchcoat.v1.StoreService", "grpc.health.v1.Health",
                "grpc.reflection.v1alpha.ServerReflection"} <= names
        described = await ask(file_containing_symbol="trenchcoat.v1.StoreService")
        protos = described.file_descriptor_response.file_descriptor_proto
        assert protos and any(b"trenchcoat/v1/store.proto" in p for p in protos)


async def test_metrics_count_calls_by_method_and_code(service):
    proc = chassis(service)
    remote = f"chassis {proc.address}"
    async with rpc.ChannelPool() as pool:
        assert await rpc.unary(raw(pool, proc.address, "Sleep"), b"1", remote=remote, timeout=10) == b"done"
        for method, error in (("Missing", NotFound), ("Crash", Internal)):
            with pytest.raises(error) as info:
                await rpc.unary(raw(pool, proc.address, method), b"x", remote=remote, timeout=10)
            assert info.value.status == error.status
        with pytest.raises(Unimplemented) as info:
            await rpc.unary(pool.stub(store_pb2_grpc.StoreServiceStub, proc.address).VolumeStatus,
                            store_pb2.VolumeStatusRequest(), remote=remote, timeout=10)
        assert info.value.status == "UNIMPLEMENTED"
    text = harness.scrape(proc.metrics_url)
    for line in (
        'trenchcoat_grpc_requests_total{code="OK",method="Sleep",service="test.Chassis"} 1.0',
        'trenchcoat_grpc_requests_total{code="NOT_FOUND",method="Missing",service="test.Chassis"} 1.0',
        'trenchcoat_grpc_requests_total{code="INTERNAL",method="Crash",service="test.Chassis"} 1.0',
        'trenchcoat_grpc_requests_total{code="UNIMPLEMENTED",method="VolumeStatus",service="trenchcoat.v1.StoreService"} 1.0',
        'trenchcoat_grpc_request_duration_seconds_count{method="Sleep",service="test.Chassis"} 1.0',
        'trenchcoat_grpc_in_flight_requests{method="Sleep",service="test.Chassis"} 0.0',
    ):
        assert line in text, line


async def test_typed_errors_reach_the_client_with_their_message(service):
    proc = chassis(service)
    remote = f"chassis {proc.address}"
    async with rpc.ChannelPool() as pool:
        with pytest.raises(NotFound) as info:
            await rpc.unary(raw(pool, proc.address, "Missing"), b"photo-7", remote=remote, timeout=10)
    # The server's message, word for word, behind the name of the remote that sent it.
    assert str(info.value) == f"{remote}: no such thing: 'photo-7'"
    assert info.value.remote == remote


async def test_sigterm_drains_in_flight_work_and_exits_zero(service):
    proc = chassis(service, grace=5.0, drain_notice=1.0)
    remote = f"chassis {proc.address}"
    async with rpc.ChannelPool() as pool:
        slow = asyncio.ensure_future(rpc.unary(raw(pool, proc.address, "Sleep"), b"2000", remote=remote, timeout=10))
        await asyncio.sleep(0.3)
        popen = proc.process.popen
        assert popen is not None
        popen.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.2)
        assert await health(proc.address) == "NOT_SERVING"
        assert await slow == b"done"
    code = await asyncio.to_thread(popen.wait, 10)
    assert code == 0
    async with rpc.ChannelPool() as pool:
        with pytest.raises(Unavailable) as info:
            await rpc.unary(raw(pool, proc.address, "Sleep"), b"0", remote=remote, timeout=2)
        assert info.value.status == "UNAVAILABLE"


async def test_work_past_the_grace_period_is_cancelled_and_exit_is_prompt(service):
    proc = chassis(service, grace=0.5)
    async with rpc.ChannelPool() as pool:
        slow = asyncio.ensure_future(rpc.unary(raw(pool, proc.address, "Sleep"), b"30000",
                                               remote=f"chassis {proc.address}", timeout=40))
        await asyncio.sleep(0.3)
        popen = proc.process.popen
        assert popen is not None
        began = time.monotonic()
        popen.send_signal(signal.SIGTERM)
        with pytest.raises(TrenchcoatError):
            await slow
    assert await asyncio.to_thread(popen.wait, 10) == 0
    assert time.monotonic() - began < 10


def test_a_taken_port_fails_start_with_a_clear_message(service):
    proc = chassis(service)
    port = proc.address.rsplit(":", 1)[1]
    result = subprocess.run(
        [sys.executable, "-m", "tests.servers.chassis_server", "--port", port,
         "--metrics-port", str(ports.free_port())],
        capture_output=True, text=True, timeout=30, cwd=harness.REPO_ROOT, check=False,
    )
    assert result.returncode == 2
    assert f"cannot bind gRPC port 127.0.0.1:{port}" in result.stderr


async def test_a_tick_that_keeps_failing_is_counted_and_the_service_serves_on(service):
    proc = chassis(service)
    remote = f"chassis {proc.address}"
    async with rpc.ChannelPool() as pool:
        assert await rpc.unary(raw(pool, proc.address, "FailTicks"), b"", remote=remote, timeout=10) == b"failing"

        async def failed_twice() -> bool:
            text = await asyncio.to_thread(harness.scrape, proc.metrics_url)
            found = re.search(r'^trenchcoat_worker_tick_failures_total\{error="ValueError",worker="Ticker"\} (\S+)',
                              text, re.MULTILINE)
            return found is not None and float(found.group(1)) >= 2

        await eventually(failed_twice, what="two failed ticks counted")
        assert await health(proc.address) == "SERVING"
        assert await rpc.unary(raw(pool, proc.address, "Sleep"), b"1", remote=remote, timeout=10) == b"done"
    assert proc.process.running()
    assert "ValueError: a tick met a bug" in proc.process.log_tail(200)  # with its traceback


async def test_metrics_answer_prometheus_and_the_operator_and_probes_anyone_over_tls_only(service):
    proc = chassis(service)
    assert proc.metrics_url.startswith("https://")
    for role in ("prometheus", "admin"):
        assert "trenchcoat_grpc_requests_total" in harness.scrape(proc.metrics_url, role=role)
    refusals: list[tuple[str | None, str]] = [("store", "role 'store'"), (None, "a client without a certificate")]
    for refused_role, who in refusals:
        with pytest.raises(urllib.error.HTTPError) as refused:
            harness.scrape(proc.metrics_url, role=refused_role)
        assert refused.value.code == 403
        assert f"{who} may not use the chassis-test metrics HTTP port (it answers admin, prometheus)" \
            in refused.value.read().decode()
    with pytest.raises(OSError):  # plaintext HTTP is not spoken
        urllib.request.urlopen(proc.metrics_url.replace("https://", "http://"), timeout=10).read()


async def test_a_worker_that_ends_turns_the_service_not_serving_and_the_process_stays_up(service):
    proc = chassis(service)
    remote = f"chassis {proc.address}"
    assert 'trenchcoat_worker_failed{worker="Breakable"} 0.0' in harness.scrape(proc.metrics_url)
    base = proc.metrics_url.removesuffix("/metrics")
    assert harness.scrape(base + "/readyz", role=None) == "SERVING\n"  # probes hold no certificate
    assert harness.scrape(base + "/livez", role=None) == "ok\n"
    async with rpc.ChannelPool() as pool:
        assert await rpc.unary(raw(pool, proc.address, "BreakWorker"), b"", remote=remote, timeout=10) == b"broken"

        async def not_serving() -> bool:
            return await health(proc.address) == "NOT_SERVING"

        await eventually(not_serving, what="NOT_SERVING")
        assert await health(proc.address, "trenchcoat.v1.StoreService") == "NOT_SERVING"
        # The same on the metrics port, for probes without a certificate: not ready, and not live.
        base = proc.metrics_url.removesuffix("/metrics")
        for path in ("/readyz", "/livez"):
            with pytest.raises(urllib.error.HTTPError) as refused:
                harness.scrape(base + path, role=None)
            assert refused.value.code == 503
        assert b"worker failed: Breakable" in refused.value.read()
        # Up and answering (a liveness probe decides when to restart it), and says why.
        assert await rpc.unary(raw(pool, proc.address, "Sleep"), b"1", remote=remote, timeout=10) == b"done"
    assert proc.process.running()
    assert 'trenchcoat_worker_failed{worker="Breakable"} 1.0' in harness.scrape(proc.metrics_url)
    log = proc.process.log_tail(200)
    assert "ERROR trenchcoat.server: chassis-test: worker Breakable ended unexpectedly (RuntimeError: broken on " \
           "purpose by the test); the service reports NOT_SERVING" in log
    assert "Traceback" in log
    assert proc.process.popen is not None
    proc.process.popen.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(proc.process.popen.wait, 30) == 1  # it ended in a failed state
