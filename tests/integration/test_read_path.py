"""The read path over real processes: photo URLs served over HTTP by the cache they name (no
database on the way: admission, leases, failover to the Store's replicas); gRPC reads;
deletes. The module's tests share one cluster (a directory, 3 stores on 3 racks, a cache,
a router), each reading photos it uploaded and counting deltas; the one that kills a store
has a cluster of its own."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import re
import shutil

import aiohttp
import pytest
from multidict import CIMultiDict
from prometheus_client.parser import text_string_to_metric_families

from tests import harness
from tests.cluster import CALL_TIMEOUT_S, eventually, full_media_cluster, shared
from tests.integration.test_upload import path_of
from trenchcoat import rpc, tls, urls
from trenchcoat.clients.cache import CacheRead
from trenchcoat.clients.media import Media
from trenchcoat.errors import InvalidArgument, NotFound, OutOfRange
from trenchcoat.needle_ref import NeedleRef
from trenchcoat.ops import dependencies, ports
from trenchcoat.v1 import (
    cache_pb2,
    cache_pb2_grpc,
    media_pb2,
    router_pb2,
    router_pb2_grpc,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cluster(module_service, etcd, postgres, tmp_path_factory):
    return shared(full_media_cluster(module_service, etcd, postgres, tmp_path_factory.mktemp("read-path"),
                                     directories=1, stores=3))


@pytest.fixture
async def own_cluster(service, etcd, postgres, tmp_path):
    """For a test that kills a process: nobody else's."""
    return await full_media_cluster(service, etcd, postgres, tmp_path, directories=1, stores=3)


async def upload(cluster, data: bytes, content_type="image/png", owner=5) -> Media:
    async with cluster.clients() as c:
        return await c.media.upload(data, owner_id=owner, content_type=content_type)


async def get(cluster, path, method="GET", **headers):
    async with harness.https_session() as session, session.request(method, cluster.gateway + path,
                                                                   headers=headers) as r:
        return r.status, CIMultiDict(r.headers), await r.read()


async def store_reads(cluster) -> float:
    total = 0.0
    async with harness.https_session() as session:
        for proc in cluster.stores.values():
            if proc is None or not proc.process.running():
                continue
            async with session.get(proc.metrics_url) as r:
                text = await r.text()
            total += sum(float(v) for v in re.findall(
                r'^trenchcoat_store_operations_total\{op="read",outcome="ok"\} (\S+)', text, re.MULTILINE))
    return total


async def test_gateway_serves_photo_urls_with_http_semantics(cluster):
    data = os.urandom(5000)
    media = await upload(cluster, data)
    status, headers, body = await get(cluster, path_of(media))
    assert status == 200 and body == data
    assert headers["Content-Type"] == "image/png" and headers["Content-Length"] == "5000"
    assert headers["Cache-Control"] == "public, max-age=31536000, immutable"
    etag = headers["ETag"]
    status, headers, body = await get(cluster, path_of(media), method="HEAD")
    assert status == 200 and body == b"" and headers["Content-Length"] == "5000"
    assert (await get(cluster, path_of(media), **{"If-None-Match": etag}))[0] == 304
    status, headers, body = await get(cluster, path_of(media), Range="bytes=100-199")
    assert status == 206 and body == data[100:200] and headers["Content-Range"] == "bytes 100-199/5000"
    status, _, body = await get(cluster, path_of(media), Range="bytes=-10")
    assert status == 206 and body == data[-10:]
    status, headers, _ = await get(cluster, path_of(media), Range="bytes=6000-")
    assert status == 416 and headers["Content-Range"] == "bytes */5000"


@pytest.mark.parametrize("path", [
    "/", "/x/1/1,0123456789abcdef01234567", "/1/1/1", "/1/1/1,xyz", "/1/1/1,0123456789abcdef0123456",
    "/1/1/1,0123456789abcdef01234567_x", "/1/1/1,0123456789abcdef01234567/extra",
])
async def test_malformed_urls_are_400_never_500(cluster, path):
    status, _, body = await get(cluster, path)
    assert status == 400, body


