"""A store's needle reads over HTTP (store/http.py), from a real store process, read raw
and through StoreHttpClient: the same bytes, types and typed errors as ReadNeedle."""

from __future__ import annotations

import asyncio
import contextlib
import time

import crc32c
import pytest
from aiohttp import web

from tests import harness
from tests.store_process import start_store
from trenchcoat import rpc, tls
from trenchcoat.clients.store import StoreClient
from trenchcoat.clients.store_http import StoreHttpClient
from trenchcoat.errors import (
    ChecksumMismatch,
    DeadlineExceeded,
    InvalidArgument,
    NeedleNotFound,
    TrenchcoatError,
    Unavailable,
    VolumeNotFound,
)
from trenchcoat.needle_ref import NeedleRef
from trenchcoat.ops import ports
from trenchcoat.store_types import Blob
from trenchcoat.urls import component, parse_component

pytestmark = pytest.mark.integration

TIMEOUT_S = 30.0
PHOTO = NeedleRef(logical_volume=1, key=0x0A1B2C3D4E5F6071, cookie=0x8BADF00D)
RENDITION = NeedleRef(logical_volume=1, key=PHOTO.key, alternate_key=3, cookie=PHOTO.cookie)


@pytest.fixture
async def store(service, tmp_path):
    """(gRPC address, HTTP address, data dir) of a store holding volume 1 with PHOTO and RENDITION."""
    http_port = ports.free_port()
    proc = start_store(service, tmp_path / "data", TRENCHCOAT_STORE__HTTP_PORT=str(http_port))
    async with rpc.ChannelPool() as pool:
        client = StoreClient(pool, timeout_s=TIMEOUT_S)
        await client.create(proc.address, 1)
        await client.write(proc.address, PHOTO, b"\xff\xd8jpeg bytes", content_type="image/jpeg")
        await client.write(proc.address, RENDITION, b"\x89PNG small", content_type="image/png")
        yield proc, f"127.0.0.1:{http_port}", client


@pytest.fixture
async def http():
    client = StoreHttpClient(timeout_s=TIMEOUT_S)
    yield client
    await client.close()


async def test_a_needle_reads_back_with_its_type_and_crc(store, http):
    _, address, _ = store
    async with harness.https_session("cache") as session:
        async with session.get(f"https://{address}/{component(PHOTO)}") as r:
            assert r.status == 200
            body = await r.read()
            assert body == b"\xff\xd8jpeg bytes"
            assert r.headers["Content-Type"] == "image/jpeg"
            assert r.headers["X-Trenchcoat-Crc32c"] == f"{crc32c.crc32c(body):08x}"
        async with session.head(f"https://{address}/{component(RENDITION)}.png") as r:
            assert r.status == 200 and r.headers["Content-Type"] == "image/png"
            assert int(r.headers["Content-Length"]) == len(b"\x89PNG small")
        async with session.post(f"https://{address}/{component(PHOTO)}", data=b"x") as r:
            assert r.status == 405  # reads only: writes go through gRPC
    assert await http.read(address, PHOTO) == Blob(b"\xff\xd8jpeg bytes", "image/jpeg")
    assert await http.read(address, RENDITION) == Blob(b"\x89PNG small", "image/png")


async def test_errors_are_the_stores_typed_errors(store, http):
    proc, address, client = store
    wrong_cookie = NeedleRef(logical_volume=1, key=PHOTO.key, cookie=PHOTO.cookie ^ 1)
    no_volume = NeedleRef(logical_volume=9, key=PHOTO.key, cookie=PHOTO.cookie)
    with pytest.raises(NeedleNotFound):
        await http.read(address, wrong_cookie)
    with pytest.raises(NeedleNotFound):
        await http.read(address, NeedleRef(logical_volume=1, key=5, cookie=5))
    with pytest.raises(VolumeNotFound, match="volume 9 is not on this store"):
        await http.read(address, no_volume)
    await client.delete(proc.address, PHOTO)
    with pytest.raises(NeedleNotFound):
        await http.read(address, PHOTO)
    async with harness.https_session("cache") as session:
        async with session.get(f"https://{address}/1,nothex") as r:
            assert r.status == 400
            assert r.headers["X-Trenchcoat-Status"] == "INVALID_ARGUMENT"
            assert "16 lowercase hex key" in await r.text()
        async with session.get(f"https://{address}/{component(no_volume)}") as r:
            assert r.status == 404 and r.headers["X-Trenchcoat-Error"] == "VolumeNotFound"


