"""``trenchcoat migrate VOLUME`` on real processes: with f4.warm_after_s so large that
nothing ages into f4 on its own, a young writable volume asked for is turned read-only,
moved into the f4 cell by the leader and freed, and its photos still read back byte-exact
through the cache; the other volumes stay hot. Asking again answers its state; an unknown
volume is NOT_FOUND; a volume under repair, or a directory without f4.migrate, is
FAILED_PRECONDITION saying why, and the command exits 1 with that message."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest

from tests import harness
from tests.cluster import MediaCluster, eventually, writable_volumes
from tests.fault.test_f4_migration import (
    MARKER,
    get,
    upload_onto_one_volume,
    warm_cluster,
)
from trenchcoat import rpc, urls
from trenchcoat.clients.directory import DirectoryClient
from trenchcoat.errors import FailedPrecondition, NotFound

pytestmark = pytest.mark.integration

NEVER_S = "1e9"
"""f4.warm_after_s: no volume in these tests is ever old enough to move on its own."""


async def trenchcoat(cluster: MediaCluster, *args: str, directories: list[str] | None = None
                     ) -> subprocess.CompletedProcess[str]:
    """Runs the ``trenchcoat`` command against ``cluster`` (its directories, or those given)."""
    endpoints = ",".join(directories or cluster.running_directories())
    return await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "trenchcoat", *args], env={
        **os.environ, **cluster.env, "PYTHONPATH": str(harness.REPO_ROOT),
        "TRENCHCOAT_DIRECTORY__ENDPOINTS": endpoints},
        capture_output=True, text=True, timeout=60, check=False)


async def test_migrate_moves_a_young_volume_into_f4_and_its_photos_keep_serving(service, etcd, postgres, tmp_path):
    cluster, start_front, _ = await warm_cluster(service, etcd, postgres, tmp_path,
                                                 TRENCHCOAT_F4__WARM_AFTER_S=NEVER_S)
    start_front()
    async with cluster.clients() as c:
        lv, photos = await upload_onto_one_volume(c, cluster, 12, 1500)
        assert (await c.directory.locate(lv)).state == "writable"  # young, not full: it would stay hot

        asked = await trenchcoat(cluster, "migrate", str(lv))
        assert asked.returncode == 0, asked.stderr
        # Read-only as recorded (or already sealed, if the leader was quicker than the answer).
        assert asked.stdout.strip() in (f"volume {lv}: read-only, moving into f4; watch `trenchcoat warm`",
                                        f"volume {lv}: sealed, being encoded into f4; watch `trenchcoat warm`")

        async def warm_and_freed():
            volume = await c.directory.locate(lv)
            return volume.state == "warm" and not volume.replicas

        await eventually(warm_and_freed, timeout=120, what=f"volume {lv} moved into f4 and its hot replicas freed")
        for path, (_, kind, body) in photos.items():
            assert await get(cluster, path) == (200, kind, body)  # the same URL, the same bytes, from f4
        moved = [v.id for v in await c.directory.list_volumes() if v.state in ("sealed", "warm")]
        assert moved == [lv]  # nothing else aged into f4

        again = await c.directory.migrate_volume(lv)  # idempotent: answers where it stands
        assert again.state == "warm" and not again.replicas
        shown = await trenchcoat(cluster, "migrate", str(lv))
        assert shown.returncode == 0 and shown.stdout.strip() == f"volume {lv}: already warm, in f4 (hot replicas freed)"

        with pytest.raises(NotFound) as info:
            await c.directory.migrate_volume(999_999)
        assert "logical volume 999999 does not exist" in str(info.value)
        missing = await trenchcoat(cluster, "migrate", "999999")
        assert missing.returncode == 1 and "logical volume 999999 does not exist" in missing.stderr


async def test_migrate_is_refused_for_a_volume_under_repair_and_by_a_directory_without_f4_migrate(
        service, etcd, tmp_path):
    cluster = MediaCluster(service, tmp_path / "data", etcd.endpoint,
                           env={"TRENCHCOAT_F4__MIGRATE": "true", "TRENCHCOAT_F4__WARM_AFTER_S": NEVER_S})
    cluster.start_all()
    [volume, *_] = await eventually(lambda: writable_volumes(cluster, 2), what="2 writable volumes")
    replica = cluster.stores[volume.replicas[0].machine_id]
    assert replica is not None
    replica.kill()
    async with cluster.clients() as c:

        async def flipped_for_repair():
            # The pitchfork's doing: a replica's store is down, so the copies may differ.
            return (await c.directory.locate(volume.id)).state == "read-only"

        await eventually(flipped_for_repair, timeout=60, what=f"volume {volume.id} read-only for repair")
        with pytest.raises(FailedPrecondition) as info:
            await c.directory.migrate_volume(volume.id)
        assert f"logical volume {volume.id} is under repair" in str(info.value)
        assert (await c.directory.locate(volume.id)).state == "read-only"  # nothing was recorded

        cluster.env = {**cluster.env, "TRENCHCOAT_F4__MIGRATE": "false"}
        off = cluster.start_directory()
        async with rpc.ChannelPool() as pool:
            with pytest.raises(FailedPrecondition) as info:
                await DirectoryClient(pool, [off.address], timeout_s=10.0).migrate_volume(volume.id)
        assert "set f4.migrate = true" in str(info.value)
        refused = await trenchcoat(cluster, "migrate", str(volume.id), directories=[off.address])
        assert refused.returncode == 1 and "set f4.migrate = true" in refused.stderr, refused.stderr


async def test_renditions_move_into_f4_with_their_volume_and_keep_serving(service, etcd, postgres, tmp_path):
    cluster, start_front, _ = await warm_cluster(service, etcd, postgres, tmp_path,
                                                 TRENCHCOAT_F4__WARM_AFTER_S=NEVER_S)
    start_front()
    async with cluster.clients() as c:
        originals = [await c.media.upload(MARKER + os.urandom(2000 + i), owner_id=4, content_type="image/jpeg")
                     for i in range(4)]
        renditions = {}
        for media in originals:  # as the transformer stores them: needles of their own, any writable volume
            for key in (1, 2):
                r, created = await c.media.put_rendition(media.media_id, key, content_type="image/webp", width=10,
                                                         height=10, data=MARKER + os.urandom(700 + key))
                assert created
                renditions[urls.parse_path("/" + r.url.split("/", 3)[3])] = r
        lv = next(iter(renditions)).needle.logical_volume  # a volume holding renditions
        here = {p: r for p, r in renditions.items() if p.needle.logical_volume == lv}
        served = {}
        for p in here:
            path = "/" + here[p].url.split("/", 3)[3]
            status, kind, body = await get(cluster, path)
            assert (status, kind) == (200, "image/webp")
            served[path] = body
        assert (await trenchcoat(cluster, "migrate", str(lv))).returncode == 0

        async def warm_and_freed():
            volume = await c.directory.locate(lv)
            return volume.state == "warm" and not volume.replicas

        await eventually(warm_and_freed, timeout=120, what=f"volume {lv} moved into f4 and its hot replicas freed")
        for path, body in served.items():
            assert await get(cluster, path) == (200, "image/webp", body)  # the same URL, now read from f4
        # A delete of the media takes its warm renditions too (their keys discarded).
        victim = next(iter(here.values()))
        media_id = urls.parse_path("/" + victim.url.split("/", 3)[3]).needle.key
        assert await c.media.delete(media_id, owner_id=(await c.media.stat(media_id)).owner_id)
        status, _, _ = await get(cluster, "/" + victim.url.split("/", 3)[3])
        assert status == 404
