"""No database on the read path: with PostgreSQL frozen (SIGSTOP on every process of it,
as a hung disk or a partition looks) and then stopped, every photo already stored still
serves byte-exact through the CDN and straight from its cache, whether the cache holds
it or must read a store; uploads, which do need the database, fail with UNAVAILABLE
naming it. The router outlives the outage (it once stopped itself when its delete
journal met the stopped database) and uploads again once PostgreSQL is back."""

from __future__ import annotations

import os

import aiohttp
import pytest

from tests import harness
from tests.cluster import eventually, full_media_cluster
from tests.integration.test_upload import path_of
from trenchcoat import tls
from trenchcoat.errors import Unavailable
from trenchcoat.ops import dependencies, ports

pytestmark = pytest.mark.integration


@pytest.fixture
def private_postgres():
    """A PostgreSQL of this test's own: it is frozen and stopped here."""
    dep = harness.start_postgres()
    yield dep
    dep.stop()


async def read_all(session: aiohttp.ClientSession, base: str, photos: dict[str, bytes], **headers: str) -> list[str]:
    """What went wrong reading every photo from ``base`` (empty: each was 200 and byte-exact)."""
    wrong = []
    for path, data in photos.items():
        async with session.get(base + path, headers=headers) as r:
            body = await r.read()
            if r.status != 200 or body != data:
                wrong.append(f"{base}{path}: {r.status}, {len(body)} bytes")
    return wrong


async def upload_is_unavailable_naming_postgres(cluster) -> None:
    async with cluster.clients() as c:
        with pytest.raises(Unavailable) as info:
            await c.media.upload(b"new photo", owner_id=1, content_type="image/jpeg")
    assert info.value.status == "UNAVAILABLE" and "PostgreSQL" in str(info.value), info.value


async def test_every_stored_photo_serves_with_postgres_frozen_then_stopped(service, etcd, private_postgres,
                                                                           tmp_path):
    cluster = await full_media_cluster(service, etcd, private_postgres, tmp_path)
    port = ports.free_port()
    cdn = dependencies.nginx_process(tmp_path / "cdn", tmp_path / "logs" / "cdn.log", "127.0.0.1", port,
                              [g.removeprefix("https://") for g in cluster.gateways()],
                                     ttl_s=60, not_found_ttl_s=1, max_bytes=64 << 20,
                                     identity=tls.Identity(harness.tls_dir(), "cdn"))
    cdn.start()
    try:
        cdn.wait_ready(30)
        photos: dict[str, bytes] = {}
        async with cluster.clients() as c:
            for i in range(12):
                data = os.urandom(2000 + i)
                photos[path_of(await c.media.upload(data, owner_id=i + 1, content_type="image/jpeg"))] = data
        cdn_base, cache_base = f"http://127.0.0.1:{port}", cluster.gateway
        # Some are in the cache's memory (read user-direct), some in the CDN's, some in neither.
        async with harness.https_session() as session:
            held = dict(list(photos.items())[:4])
            on_cdn = dict(list(photos.items())[4:8])
            assert await read_all(session, cache_base, held) == []
            assert await read_all(session, cdn_base, on_cdn) == []

            with private_postgres.frozen():
                assert await read_all(session, cache_base, photos) == []
                assert await read_all(session, cache_base, photos, **{"X-Trenchcoat-Via-CDN": "1"}) == []
                assert await read_all(session, cdn_base, photos) == []
                await upload_is_unavailable_naming_postgres(cluster)

            private_postgres.process.stop()
            assert await read_all(session, cache_base, photos, **{"X-Trenchcoat-Via-CDN": "1"}) == []
            assert await read_all(session, cdn_base, photos) == []
            await upload_is_unavailable_naming_postgres(cluster)

            private_postgres.process.start()
            private_postgres.process.wait_ready(60)
            assert cluster.router is not None
            assert cluster.router.process.running() and cluster.router.health() == "SERVING", \
                cluster.router.process.log_tail(30)
            async with cluster.clients() as c:
                data = os.urandom(3000)

                async def uploaded():
                    return await c.media.upload(data, owner_id=99, content_type="image/jpeg")

                media = await eventually(uploaded, timeout=60, what="an upload once PostgreSQL is back")
                assert (await c.media.read(media.media_id))[1] == data
    finally:
        cdn.stop()
