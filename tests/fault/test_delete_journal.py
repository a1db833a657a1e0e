"""Deletes are enforced where the bytes are, from a durable journal: a replica down at
the time of a delete is flagged when it comes back, even if the router that took the
delete died meanwhile, and no repair (even one copying from that replica before it was
flagged) brings the photo back."""

from __future__ import annotations

import dataclasses
import functools
import os

import asyncpg
import pytest

from tests import harness
from tests.cluster import eventually, full_media_cluster
from tests.integration.test_upload import path_of
from trenchcoat import urls
from trenchcoat.errors import FailedPrecondition, NeedleNotFound

pytestmark = pytest.mark.integration


@pytest.fixture
async def cluster(service, etcd, postgres, tmp_path):
    return await full_media_cluster(service, etcd, postgres, tmp_path)


async def journal(cluster) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(cluster.postgres)
    try:
        return await conn.fetch("SELECT * FROM delete_journal")
    finally:
        await conn.close()


async def status_of(url: str) -> int:
    async with harness.https_session() as session, session.get(url) as r:
        await r.read()
        return r.status


async def test_a_delete_reaches_a_replica_that_was_down_and_survives_repairs_from_it(cluster):
    data = os.urandom(3000)
    async with cluster.clients() as c:
        media = await c.media.upload(data, owner_id=9, content_type="image/jpeg")
        keep = await c.media.upload(os.urandom(2000), owner_id=9, content_type="image/jpeg")
    path = urls.parse_path(path_of(media))
    volume = next(v for v in await cluster.volumes() if v.id == path.needle.logical_volume)
    down = path.machine_id  # the replica the URL names: the cache asks it first
    others = [r for r in volume.replicas if r.machine_id != down]
    address = {r.machine_id: r.address for r in volume.replicas}
    rack = ("a", "b", "c")[(down - 1) % 3]  # as full_media_cluster placed it

    cluster.stores[down].kill()
    async with cluster.clients() as c:
        assert await c.media.delete(media.media_id, owner_id=media.owner_id)  # answered with a replica down
    # Served from nowhere: the cache fails over from the dead replica to flagged ones.
    assert await status_of(cluster.gateway + path_of(media)) == 404
    assert [r["media_id"] for r in await journal(cluster)] != []  # the dead replica is still owed its flag
    # The router that took the delete dies before it can retry; the replica comes back
    # with its unflagged copy.
    cluster.router.kill()
    cluster.start_store(down, rack)

    async def repaired_from_the_once_down_replica(target: str) -> bool:
        async with cluster.clients() as c:
            try:
                await c.store.repair(target, volume.id, address[down])
            except FailedPrecondition:  # the leader is repairing it right now: again
                return False
        return True

    async with cluster.clients() as c:
        for replica in others:
            await eventually(functools.partial(repaired_from_the_once_down_replica, replica.address), timeout=60,
                             what=f"a repair of store {replica.machine_id} from store {down}")
            with pytest.raises(NeedleNotFound):  # the copy it replaced had the flag: kept
                await c.store.read(replica.address, path.needle)
            kept = urls.parse_path(path_of(keep)).needle
            if kept.logical_volume == volume.id:
                assert (await c.store.read(replica.address, kept)).data  # the repair copied the rest

    # A router again: the journal flags the replica that was down, then is empty.
    cluster.start_router()
    await eventually(lambda: _empty(cluster), timeout=60, what="the delete journal to empty")
    async with cluster.clients() as c:
        for replica in volume.replicas:
            with pytest.raises(NeedleNotFound):
                await c.store.read(replica.address, path.needle)
    for replica in volume.replicas:  # whichever replica a URL names, it is gone
        named = dataclasses.replace(path, machine_id=replica.machine_id)
        assert await status_of(cluster.gateway + named.path()) == 404


async def _empty(cluster) -> bool:
    return not await journal(cluster)
