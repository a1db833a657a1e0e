"""An acknowledged upload always reads back, even when the cache's copy of the volume map
is behind the router's.

The router and the cache each keep a copy of the volume map fed by a directory's
WatchVolumes stream, and the two copies move independently: they may follow different
directory processes (each starts with whichever answers first), and a directory that is
stalled (starved of CPU, paused, partitioned) stops its subscribers' copies while the
others move on. Here the stall is made deterministic: the cache follows directory 2,
the router directory 1, and directory 2 is frozen with SIGSTOP before the leader grows
new volumes. The router uploads onto a volume the cache has never heard of; the read
must still find the photo. The second test starts the cache before any directory
answers, as ``trenchcoat up`` does on a loaded machine.
"""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from tests import harness
from tests.cluster import (
    DIRECTORY_TIMEOUT_S,
    MediaCluster,
    eventually,
    fresh_database,
    writable_volumes,
)
from trenchcoat import rpc
from trenchcoat.clients.directory import DirectoryClient
from trenchcoat.clients.media import Media, MediaClient
from trenchcoat.errors import TrenchcoatError
from trenchcoat.ops import ports, processes

pytestmark = pytest.mark.integration


async def _upload(router: str, data: bytes) -> Media:
    async with rpc.ChannelPool() as pool:
        return await MediaClient(pool, router).upload(data, owner_id=9, content_type="image/jpeg")


async def _get(url: str) -> tuple[int, bytes]:
    async with harness.https_session() as session, session.get(url) as response:
        return response.status, await response.read()


async def test_a_photo_on_a_volume_the_cache_has_not_seen_yet_reads_back(service, etcd, postgres, tmp_path):
    cluster = MediaCluster(service, tmp_path / "data", etcd.endpoint, postgres=await fresh_database(postgres.endpoint))
    cluster.start_all(directories=2, router=False)
    await eventually(lambda: writable_volumes(cluster, 2), what="2 writable volumes")
    one, two = cluster.directory_endpoints()
    cluster.directory_ports.reverse()  # the cache streams from the first endpoint it is given
    cluster.start_cache()
    cluster.directory_ports.reverse()
    router = cluster.start_router()

    before = os.urandom(3000)
    media = await _upload(router.address, before)
    assert await _get(cluster.gateway + "/" + media.url.split("/", 3)[3]) == (200, before)

    frozen = cluster.directories[1]
    assert frozen is not None and frozen.address == two
    pid = frozen.process.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    try:
        async with rpc.ChannelPool() as pool:
            directory = DirectoryClient(pool, [one], timeout_s=DIRECTORY_TIMEOUT_S)  # never the frozen one
            known = {v.id for v in await directory.list_volumes()}
            for volume_id in known:  # the leader (directory 1 once 2 is frozen) grows new ones
                await directory.mark_read_only(volume_id, "test", repair=False)

        async def upload_onto_a_new_volume():
            try:
                m = await _upload(router.address, after)
            except TrenchcoatError:
                return None  # no writable volume yet: the leader is still growing them
            return m if int(m.url.split("/")[-1].split(",")[0]) not in known else None

        after = os.urandom(3000)
        media = await eventually(upload_onto_a_new_volume, timeout=60, what="an upload onto a new volume")
        status, body = await _get(cluster.gateway + "/" + media.url.split("/", 3)[3])
        assert (status, body == after) == (200, True), f"acknowledged upload {media.url} answered {status}"
    finally:
        os.kill(pid, signal.SIGCONT)


async def test_a_cache_started_before_the_directories_never_answers_404_for_an_acknowledged_upload(
        service, etcd, postgres, tmp_path):
    """``trenchcoat up`` starts every service at once; on a loaded machine the directories
    (which load their map from etcd first) answer seconds after the cache asked, and the
    cache's first copy of the map arrives later still. Before the fix every read of a photo
    in that window answered 404, and the cache's lease kept the 404 for 10 s."""
    cluster = MediaCluster(service, tmp_path / "data", etcd.endpoint, postgres=await fresh_database(postgres.endpoint))
    for _ in range(2):  # the directories' ports are known, nothing listens there yet
        cluster.directory_ports.append((ports.free_port(), ports.free_port()))
        cluster.directories.append(None)
    cache = cluster.start_cache(wait=False)

    async def up_without_a_map() -> bool:  # its server answers; it is not ready (no map yet)
        return processes.grpc_health(cache.address) == "NOT_SERVING"

    await eventually(up_without_a_map, what="the cache up, waiting for a directory")  # before any directory
    launched = [cluster.start_directory(i, wait=False) for i in range(2)]
    launched += [cluster.start_store(machine, "abc"[machine - 1], wait=False) for machine in range(1, 4)]
    router = cluster.start_router(wait=False)
    launched.append(router)
    harness.wait_all(launched)
    await eventually(lambda: writable_volumes(cluster, 2), what="2 writable volumes")
    data = os.urandom(3000)

    async def uploaded() -> Media | None:
        try:
            return await _upload(router.address, data)
        except TrenchcoatError:
            return None

    media = await eventually(uploaded, what="an acknowledged upload")
    url = cluster.gateway + "/" + media.url.split("/", 3)[3]
    answers = []
    deadline = asyncio.get_running_loop().time() + 60
    while asyncio.get_running_loop().time() < deadline:
        status, body = await _get(url)
        answers.append(status)
        assert status != 404, f"acknowledged upload {media.url} answered 404 (answers so far: {answers})"
        if status == 200:
            assert body == data
            break
        assert status == 503  # the cache cannot reach a directory yet: retryable, never "does not exist"
        await asyncio.sleep(0.2)
    assert answers[-1] == 200, answers
