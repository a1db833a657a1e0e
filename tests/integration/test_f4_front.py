"""The f4 front against a real hot cluster: a sealed volume's live photos encoded into a
cell (two storage node processes standing for seven failure domains each, the key store
on PostgreSQL), every one read back byte-exact with its type, a photo deleted while hot
not brought back, a warm delete NOT_FOUND at once, and a writable volume refused."""

from __future__ import annotations

import os

import pytest

from f4 import codec
from tests import harness
from tests.cluster import eventually, fresh_database, full_media_cluster
from tests.integration.test_f4_keystore import start_keystore
from tests.integration.test_f4_storage import start_node
from tests.integration.test_upload import path_of
from trenchcoat import urls
from trenchcoat.clients.f4 import F4Client
from trenchcoat.errors import FailedPrecondition, NotFound
from trenchcoat.ops import ports

pytestmark = pytest.mark.integration

TIMEOUT_S = 30.0


def start_front(service, cluster, storage, keystore):
    port, mport = ports.free_port(), ports.free_port()
    return service("f4", harness.python_module("f4"), port=port, metrics_port=mport, env={
        **cluster.env,
        "TRENCHCOAT_CLUSTER__DATA_DIR": str(cluster.data_dir),
        "TRENCHCOAT_ETCD__ENDPOINTS": cluster.etcd,
        "TRENCHCOAT_F4__PORT": str(port), "TRENCHCOAT_F4__METRICS_PORT": str(mport),
        "TRENCHCOAT_F4__COUNT": "1",
        "TRENCHCOAT_F4__DRAIN_NOTICE_S": "0",
        "TRENCHCOAT_F4__STORAGE_ENDPOINTS": ",".join(p.address for p in storage),
        "TRENCHCOAT_F4__KEYSTORE_ENDPOINT": keystore.address,
        "TRENCHCOAT_F4__CELL_BYTES": str(16 * 1024),
        "TRENCHCOAT_F4__ROWS": "8",
        "TRENCHCOAT_DIRECTORY__ENDPOINTS": ",".join(cluster.directory_endpoints()),
    })


async def test_a_sealed_volume_is_encoded_and_every_live_photo_reads_back(service, etcd, postgres, tmp_path):
    cluster = await full_media_cluster(service, etcd, postgres, tmp_path)
    domains = [f"rack-{i}" for i in range(codec.N)]
    storage = [start_node(service, tmp_path / "f4", node_id=n + 1, domains=tuple(domains[n::2])) for n in range(2)]
    keystore = start_keystore(service, await fresh_database(postgres.endpoint), ports.free_port(), ports.free_port())
    front = start_front(service, cluster, storage, keystore)
    async with cluster.clients() as c:
        photos = {}
        for i in range(40):
            media = await c.media.upload(os.urandom(500 + 997 * i), owner_id=7,
                                         content_type="image/png" if i % 2 else "image/jpeg")
            photos[media.media_id] = (media, urls.parse_path(path_of(media)).needle)
        lv = max({n.logical_volume for _, n in photos.values()},
                 key=lambda v: sum(n.logical_volume == v for _, n in photos.values()))
        mine = {m: (media, n) for m, (media, n) in photos.items() if n.logical_volume == lv}
        gone, (_, gone_needle) = next(iter(mine.items()))
        assert await c.media.delete(gone, owner_id=7)  # deleted while hot: its needle is flagged on every replica
        warm = F4Client(c.pool, front.address, timeout_s=TIMEOUT_S)
        with pytest.raises(FailedPrecondition, match="only a sealed"):
            await warm.encode_volume(lv)
        await c.directory.mark_read_only(lv, "test: sealed for f4", repair=False)
        encoded = await eventually(lambda: warm.encode_volume(lv), what="the encode of the sealed volume")
        assert encoded.blobs == len(mine) - 1
        assert encoded.stored_bytes / encoded.logical_bytes < 1.5
        for media_id, (media, needle) in mine.items():
            if media_id == gone:
                continue
            blob = await warm.read_blob(needle)
            status, _, body = await _get(cluster, path_of(media))
            assert blob.data == body and status == 200  # the hot copy, still there, agrees
            assert blob.content_type == ("image/png" if media.url.endswith(".png") else "image/jpeg")
        with pytest.raises(NotFound):
            await warm.read_blob(gone_needle)
        blocks = await warm.volume_status(lv)
        assert len(blocks) == codec.N * encoded.stripes and all(b.healthy for b in blocks)
        assert len({b.domain for b in blocks if b.block.stripe == 0}) == codec.N
        victim, (_, victim_needle) = list(mine.items())[1]
        assert await warm.delete_blob(victim) == 1
        with pytest.raises(NotFound):
            await warm.read_blob(victim_needle)


async def _get(cluster, path):

    async with harness.https_session() as session, session.get(cluster.gateway + path) as r:
        return r.status, r.headers, await r.read()
