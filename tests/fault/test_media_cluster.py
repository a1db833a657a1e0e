"""Faults in a whole media cluster of real processes: a store killed mid-upload-run, the
leader directory killed, etcd stopped until every directory and store has met it, then
started again."""

from __future__ import annotations

import asyncio
import hashlib
import shutil

import pytest

from tests.cluster import DIRECTORY_TIMEOUT_S, eventually, full_media_cluster
from tests.integration.test_upload import read_from_every_replica
from trenchcoat.clients.directory import DirectoryClient
from trenchcoat.errors import TrenchcoatError

pytestmark = pytest.mark.integration


@pytest.fixture
async def cluster(service, etcd, postgres, tmp_path):
    """A directory, 3 stores on 3 racks, a cache and a router."""
    return await full_media_cluster(service, etcd, postgres, tmp_path, directories=1, stores=3)


def blob(i: int) -> bytes:
    return hashlib.sha256(str(i).encode()).digest() * 32  # 1 KiB, distinct per upload


async def upload_run(media, count: int, concurrency: int, during=None):
    """Uploads ``count`` blobs through the MediaClient ``media``; returns
    ({i: Media} acknowledged, [(i, status, message)])."""
    acked, errors = {}, []
    counter = iter(range(count))

    async def worker():
        for i in counter:
            if during is not None and i == count // 4:
                during()
            try:
                acked[i] = await media.upload(blob(i), owner_id=i % 100 + 1, content_type="image/jpeg")
            except TrenchcoatError as exc:
                errors.append((i, exc.status, str(exc)))

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return acked, errors


async def all_replicas_match(c):
    volumes = await c.volumes()
    return all(v.state == "writable" or v.used_bytes >= 0.95 * v.capacity_bytes for v in volumes) \
        and all(r.alive for v in volumes for r in v.replicas)


async def test_kill_9_a_store_mid_run_then_every_acked_upload_is_on_every_replica(service, etcd, postgres,
                                                                                  tmp_path):
    # Six stores: volumes without the killed one exist for the uploads to go on to.
    cluster = await full_media_cluster(service, etcd, postgres, tmp_path, directories=1, stores=6)
    victim = 2
    store = cluster.stores[victim]
    assert store is not None
    async with cluster.clients() as c:
        acked, errors = await upload_run(c.media, 600, 16, during=store.kill)
    # Uploads kept succeeding: a failed replica write retried on a volume without the store.
    assert len(acked) >= 590, (len(acked), len(errors), errors[:5])
    assert all(status == "UNAVAILABLE" for _, status, _ in errors), errors[:5]
    cluster.start_store(victim, "b")  # same disk, back after the crash
    await eventually(lambda: all_replicas_match(cluster), timeout=60, what="repair of every volume")
    await eventually(lambda: on_every_replica(cluster, acked), timeout=30, what="every acked upload everywhere")
    for v in await cluster.volumes():  # the placement invariant, over every volume
        assert len({r.rack for r in v.replicas}) == len(v.replicas) == 3, v


async def test_a_store_back_with_an_empty_disk_is_refilled_from_its_peers(cluster):
    async with cluster.clients() as c:
        acked, errors = await upload_run(c.media, 200, 8)
    assert not errors
    cluster.stores[3].kill()
    shutil.rmtree(cluster.data_dir / "store-3")  # the disk is replaced
    cluster.start_store(3, "c")  # same machine id, empty disk: waits out the old lease
    await eventually(lambda: on_every_replica(cluster, acked), timeout=60, what="the refill of store 3")
    await eventually(lambda: all_replicas_match(cluster), timeout=60, what="every volume writable again")


async def on_every_replica(cluster, acked):
    async with cluster.clients() as c:
        try:
            for i, media in acked.items():
                copies, _ = await read_from_every_replica(c, media)
                if copies != [blob(i)] * 3:
                    return False
        except TrenchcoatError:
            return False
    return True


async def test_kill_9_the_leader_and_the_other_takes_over_and_grows(service, etcd, postgres, tmp_path):
    cluster = await full_media_cluster(service, etcd, postgres, tmp_path, directories=2, stores=3)
    _, first = await eventually(cluster.leader, what="a leader")
    leader = next(p for p in cluster.directories if p is not None and p.address == first)
    leader.kill()
    _, second = await eventually(lambda: _other_leader(cluster, first), timeout=30, what="a new leader")
    assert second != first
    # Growth continues under the new leader: retire the writable volumes, see new ones.
    before = {v.id for v in await cluster.volumes()}
    async with cluster.clients() as c:
        for v in await cluster.volumes():
            await c.directory.mark_read_only(v.id, "test: retire", repair=False)
    grown = await eventually(lambda: _new_writable(cluster, before), timeout=30, what="volumes grown")
    assert all(len({r.rack for r in v.replicas}) == 3 for v in grown)


async def test_etcd_stopped_until_every_user_met_it_then_everything_reconnects(cluster, etcd):
    users = {p.process.name: p for p in [*cluster.directories, *cluster.stores.values()] if p is not None}
    async with cluster.clients() as c:
        acked, errors = await upload_run(c.media, 50, 4)
        assert not errors
        logs = {m: store.log_size() for m, store in cluster.stores.items() if store is not None}
        etcd.process.stop()  # the session's etcd, its data kept: started again below, whatever happens
        try:
            for address in cluster.running_directories():  # what only etcd knows: UNAVAILABLE naming it
                with pytest.raises(TrenchcoatError) as info:
                    await DirectoryClient(c.pool, [address], timeout_s=DIRECTORY_TIMEOUT_S).locate(10_000)
                assert info.value.status == "UNAVAILABLE" and "etcd" in str(info.value), info.value

            async def every_store_met_it():  # its lease could not be kept alive
                return all(f"WARNING trenchcoat.workers: stores/{m} lease: " in cluster.stores[m].logged_since(at)
                           for m, at in logs.items())

            await eventually(every_store_met_it, what="every store's lease keep-alive failing")
        finally:
            etcd.process.start()
            etcd.process.wait_ready(60)
        for name, proc in users.items():
            assert proc.process.running() and proc.health() == "SERVING", \
                f"{name} is {proc.health()} after etcd was stopped:\n{proc.process.log_tail(30)}"
        await eventually(cluster.leader, timeout=30, what="a leader after the etcd restart")
        await eventually(lambda: _stores_alive(cluster, len(cluster.stores)), timeout=30,
                         what="stores registered again")
        acked2, errors2 = await upload_run(c.media, 50, 4)
        assert len(acked2) == 50, errors2[:3]
        for i, media in list(acked.items())[:10] + list(acked2.items())[:10]:
            copies, _ = await read_from_every_replica(c, media)
            assert copies == [blob(i)] * 3


async def _other_leader(cluster, old):
    leader = await cluster.leader()
    return leader if leader is not None and leader[1] and leader[1] != old else None


async def _new_writable(cluster, before):
    volumes = [v for v in await cluster.volumes() if v.id not in before and v.state == "writable"]
    return volumes if len(volumes) >= 2 else None


async def _stores_alive(cluster, n):
    stores = await cluster.stores_seen()
    return len(stores) == n and all(s.alive for s in stores)
