"""Hot -> warm on real processes: a sealed volume older than f4.warm_after_s is moved by
the Directory's leader into an f4 cell, turns warm, has its hot replicas freed, and every
photo URL issued before keeps serving the same bytes through the cache; a photo deleted
while hot stays deleted, one deleted while warm is 404 at once, and no block file ever
holds a photo's plaintext."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest

from f4 import codec
from tests import harness
from tests.cluster import MediaCluster, eventually, fresh_database, small_cell, writable_volumes
from tests.integration.test_f4_keystore import start_keystore
from tests.integration.test_f4_storage import start_node
from tests.integration.test_upload import path_of
from trenchcoat import urls
from trenchcoat.errors import NotFound
from trenchcoat.ops import ports

pytestmark = pytest.mark.integration

MARKER = b"WARM-PLAINTEXT-"


async def get(cluster, path):
    async with harness.https_session() as session, session.get(
            cluster.gateway + path, headers={"X-Trenchcoat-Via-CDN": "1"}) as r:
        return r.status, r.headers.get("Content-Type"), await r.read()


async def warm_cluster(service, etcd, postgres, tmp_path, **extra):
    """A media cluster with f4.migrate on, and an f4 cell: two storage nodes standing for
    14 failure domains, the key store, the front. Returns (cluster, start_front, keystore)."""
    node_ports = [ports.free_port() for _ in range(2)]
    keystore_port, front_port = ports.free_port(), ports.free_port()
    env = {
        "TRENCHCOAT_F4__MIGRATE": "true",
        "TRENCHCOAT_F4__WARM_AFTER_S": "2",
        "TRENCHCOAT_F4__FREE_AFTER_S": "2",
        **small_cell(front_port, [f"127.0.0.1:{p}" for p in node_ports], f"127.0.0.1:{keystore_port}"),
        **extra,
    }
    cluster = MediaCluster(service, tmp_path / "data", etcd.endpoint, postgres=await fresh_database(postgres.endpoint),
                           env=env)
    cluster.start_all(router=True)
    await eventually(lambda: writable_volumes(cluster, 2), what="2 writable volumes")
    domains = [f"rack-{i}" for i in range(codec.N)]
    for n, port in enumerate(node_ports):
        start_node(service, tmp_path / "f4", port, ports.free_port(), node_id=n + 1, domains=tuple(domains[n::2]))
    keystore = start_keystore(service, await fresh_database(postgres.endpoint), keystore_port, ports.free_port())

    return cluster, lambda: cluster.start_f4_front(front_port), keystore


async def upload_onto_one_volume(c, cluster, n: int, size: int) -> tuple[int, dict[str, tuple]]:
    """Uploads ``n`` photos; returns the volume most landed on and, for each photo there,
    path -> (media, content type, bytes as served)."""
    uploaded = []
    for i in range(n):
        kind = "image/png" if i % 3 else "image/jpeg"
        uploaded.append(await c.media.upload(MARKER + os.urandom(300 + size * i), owner_id=3, content_type=kind))
    lvs = [urls.parse_path(path_of(m)).needle.logical_volume for m in uploaded]
    lv = max(set(lvs), key=lvs.count)
    photos = {}
    for media in uploaded:
        if urls.parse_path(path_of(media)).needle.logical_volume == lv:
            status, kind, body = await get(cluster, path_of(media))
            assert status == 200
            photos[path_of(media)] = (media, kind, body)
    return lv, photos


async def test_a_sealed_volume_ages_into_f4_and_its_urls_keep_serving(service, etcd, postgres, tmp_path):
    cluster, start_front, _ = await warm_cluster(service, etcd, postgres, tmp_path)
    start_front()
    async with cluster.clients() as c:
        lv, photos = await upload_onto_one_volume(c, cluster, 30, 1500)
        hot_deleted, _ = next(iter(photos.items()))
        assert await c.media.delete(photos[hot_deleted][0].media_id, owner_id=photos[hot_deleted][0].owner_id)
        await eventually(lambda: _status_is(cluster, hot_deleted, 404), what="the hot delete everywhere")
        await c.directory.mark_read_only(lv, "test: sealed", repair=False)

        async def warm():
            return (await c.directory.locate(lv)).state == "warm"

        await eventually(warm, timeout=90, what=f"volume {lv} moving into f4")

        async def freed():
            return not (await c.directory.locate(lv)).replicas

        await eventually(freed, timeout=60, what=f"volume {lv}'s hot replicas freed")
        assert not list(cluster.data_dir.rglob(f"vol-{lv}.dat"))  # no store keeps a hot copy
        shown = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "trenchcoat", "warm"], env={
            **os.environ, **cluster.env, "PYTHONPATH": str(harness.REPO_ROOT),
            "TRENCHCOAT_DIRECTORY__ENDPOINTS": ",".join(cluster.directory_endpoints())},
            capture_output=True, text=True, timeout=60, check=False)
        assert shown.returncode == 0, shown.stderr
        [row] = [line for line in shown.stdout.splitlines() if line.split()[:2] == [str(lv), "warm"]]
        total = int(row.split()[3].split("/")[1])
        assert row.split()[3] == f"{total}/{total}" and total % codec.N == 0  # every block of every stripe healthy
        for path, (_, kind, body) in photos.items():
            if path == hot_deleted:
                assert (await get(cluster, path))[0] == 404  # deleted while hot: not brought back
                continue
            assert await get(cluster, path) == (200, kind, body)  # the URL issued before, unchanged
        # By media_id too: the facts of warm media name the tier and the very URLs that serve.
        ids = [m.media_id for m, _, _ in photos.values()]
        results = await c.media.batch_stat(ids)
        for (path, (media, _, body)), result in zip(photos.items(), results, strict=True):
            if path == hot_deleted:
                assert result.outcome == "deleted"
                continue
            assert result.outcome == "found" and result.media is not None
            assert result.media.tier == "warm" and path_of(result.media) == path
            assert await c.media.stat(media.media_id) == result.media
            read, data = await c.media.read(media.media_id)
            assert data == body and read.tier == "warm"
        warm_deleted = list(photos)[1]
        assert await c.media.delete(photos[warm_deleted][0].media_id, owner_id=photos[warm_deleted][0].owner_id)
        await eventually(lambda: _status_is(cluster, warm_deleted, 404), what="the warm delete")
        with pytest.raises(NotFound, match="was deleted"):
            await c.media.stat(photos[warm_deleted][0].media_id)
        assert cluster.router is not None
        await eventually(lambda: _no_deletes_pending(cluster.router), what="the delete journal drained")
    blocks = list((tmp_path / "f4").rglob("*.blk"))
    assert blocks and not any(MARKER in p.read_bytes() for p in blocks)


async def _no_deletes_pending(router) -> bool:
    async with harness.https_session() as session, session.get(router.metrics_url) as r:
        text = await r.text()
    return "\ntrenchcoat_router_deletes_pending 0.0" in text


async def _status_is(cluster, path, status):
    return (await get(cluster, path))[0] == status


async def encodes_in_flight(front) -> bool:
    async with harness.https_session() as session, session.get(front.metrics_url) as r:
        text = await r.text()
    return any(line.startswith("trenchcoat_grpc_in_flight_requests") and 'method="EncodeVolume"' in line
               and not line.endswith(" 0.0") for line in text.splitlines())


async def test_a_front_killed_mid_encode_loses_nothing_and_the_move_completes(service, etcd, postgres, tmp_path):
    cluster, start_front, keystore = await warm_cluster(service, etcd, postgres, tmp_path)
    front = start_front()
    async with cluster.clients() as c:
        lv, photos = await upload_onto_one_volume(c, cluster, 30, 1500)
        with keystore.frozen():  # the encode's first key request hangs: caught mid-encode
            await c.directory.mark_read_only(lv, "test: sealed", repair=False)
            await eventually(lambda: encodes_in_flight(front), timeout=60, what="the encode under way")
            front.kill()
        volume = await c.directory.locate(lv)  # (a directory's view may lag the leader's by a refresh)
        assert volume.state in ("read-only", "sealed") and len(volume.replicas) == 3  # not warm, nothing freed
        for path, (_, kind, body) in photos.items():
            assert await get(cluster, path) == (200, kind, body)  # served from the hot copies
        start_front()

        async def warm_and_freed():
            volume = await c.directory.locate(lv)
            return volume.state == "warm" and not volume.replicas

        await eventually(warm_and_freed, timeout=90, what="the move completed after the front came back")
        for path, (_, kind, body) in photos.items():
            assert await get(cluster, path) == (200, kind, body)
