"""A media cluster with cluster.tls_dir set (issue 25, first part): every gRPC hop is mutual
TLS (directory, stores, cache, router, and the test's own clients as the admin identity);
uploads, reads, stats and deletes work through it, and a plaintext caller is refused by
every server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster import full_media_cluster
from tests.integration.test_upload import read_from_every_replica
from trenchcoat import rpc, tls
from trenchcoat.clients.store import StoreClient
from trenchcoat.errors import NotFound, PermissionDenied, Unavailable
from trenchcoat.needle_ref import NeedleRef

pytestmark = pytest.mark.integration


@pytest.fixture
def tls_dir(tmp_path: Path) -> Iterator[Path]:
    """The cluster's CA and identities, and this test process calling as ``admin``."""
    directory = tmp_path / "tls"
    tls.ensure(directory)
    rpc.use_tls(tls.ClientTls(tls.Identity(directory, "admin")))
    try:
        yield directory
    finally:
        rpc.use_tls(None)


async def test_a_cluster_with_tls_serves_every_call_over_mutual_tls_and_refuses_plaintext(
        service, etcd, postgres, tmp_path, tls_dir):
    cluster = await full_media_cluster(service, etcd, postgres, tmp_path,
                                       env={"TRENCHCOAT_CLUSTER__TLS_DIR": str(tls_dir)})
    data = b"\xff\xd8" + bytes(range(256)) * 40
    async with cluster.clients() as c:
        media = await c.media.upload(data, owner_id=2501, content_type="image/jpeg")
        copies, volume = await read_from_every_replica(c, media)  # the test's store client, over TLS
        assert copies == [data] * 3
        assert (await c.media.read(media.media_id))[1] == data  # router -> cache -> store
        assert (await c.media.stat(media.media_id)).url == media.url
        assert await c.media.delete(media.media_id)
        with pytest.raises(NotFound):
            await c.media.read(media.media_id)
    servers = {"router": cluster.router, "directory": cluster.directories[0],
               **{f"store-{m}": p for m, p in cluster.stores.items()}}
    async with rpc.ChannelPool(tls=False) as plaintext:
        for name, process in servers.items():
            assert process is not None
            with pytest.raises(Unavailable):
                await rpc.health(plaintext, process.address, remote=name, timeout=10)
    async with rpc.ChannelPool() as pool:  # the same servers answer the admin identity
        for name, process in servers.items():
            assert process is not None
            assert await rpc.health(pool, process.address, remote=name, timeout=10) == "SERVING"
        # ... within the permission table: an operator neither writes needles nor frees volumes.
        store = StoreClient(pool, timeout_s=10)
        some = volume.replicas[0].address
        with pytest.raises(PermissionDenied, match=r"role 'admin' may not call /trenchcoat\.v1\.StoreService/FreeVolume"):
            await store.free_volume(some, volume.id)
        with pytest.raises(PermissionDenied, match="WriteNeedle"):
            await store.write(some, NeedleRef(logical_volume=volume.id, key=1, cookie=1), b"x")
    # The cache's certificate may read needles but not write them.
    async with rpc.ChannelPool(tls=tls.ClientTls(tls.Identity(tls_dir, "cache"))) as as_cache:
        store = StoreClient(as_cache, timeout_s=10)
        with pytest.raises(PermissionDenied, match=r"role 'cache' may not call /trenchcoat\.v1\.StoreService/WriteNeedle"):
            await store.write(some, NeedleRef(logical_volume=volume.id, key=2, cookie=1), b"x")
    assert volume.id > 0