async def test_unknown_wrong_cookie_and_deleted_photos_are_404(cluster):
    media = await upload(cluster, b"photo bytes")
    p = urls.parse_path(path_of(media))
    wrong_cookie = dataclasses.replace(p, needle=dataclasses.replace(p.needle, cookie=p.needle.cookie ^ 1))
    assert (await get(cluster, wrong_cookie.path()))[0] == 404
    unknown = dataclasses.replace(p, needle=NeedleRef(logical_volume=p.needle.logical_volume, key=p.needle.key + 1,
                                                      cookie=1))
    assert (await get(cluster, unknown.path()))[0] == 404
    assert (await get(cluster, path_of(media)))[0] == 200
    async with cluster.clients() as c:
        assert await c.media.delete(media.media_id, owner_id=media.owner_id)
        assert not await c.media.delete(media.media_id, owner_id=media.owner_id)
        with pytest.raises(NotFound) as info:
            await c.media.read(media.media_id)
        assert info.value.status == "NOT_FOUND"
    assert (await get(cluster, path_of(media)))[0] == 404


async def test_the_needle_carries_its_type_and_the_url_its_extension(cluster):
    png = await upload(cluster, b"png bytes", content_type="image/png")
    assert png.url.endswith(".png")
    status, headers, body = await get(cluster, path_of(png))
    assert status == 200 and body == b"png bytes" and headers["Content-Type"] == "image/png"
    # Only the URL that was issued serves: another extension, or none, was never handed out.
    stem = path_of(png).removesuffix(".png")
    assert [(await get(cluster, stem + ext))[0] for ext in (".jpg", "", ".mp4")] == [404, 404, 404]
    jpeg = await upload(cluster, b"jpeg bytes", content_type="Image/JPG; q=1")  # an alias, any case
    status, headers, _ = await get(cluster, path_of(jpeg))
    assert jpeg.url.endswith(".jpg") and status == 200 and headers["Content-Type"] == "image/jpeg"
    raw = await upload(cluster, b"raw bytes", content_type="application/octet-stream")
    assert "." not in raw.url.rsplit("/", 1)[1]
    status, headers, _ = await get(cluster, path_of(raw))
    assert status == 200 and headers["Content-Type"] == "application/octet-stream"
    async with cluster.clients() as c:  # the metadata names the same type
        assert (await c.media.stat(jpeg.media_id)).content_type == "image/jpeg"


async def test_grpc_read_streams_the_object_with_its_facts(cluster):
    data = os.urandom(3 * 1024 * 1024 + 7)
    media = await upload(cluster, data, content_type="video/mp4")
    async with cluster.clients() as c:
        facts, body = await c.media.read(media.media_id)
        assert facts.content_type == "video/mp4" and facts.media_id == media.media_id and body == data
        facts, body = await c.media.read(media.media_id, offset=10, length=20)
        assert facts.media_id == media.media_id and body == data[10:30]
        # How the stream is cut into messages (the typed client joins them) through the edge:
        stub, remote = c.pool.stub(router_pb2_grpc.MediaServiceStub, cluster.router.address), "router"

        def read(**fields):
            request = router_pb2.ReadRequest(ref=media_pb2.MediaRef(media_id=media.media_id), **fields)
            return rpc.stream_out(stub.Read, request, remote=remote, timeout=CALL_TIMEOUT_S)

        parts = [m async for m in read()]
        assert parts[0].media.content_type == "video/mp4" and b"".join(p.data for p in parts) == data
        assert len(parts) == 4 and not parts[1].HasField("media")
        window = [m async for m in read(offset=10, length=20)]
        assert b"".join(p.data for p in window) == data[10:30] and window[0].offset == 10


async def test_a_stampede_of_1000_reads_of_one_uncached_photo_is_one_store_read(cluster):
    media = await upload(cluster, os.urandom(20_000))
    p = urls.parse_path(path_of(media))
    before = await store_reads(cluster)
    async with cluster.clients() as c:
        cache = c.cache
        address = cluster.caches[0].address

        async def stats():
            return await rpc.unary(c.pool.stub(cache_pb2_grpc.CacheServiceStub, address).Stats,
                                   cache_pb2.CacheStatsRequest(), remote=f"cache {address}", timeout=CALL_TIMEOUT_S)

        was = await stats()
        replies = await asyncio.gather(*(cache.read(1, p.machine_id, p.needle, via_cdn=True) for _ in range(1000)))
        now = await stats()
    assert len({r.data for r in replies}) == 1
    assert await store_reads(cluster) - before == 1
    assert now.lease_grants - was.lease_grants == 1 and now.lease_waits - was.lease_waits >= 1


