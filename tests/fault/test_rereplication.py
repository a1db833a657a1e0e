"""A store lost for good is replaced (issue 24, item 4): killed with kill -9 and its data
directory gone while uploads run 8 at a time, every volume it held gets a third replica
on another store of a rack the volume does not use, equal by content digest, and every
acknowledged upload reads back byte-exact from every replica; the old store coming back
with its old data has its stale copies freed and changes nothing in the map; the leader
killed in the middle of a copy leaves it to the next leader, which finishes it."""

from __future__ import annotations

import shutil

import pytest

from tests.cluster import MediaCluster, eventually, full_media_cluster, metric
from tests.fault.test_media_cluster import on_every_replica, upload_run
from trenchcoat.clients.directory import VolumeView
from trenchcoat.errors import TrenchcoatError

pytestmark = pytest.mark.integration

RACKS = ("a", "b", "c")
HEAL_WAIT_S = 120.0
"""Generous: replace_after_s (3 s) plus the copies, on a busy machine."""


def env(**extra: str) -> dict[str, str]:
    return {"TRENCHCOAT_DIRECTORY__REPLACE_AFTER_S": "3", "TRENCHCOAT_STORE__AUDIT_INTERVAL_S": "3600", **extra}


async def healed(cluster: MediaCluster, victim: int) -> bool:
    """Every volume has 3 live replicas on distinct racks, none on ``victim``, all equal
    by content digest, and none is being replaced."""
    async with cluster.clients() as c:
        volumes = await c.directory.list_volumes()
        for v in volumes:
            machines = [r.machine_id for r in v.replicas]
            if victim in machines or len(machines) != 3 or len({r.rack for r in v.replicas}) != 3:
                return False
            if not all(r.alive for r in v.replicas):
                return False
            try:
                digests = {(await c.store.status(r.address, v.id))[v.id].digest for r in v.replicas}
            except TrenchcoatError:
                return False
            if len(digests) != 1:
                return False
    return True


async def replica_map(cluster: MediaCluster) -> dict[int, tuple[int, ...]]:
    return {v.id: tuple(sorted(r.machine_id for r in v.replicas)) for v in await cluster.volumes()}


async def test_a_store_lost_for_good_under_uploads_is_replaced_and_its_return_changes_nothing(
        service, etcd, postgres, tmp_path):
    cluster = await full_media_cluster(service, etcd, postgres, tmp_path, stores=6, env=env())
    victim = 3  # rack c; store 6 shares the rack (store i is on racks[(i - 1) % 3])
    process = cluster.stores[victim]
    assert process is not None
    held = [v.id for v in await cluster.volumes() if any(r.machine_id == victim for r in v.replicas)]
    assert held, "the victim should hold volumes"
    async with cluster.clients() as c:
        acked, errors = await upload_run(c.media, 400, 8, during=process.kill)
    data = cluster.data_dir / f"store-{victim}"
    kept = tmp_path / "old-disk"
    shutil.move(data, kept)  # the disk is gone (kept aside, to bring back below)
    # Uploads went on: a failed replica write retried on a volume without the store.
    assert len(acked) >= 390, (len(acked), len(errors), errors[:5])
    assert all(status == "UNAVAILABLE" for _, status, _ in errors), errors[:5]

    await eventually(lambda: healed(cluster, victim), HEAL_WAIT_S, what="every volume of the lost store replaced")
    await eventually(lambda: on_every_replica(cluster, acked), 60, what="every acked upload on every replica")
    # Counted by whichever directory led at the time (leadership may move on a loaded machine).
    directories = [d for d in cluster.directories if d is not None]
    assert sum([await metric(d, "trenchcoat_directory_rereplications_total", outcome="done")
                for d in directories]) >= len(held)

    # The lost store comes back with its old data: its stale copies are freed, the map stays.
    before = await replica_map(cluster)
    shutil.move(kept, data)
    back = cluster.start_store(victim, "c")

    async def emptied() -> bool:
        async with cluster.clients() as c:
            return not await c.store.status(back.address)

    await eventually(emptied, 60, what="the returning store's stale copies freed")
    assert await replica_map(cluster) == before
    # The store frees a copy before the directory's FreeVolume call returns and is counted:
    # wait for the count rather than read it the moment the store looks empty.
    async def counted() -> bool:
        return sum([await metric(d, "trenchcoat_directory_stale_copies_freed_total")
                    for d in directories]) >= len(held)

    await eventually(counted, 30, what="the freed stale copies counted")
    assert await healed(cluster, victim)
    assert await on_every_replica(cluster, acked)


async def test_the_leader_killed_mid_copy_leaves_it_to_the_next_leader_which_finishes_it(
        service, etcd, postgres, tmp_path):
    # The first leader copies slowly (64 KiB/s: a copy of a few MiB is surely under way when it
    # dies); the other directory, restarted with a fast throttle, finishes at once.
    slow = str(64 * 1024)
    cluster = await full_media_cluster(service, etcd, postgres, tmp_path, directories=2, stores=6,
                                       env=env(TRENCHCOAT_DIRECTORY__REREPLICATE_BYTES_PER_S=slow))
    async with cluster.clients() as c:
        acked, errors = await upload_run(c.media, 120, 8)
        assert not errors
        for owner in range(1, 4):  # a few MiB in every volume
            await c.media.upload(b"x" * (2 * 1024 * 1024), owner_id=owner, content_type="image/jpeg")
    _, first = await eventually(cluster.leader, what="a leader")
    leader = next(p for p in cluster.directories if p is not None and p.address == first)
    other = next(i for i, p in enumerate(cluster.directories) if p is not None and p is not leader)
    cluster.directories[other].stop()  # type: ignore[union-attr]
    survivor = cluster.start_directory(other, TRENCHCOAT_DIRECTORY__REREPLICATE_BYTES_PER_S=str(64 * 1024 * 1024))
    victim = 3  # rack c; store 6 shares the rack (store i is on racks[(i - 1) % 3])
    process = cluster.stores[victim]
    assert process is not None
    held = [v.id for v in await cluster.volumes() if any(r.machine_id == victim for r in v.replicas)]
    offset = leader.log_size()
    process.kill()

    async def copying() -> bool:
        return "replacing its copy on lost store" in leader.logged_since(offset)

    await eventually(copying, HEAL_WAIT_S, what="a re-replication under way")
    # `trenchcoat volumes` shows the copy under way (the map names it; the new store its
    # progress), once the directory answering has read the map since.
    async def listed() -> list[VolumeView]:
        async with cluster.clients() as c:
            return [v for v in await c.directory.list_volumes() if v.replacing is not None]

    moving = await eventually(listed, 30, what="the replacement in the directory's map")
    assert all(v.under_replicated and v.replacing is not None and v.replacing.lost_machine == victim for v in moving)
    assert "store 6 replaces lost store 3" not in leader.logged_since(offset), "the slow copy ended already"
    leader.kill()
    await eventually(lambda: healed(cluster, victim), HEAL_WAIT_S, what="the next leader finishing the copies")
    await eventually(lambda: on_every_replica(cluster, acked), 60, what="every acked upload on every replica")
    assert await metric(survivor, "trenchcoat_directory_rereplications_total", outcome="done") >= 1
    # Nothing was freed: no store came back, and no named copy is ever a stale one.
    assert await metric(survivor, "trenchcoat_directory_stale_copies_freed_total") == 0
    for v in await cluster.volumes():
        if v.id in held:
            assert victim not in {r.machine_id for r in v.replicas}
