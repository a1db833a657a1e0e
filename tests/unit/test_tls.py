"""trenchcoat/tls.py: the cluster CA and identities, and mutual TLS on a real gRPC server
(the chassis's ServiceHost on a loopback port) and client (the ChannelPool): a caller
without a certificate, or with one of another CA, is refused at the handshake; the server
sees the caller's role; a rotated certificate is taken up without a restart."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import grpc
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from trenchcoat import permissions, rpc, tls, tokens
from trenchcoat.errors import PermissionDenied, TrenchcoatError, Unavailable
from trenchcoat.httpsite import HttpSite
from trenchcoat.ops import ports
from trenchcoat.server import ServiceHost

WHO = "/test.Who/Am"


def _who_am_i() -> grpc.GenericRpcHandler:
    async def handler(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return (tls.role_of(context) or "-").encode()

    return grpc.method_handlers_generic_handler(
        "test.Who", {"Am": grpc.unary_unary_rpc_method_handler(handler)})


@pytest.fixture
def tls_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "tls"
    tls.ensure(directory, ["store", "router", "cache", "admin"])
    return directory


async def ask(pool: rpc.ChannelPool, address: str) -> str:
    call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = pool.channel(address).unary_unary(WHO)
    return (await rpc.unary(call, b"", remote=address, timeout=10)).decode()


async def served(tls_dir: Path) -> ServiceHost:
    host = ServiceHost(name="tls-test", host="127.0.0.1", port=ports.free_port(), metrics_port=-1,
                       generic_handlers=[_who_am_i()], tls=tls.ServerTls(tls.Identity(tls_dir, "store")),
                       permissions={WHO: frozenset({"router", "admin"})})
    await host.start()
    return host


def test_a_certificate_names_one_role_and_serves_both_ends_of_a_hop(tls_dir):
    cert = x509.load_pem_x509_certificate((tls_dir / "router.crt").read_bytes())
    assert tls.role_of_certificate((tls_dir / "router.crt").read_bytes()) == "router"
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "trenchcoat"
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(usage) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in sans.get_values_for_type(x509.DNSName)
    assert (tls_dir / "router.key").stat().st_mode & 0o077 == 0  # the key: its owner's only
    assert (tls_dir / "ca.key").stat().st_mode & 0o077 == 0
    with pytest.raises(tls.TlsError, match="already holds a CA"):
        tls.make_ca(tls_dir)
    with pytest.raises(tls.TlsError, match="unknown role"):
        tls.issue(tls_dir, "root")
    assert tls.ensure(tls_dir, ["store", "feed"]) == ["feed"]  # only what is missing
    assert (tls_dir / tokens.PRIVATE_FILE).exists() and (tls_dir / tokens.PUBLIC_FILE).exists()  # user tokens' keys


async def test_the_server_knows_its_callers_role_and_refuses_callers_without_a_cluster_certificate(tls_dir, tmp_path):
    host = await served(tls_dir)
    address = f"127.0.0.1:{host.port}"
    try:
        async with rpc.ChannelPool(tls=tls.ClientTls(tls.Identity(tls_dir, "router"))) as pool:
            assert await ask(pool, address) == "router"
        async with rpc.ChannelPool(tls=tls.ClientTls(tls.Identity(tls_dir, "admin"))) as pool:
            assert await ask(pool, address) == "admin"
        # A certificate of the cluster, of a role the method does not answer: refused by name.
        async with rpc.ChannelPool(tls=tls.ClientTls(tls.Identity(tls_dir, "cache"))) as pool:
            with pytest.raises(PermissionDenied, match=r"role 'cache' may not call /test\.Who/Am"):
                await ask(pool, address)
            assert await rpc.health(pool, address, remote="health", timeout=10) == "SERVING"  # open to any role
        # Plaintext: refused.
        async with rpc.ChannelPool() as pool:
            with pytest.raises(Unavailable):
                await ask(pool, address)
        # TLS without a client certificate: refused at the handshake.
        ca = (tls_dir / "ca.crt").read_bytes()
        anonymous = grpc.aio.secure_channel(address, grpc.ssl_channel_credentials(root_certificates=ca))
        try:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await anonymous.unary_unary(WHO)(b"", timeout=10)  # type: ignore[arg-type]
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        finally:
            await anonymous.close()
        # A certificate of another CA (same role name): refused at the handshake.
        other = tmp_path / "other"
        tls.ensure(other, ["router"])
        creds = grpc.ssl_channel_credentials(root_certificates=ca, private_key=(other / "router.key").read_bytes(),
                                             certificate_chain=(other / "router.crt").read_bytes())
        stranger = grpc.aio.secure_channel(address, creds)
        try:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stranger.unary_unary(WHO)(b"", timeout=10)  # type: ignore[arg-type]
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        finally:
            await stranger.close()
    finally:
        await host.drain()


def _served_certificate(port: int, tls_dir: Path) -> bytes:
    """The DER certificate the server presents to a new connection now."""
    context = ssl.create_default_context(cafile=str(tls_dir / "ca.crt"))
    context.load_cert_chain(tls_dir / "admin.crt", tls_dir / "admin.key")
    context.set_alpn_protocols(["h2"])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock, \
            context.wrap_socket(sock, server_hostname="localhost") as wrapped:
        der = wrapped.getpeercert(binary_form=True)
    assert der is not None
    return der


async def test_a_rotated_certificate_is_served_to_new_connections_without_a_restart(tls_dir):
    host = await served(tls_dir)
    try:
        loop = asyncio.get_running_loop()
        before = await loop.run_in_executor(None, _served_certificate, host.port, tls_dir)
        tls.issue(tls_dir, "store")  # rotation: a new key and certificate in place
        after = await loop.run_in_executor(None, _served_certificate, host.port, tls_dir)
        assert after != before
        current = x509.load_pem_x509_certificate((tls_dir / "store.crt").read_bytes())
        assert after == current.public_bytes(serialization.Encoding.DER)
        # And a client's pool takes up its own rotated certificate for the channels it makes next.
        async with rpc.ChannelPool(tls=tls.ClientTls(tls.Identity(tls_dir, "router"))) as pool:
            address = f"127.0.0.1:{host.port}"
            assert await ask(pool, address) == "router"
            tls.issue(tls_dir, "router")
            pool._checked -= rpc.TLS_RECHECK_S + 1  # as if the recheck interval had passed
            assert await ask(pool, address) == "router"
            assert pool._retired  # the old channel, kept for calls under way
    finally:
        await host.drain()


async def test_an_https_listener_takes_up_a_rotated_certificate_and_answers_only_its_callers(tls_dir):
    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/x", ok)
    site = HttpSite(app, "127.0.0.1", 0, what="test", tls=tls.HttpServerTls(tls.Identity(tls_dir, "store")),
                    callers=frozenset({"cache"}))
    await site.start()
    try:
        loop = asyncio.get_running_loop()
        before = await loop.run_in_executor(None, _served_certificate, site.port, tls_dir)
        tls.issue(tls_dir, "store")
        assert site._tls is not None and site._tls.refresh()  # what run() does every TLS_RECHECK_S
        after = await loop.run_in_executor(None, _served_certificate, site.port, tls_dir)
        assert after != before
        for role, status in (("cache", 200), ("router", 403)):
            connector = aiohttp.TCPConnector(ssl=tls.ClientTls(tls.Identity(tls_dir, role)).http_context())
            async with aiohttp.ClientSession(connector=connector) as session, \
                    session.get(f"https://127.0.0.1:{site.port}/x") as r:
                assert r.status == status, role
    finally:
        await site.shutdown()


def test_the_contracts_table_names_callers_of_every_method_from_the_known_roles():
    table = permissions.contract()
    assert len(table) >= 60
    for method, roles in table.items():
        assert roles and roles <= set(tls.ROLES), method
    # What the issue asks of it, spot-checked.
    assert table["/trenchcoat.v1.StoreService/WriteNeedle"] == {"router"}
    assert table["/trenchcoat.v1.StoreService/FreeVolume"] == {"directory"}
    assert table["/trenchcoat.v1.StoreService/RepairVolume"] == {"directory"}
    assert table["/trenchcoat.v1.F4KeyStoreService/GetKey"] == {"f4-front"}
    assert "admin" in table["/trenchcoat.v1.DirectoryService/MigrateVolume"]
    assert permissions.allowed("/grpc.health.v1.Health/Check", table) == set(tls.ROLES)
    assert permissions.allowed("/trenchcoat.v1.StoreService/NoSuchMethod", table) == frozenset()


UP = "/test.Up/Load"


def _uploads() -> grpc.GenericRpcHandler:
    async def load(requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> bytes:
        return str(sum([len(r) async for r in requests])).encode()

    return grpc.method_handlers_generic_handler("test.Up", {"Load": grpc.stream_unary_rpc_method_handler(load)})


async def test_a_refused_upload_is_refused_by_name_never_a_server_fault(tls_dir):
    """A client-streaming call refused while the client still writes: grpc's asyncio client
    used to report the write failing after the refusal as INTERNAL (grpc/grpc#36066), about
    1 call in 100 here; the server reads the refused stream out first."""
    host = ServiceHost(name="tls-test", host="127.0.0.1", port=ports.free_port(), metrics_port=-1,
                       generic_handlers=[_uploads()], tls=tls.ServerTls(tls.Identity(tls_dir, "store")),
                       permissions={UP: frozenset({"router"})})
    await host.start()
    try:
        async with rpc.ChannelPool(tls=tls.ClientTls(tls.Identity(tls_dir, "cache"))) as pool:
            call: grpc.aio.StreamUnaryMultiCallable[bytes, bytes] = pool.channel(f"127.0.0.1:{host.port}").stream_unary(UP)

            async def chunks() -> AsyncIterator[bytes]:
                for _ in range(32):
                    yield b"x" * (256 * 1024)
                    await asyncio.sleep(0)

            outcomes = []
            for _ in range(100):
                try:
                    await rpc.stream_in(call, chunks(), remote="up", timeout=30)
                    outcomes.append("ok")
                except TrenchcoatError as exc:
                    outcomes.append(type(exc).__name__)
            assert set(outcomes) == {"PermissionDenied"}, Counter(outcomes)
    finally:
        await host.drain()


def test_the_table_reads_as_a_person_reads_it():
    lines = permissions.table_lines()
    assert "StoreService.WriteNeedle: router" in lines
    assert "MediaService.Delete: admin, app, feed  (acts for owner_id)" in lines
    assert "FeedService.GetHomeFeed: admin, app  (acts for user_id)" in lines
    assert "HTTP photo port: admin, app, cdn, router  (as CacheService/Read)" in lines
    assert "HTTP /metrics (every process): admin, prometheus; /readyz, /livez: anyone over TLS" in lines
    assert len(lines) == len(permissions.contract()) + 1 + len(permissions.HTTP_TWINS) + 1