async def cache_read(cluster, media, via_cdn) -> CacheRead:
    """A read through cache 1 (cluster.caches[0]) of the needle behind ``media``'s URL."""
    p = urls.parse_path(path_of(media))
    async with cluster.clients() as c:
        return await c.cache.read(1, p.machine_id, p.needle, via_cdn=via_cdn)


async def cache_metric(cluster, name):
    async with harness.https_session() as session, session.get(cluster.caches[0].metrics_url) as r:
        text = await r.text()
    return sum(float(v) for v in re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)", text, re.MULTILINE))


async def test_admission_only_for_user_direct_reads_of_writable_volumes(cluster):
    via_cdn = await upload(cluster, b"a" * 1000)
    first = await cache_read(cluster, via_cdn, via_cdn=True)
    assert not first.hit and not first.admitted
    assert not (await cache_read(cluster, via_cdn, via_cdn=True)).hit  # never held
    direct = await upload(cluster, b"b" * 1000)
    assert (await cache_read(cluster, direct, via_cdn=False)).admitted
    again = await cache_read(cluster, direct, via_cdn=True)
    assert again.hit and again.data == b"b" * 1000
    # The gateway sets via_cdn from the CDN's header.
    before = await cache_metric(cluster, 'trenchcoat_cache_not_admitted_total{reason="via_cdn"}')
    third = await upload(cluster, b"e" * 1000)
    assert (await get(cluster, path_of(third), **{"X-Trenchcoat-Via-CDN": "1"}))[0] == 200
    assert await cache_metric(cluster, 'trenchcoat_cache_not_admitted_total{reason="via_cdn"}') == before + 1
    # A photo on a read-only volume is served, never admitted.
    old = await upload(cluster, b"c" * 1000)
    lv = urls.parse_path(path_of(old)).needle.logical_volume
    async with cluster.clients() as c:
        await c.directory.mark_read_only(lv, "test: read-only", repair=False)

        async def missed_and_not_admitted() -> CacheRead | None:
            # The cache's copy of the map follows the flip within a refresh or two: until then
            # a miss is admitted, so each try starts from a miss (the photo dropped first).
            await c.cache.invalidate(old.media_id)
            served = await cache_read(cluster, old, via_cdn=False)
            assert served.data == b"c" * 1000 and not served.hit
            return None if served.admitted else served

        await eventually(missed_and_not_admitted, what="a miss on the read-only volume served and not admitted")


async def test_a_dead_store_fails_over_to_the_next_replica(own_cluster):
    cluster = own_cluster
    media = await upload(cluster, b"d" * 4000)
    p = urls.parse_path(path_of(media))
    cluster.stores[p.machine_id].kill()
    status, _, body = await get(cluster, path_of(media), **{"X-Trenchcoat-Via-CDN": "1"})
    assert status == 200 and body == b"d" * 4000