async def test_damaged_bytes_on_disk_are_data_loss_never_served(store, http, tmp_path):
    proc, address, client = store
    data = b"Q" * 4096
    victim = NeedleRef(logical_volume=1, key=77, cookie=1)
    await client.write(proc.address, victim, data)
    path = tmp_path / "data" / "store-1" / "vol-1.dat"
    raw = path.read_bytes()
    offset = raw.rindex(data)
    with open(path, "r+b") as f:
        f.seek(offset + 100)
        f.write(b"R")
    with pytest.raises(ChecksumMismatch):
        await http.read(address, victim)
    async with harness.https_session("cache") as session, session.get(f"https://{address}/{component(victim)}") as r:
        assert r.status == 502 and r.headers["X-Trenchcoat-Status"] == "DATA_LOSS"
        assert b"Q" * 100 not in await r.read()


async def test_a_frozen_store_is_a_deadline_and_a_dead_one_unavailable(store):
    proc, address, _ = store
    http = StoreHttpClient(timeout_s=1.0)
    try:
        with proc.frozen():
            began = time.monotonic()
            with pytest.raises(DeadlineExceeded, match=f"store {address} did not answer"):
                await http.read(address, PHOTO)
            assert time.monotonic() - began < 10  # the deadline, not a hang (generous: a busy machine)
        proc.kill()
        with pytest.raises(Unavailable, match=f"store {address}: cannot read"):
            await http.read(address, PHOTO)
    finally:
        await http.close()


def identity(role: str) -> tls.Identity:
    return tls.Identity(harness.tls_dir(), role)


async def test_only_the_roles_that_may_read_needles_read_them_and_only_over_mutual_tls(store):
    _, address, _ = store
    path = f"https://{address}/{component(PHOTO)}"
    async with harness.https_session("router") as session, session.get(path) as r:  # may write, not read: the table says
        assert r.status == 403
        assert "role 'router' may not use the needle read HTTP port (it answers admin, cache)" in await r.text()
    await harness.assert_mutual_tls_only(path)
    async with harness.https_session("cache") as session, session.get(path) as r:
        assert r.status == 200 and await r.read() == b"\xff\xd8jpeg bytes"


@contextlib.asynccontextmanager
async def fake_store(handler):
    app = web.Application()
    app.router.add_get("/{photo}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    port = ports.free_port()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=tls.HttpServerTls(identity("store")).context).start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_bytes_damaged_on_the_way_are_data_loss_and_a_stranger_is_unavailable(http):
    async def damaged(request):
        return web.Response(body=b"flipped", headers={"X-Trenchcoat-Crc32c": f"{crc32c.crc32c(b'original'):08x}"})

    async def stranger(request):
        return web.Response(status=404, text="<html>nginx</html>")

    async with fake_store(damaged) as address:
        with pytest.raises(ChecksumMismatch, match="arrived damaged"):
            await http.read(address, PHOTO)
    async with fake_store(stranger) as address:
        with pytest.raises(Unavailable, match="not a store's needle reads") as info:
            await http.read(address, PHOTO)
        assert not isinstance(info.value, NeedleNotFound)  # never a final "no such photo"


async def test_many_concurrent_reads_share_a_few_connections(store):
    _, address, _ = store
    http = StoreHttpClient(timeout_s=TIMEOUT_S, connections_per_store=4)
    try:
        results = await asyncio.gather(*(http.read(address, PHOTO if i % 2 else RENDITION) for i in range(200)),
                                       return_exceptions=True)
    finally:
        await http.close()
    failed = [r for r in results if isinstance(r, TrenchcoatError)]
    assert not failed, failed[:3]
    assert {r.content_type for r in results if isinstance(r, Blob)} == {"image/jpeg", "image/png"}


def test_the_store_parses_the_component_a_photo_url_ends_with():
    assert parse_component(f"{component(RENDITION)}.png") == RENDITION
    with pytest.raises(InvalidArgument):
        parse_component("1,zz")