def damage(cluster, machine_id: int, logical_volume: int, data: bytes) -> None:
    """Flips a byte in the middle of ``data`` where that store keeps it on disk."""
    path = cluster.data_dir / f"store-{machine_id}" / f"vol-{logical_volume}.dat"
    offset = path.read_bytes().rindex(data) + len(data) // 2
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(bytes([data[len(data) // 2] ^ 0xFF]))


async def test_a_miss_reads_the_store_over_http_and_damaged_bytes_are_never_served(cluster):
    data = os.urandom(30_000)
    media = await upload(cluster, data)
    p = urls.parse_path(path_of(media))
    lv = p.needle.logical_volume
    async with cluster.clients() as c:
        volume = await c.directory.volume(lv)
    assert all(r.http_address for r in volume.replicas), volume  # the map tells the cache where
    before = await cache_metric(cluster, "trenchcoat_cache_replica_failovers_total")
    damage(cluster, p.machine_id, lv, data)  # the replica the URL names
    status, _, body = await get(cluster, path_of(media), **{"X-Trenchcoat-Via-CDN": "1"})
    assert status == 200 and body == data  # from the next replica
    assert await cache_metric(cluster, "trenchcoat_cache_replica_failovers_total") == before + 1
    # Every copy damaged (another photo: the first one's good answer is kept for its lease period).
    data = os.urandom(30_000)
    again = await upload(cluster, data)
    q = urls.parse_path(path_of(again))
    async with cluster.clients() as c:
        other = await c.directory.volume(q.needle.logical_volume)
    for replica in other.replicas:
        damage(cluster, replica.machine_id, q.needle.logical_volume, data)
    status, _, body = await get(cluster, path_of(again), **{"X-Trenchcoat-Via-CDN": "1"})
    assert status == 502 and data not in body  # every copy failed verification: never wrong bytes


async def test_cdn_then_cache_then_store_over_real_http(cluster, tmp_path):
    """nginx as the pull CDN in front of the gateway, as `trenchcoat up` runs it (python -m
    trenchcoat.ops.cdn), counting what it serves from its own disk."""
    port, metrics_port = ports.free_port(), ports.free_port()
    gateway = cluster.gateway.removeprefix("https://")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRENCHCOAT_")} | {
        "PYTHONPATH": str(harness.REPO_ROOT), "TRENCHCOAT_CLUSTER__DATA_DIR": str(tmp_path),
        harness.TLS_DIR_KEY: str(harness.tls_dir()),
        "TRENCHCOAT_CDN__PORT": str(port), "TRENCHCOAT_CDN__METRICS_PORT": str(metrics_port),
        "TRENCHCOAT_CDN__CACHE_ENDPOINTS": gateway, "TRENCHCOAT_CDN__NOT_FOUND_TTL_S": "1",
        "TRENCHCOAT_CDN__MAX_BYTES": str(64 << 20)}
    cdn = dependencies.cdn_process(tmp_path / "logs" / "cdn.log", "127.0.0.1", port, metrics_port, env)
    cdn.start()
    try:
        cdn.wait_ready(30)
        data = os.urandom(30_000)
        media = await upload(cluster, data, content_type="image/jpeg")
        url = f"http://127.0.0.1:{port}{path_of(media)}"
        before = await store_reads(cluster)
        async with harness.https_session() as session:
            seen = []
            for _ in range(3):
                async with session.get(url) as r:
                    assert r.status == 200 and await r.read() == data
                    assert r.headers["Content-Type"] == "image/jpeg"
                    seen.append(r.headers["X-Cache-Status"])
            assert seen == ["MISS", "HIT", "HIT"]
            async with session.get(url, headers={"Range": "bytes=0-9"}) as r:
                assert r.status == 206 and await r.read() == data[:10]
            async with session.get(f"http://127.0.0.1:{port}/1/1/zzz") as r:
                assert r.status == 400
        assert await store_reads(cluster) - before == 1  # the CDN took every read after the first
        served = await cache_read(cluster, media, via_cdn=True)
        assert not served.hit  # the CDN's read was not admitted into the cache
        # Its metrics: one miss, three hits (the range read among them), the bad URL a miss
        # answered 400 by the cache; its health checks are not traffic.
        wanted = {("miss", "2xx"): 1.0, ("hit", "2xx"): 3.0, ("miss", "4xx"): 1.0}
        await eventually(lambda: cdn_requests(metrics_port, wanted), timeout=30, what="the CDN's request counts")
        assert cdn.stop() == 0  # SIGTERM: nginx finishes and the process exits cleanly
    finally:
        cdn.stop()


async def test_the_photo_port_answers_the_cdn_and_the_roles_that_may_read_over_mutual_tls_only(cluster):
    media = await upload(cluster, os.urandom(3000), content_type="image/jpeg")
    url = cluster.gateway + path_of(media)
    async with harness.https_session("cdn") as session, session.get(url, headers={"X-Trenchcoat-Via-CDN": "1"}) as r:
        assert r.status == 200
    async with harness.https_session("store") as session, session.get(url) as r:
        assert r.status == 403
        assert "role 'store' may not use the photo HTTP port (it answers admin, app, cdn, router)" in await r.text()
    await harness.assert_mutual_tls_only(url)


async def test_the_cdn_takes_up_a_rotated_certificate_without_a_restart(cluster, tmp_path):
    """The CDN starts with a certificate the caches refuse (another CA's): its reads fail
    (502); once its files hold one of the cluster's, nginx serves again, same process."""
    own, foreign = tmp_path / "tls", tmp_path / "foreign"
    tls.ensure(foreign, ["cdn"])
    own.mkdir()
    shutil.copy(harness.tls_dir() / tls.CA_FILE, own / tls.CA_FILE)
    for suffix in (".crt", ".key"):
        shutil.copy(foreign / f"cdn{suffix}", own / f"cdn{suffix}")
    port, metrics_port = ports.free_port(), ports.free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRENCHCOAT_")} | {
        "PYTHONPATH": str(harness.REPO_ROOT), "TRENCHCOAT_CLUSTER__DATA_DIR": str(tmp_path), harness.TLS_DIR_KEY: str(own),
        "TRENCHCOAT_CDN__PORT": str(port), "TRENCHCOAT_CDN__METRICS_PORT": str(metrics_port),
        "TRENCHCOAT_CDN__CACHE_ENDPOINTS": cluster.gateway.removeprefix("https://"), "TRENCHCOAT_CDN__TTL_S": "1"}
    cdn = dependencies.cdn_process(tmp_path / "cdn.log", "127.0.0.1", port, metrics_port, env)
    cdn.start()
    try:
        cdn.wait_ready(30)
        data = os.urandom(3000)
        url = f"http://127.0.0.1:{port}{path_of(await upload(cluster, data, content_type='image/jpeg'))}"
        pid = cdn.pid
        async with aiohttp.ClientSession() as session:
            async with session.get(url) as r:
                assert r.status == 502  # the cache refused the handshake
            for suffix in (".key", ".crt"):  # the key first, as tls.issue writes them
                shutil.copy(harness.tls_dir() / f"cdn{suffix}", own / f"cdn{suffix}")

            async def served() -> bool:
                async with session.get(url) as r:
                    return r.status == 200 and await r.read() == data

            await eventually(served, timeout=60, what="a read through the CDN with its new certificate")
        assert cdn.pid == pid and cdn.exit_code() is None
    finally:
        cdn.stop()


async def cdn_requests(metrics_port: int, wanted: dict[tuple[str, str], float]) -> bool:
    async with harness.https_session() as session, session.get(f"https://127.0.0.1:{metrics_port}/metrics") as r:
        text = await r.text()
    counts = {(s.labels["cache_status"], s.labels["code"]): s.value
              for family in text_string_to_metric_families(text) if family.name == "trenchcoat_cdn_requests"
              for s in family.samples if s.name == "trenchcoat_cdn_requests_total"}
    assert set(counts) <= set(wanted), f"unexpected CDN requests: {counts}"
    return counts == wanted


async def test_bad_grpc_reads_are_invalid_argument_or_not_found(cluster):
    address = cluster.caches[0].address
    async with cluster.clients() as c:
        stub = c.pool.stub(cache_pb2_grpc.CacheServiceStub, address)
        with pytest.raises(InvalidArgument) as info:
            await rpc.unary(stub.Read, cache_pb2.CacheReadRequest(machine_id=0), remote=f"cache {address}",
                            timeout=CALL_TIMEOUT_S)
        assert info.value.status == "INVALID_ARGUMENT"
        raw = c.pool.channel(address).unary_unary("/trenchcoat.v1.CacheService/Read")
        with pytest.raises(InvalidArgument) as info:
            await rpc.unary(raw, b"\xff\xff garbage", remote=f"cache {address}", timeout=CALL_TIMEOUT_S)
        assert info.value.status == "INVALID_ARGUMENT"
        with pytest.raises(NotFound) as missing:
            await c.media.read(12345)
        assert missing.value.status == "NOT_FOUND"
        media = await upload(cluster, b"x" * 10)
        with pytest.raises(OutOfRange) as info:  # an InvalidArgument whose status says precisely what
            await c.media.read(media.media_id, offset=11)
        assert info.value.status == "OUT_OF_RANGE"
        assert info.value.remote  # the router's answer, not the client's own check
