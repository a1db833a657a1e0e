"""Directories and stores as real processes over a private etcd."""

from __future__ import annotations

import asyncio

import pytest

from directory.model import State, Volume
from directory.state import DirectoryState
from tests.cluster import MediaCluster, eventually, metric
from trenchcoat import rpc
from trenchcoat.clients.directory import VolumeView
from trenchcoat.errors import FailedPrecondition, InvalidArgument, NotFound, TrenchcoatError, Unavailable
from trenchcoat.etcd import Etcd
from trenchcoat.needle_ref import NeedleRef
from trenchcoat.ops import processes
from trenchcoat.v1 import directory_pb2 as dpb
from trenchcoat.v1 import directory_pb2_grpc

pytestmark = pytest.mark.integration


@pytest.fixture
def cluster(service, etcd, tmp_path):
    return MediaCluster(service, tmp_path / "data", etcd.endpoint)


def racks_of(volume: VolumeView) -> list[str]:
    return [r.rack for r in volume.replicas]


async def test_volumes_grow_with_one_replica_per_rack(cluster):
    cluster.start_all(directories=2, stores=6)  # two stores a rack: one replica a rack all the same
    stores = await eventually(lambda: _all_alive(cluster, 6), what="6 live stores")
    assert sorted({s.rack for s in stores}) == ["a", "b", "c"]
    volumes = await eventually(lambda: _writable(cluster, 2), what="2 writable volumes")
    for v in await cluster.volumes():
        assert len(v.replicas) == 3 and len(set(racks_of(v))) == 3, v
        assert all(r.alive and r.address for r in v.replicas)
    name, _ = await cluster.leader()
    assert name.startswith("directory@")
    async with cluster.clients() as c:
        directory = c.directory
        got = await directory.allocate(1000, exclude=[])
        assert got.id in {v.id for v in volumes}
        located = await directory.locate(got.id)
        assert {r.machine_id for r in located.replicas} == {r.machine_id for r in got.replicas}
        with pytest.raises(NotFound) as info:
            await directory.locate(999_999)
        assert info.value.status == "NOT_FOUND"


async def test_fewer_racks_than_copies_is_refused_with_a_reason(cluster):
    cluster.start_directory()
    cluster.start_store(1, "a")
    cluster.start_store(2, "b")
    await eventually(lambda: _all_alive(cluster, 2), what="2 live stores")
    async with cluster.clients() as c:

        async def refused():
            try:
                await c.directory.allocate(10, exclude=[])
            except TrenchcoatError as exc:
                return (type(exc), exc.status, str(exc)) if "only 2 rack(s)" in str(exc) else None
            return None

        cls, status, details = await eventually(refused, what="a placement refusal")
        assert issubclass(cls, Unavailable) and status == "UNAVAILABLE"
        assert "only 2 rack(s) (a, b)" in details
    assert await cluster.volumes() == []


async def test_a_second_store_with_a_taken_machine_id_is_refused(cluster, tmp_path):
    cluster.start_directory()
    cluster.start_store(1, "a")
    with pytest.raises(processes.ProcessError, match="exit code 2"):
        cluster.start_store(1, "b", name="impostor", TRENCHCOAT_CLUSTER__DATA_DIR=str(tmp_path / "other"))
    log = (tmp_path / "logs" / "impostor.log").read_text()
    assert "machine id 1 is already registered" in log


async def test_copies_left_by_a_creation_that_failed_part_way_are_freed_and_the_id_never_enters_the_map(cluster):
    cluster.start_all(directories=1)
    await eventually(lambda: _writable(cluster, 2), what="2 writable volumes")
    directory = cluster.directories[0]
    assert directory is not None
    etcd = Etcd([cluster.etcd], cluster.config.cluster.name, timeout_s=10.0)
    state = DirectoryState(etcd)
    try:
        # A leader took an id and made copies on two stores, then died before the map had it;
        # another id got a copy that holds a needle; a third was never handed out by anyone.
        half, used = await state.next_volume_id(), await state.next_volume_id()
        never = await state.volume_ids_taken() + 1000
        stores = [cluster.stores[m] for m in (1, 2, 3)]
        assert all(stores)
        async with cluster.clients() as c:
            await asyncio.gather(*(c.store.create(s.address, half) for s in stores[:2] if s))
            await c.store.create(stores[2].address, used)
            await c.store.write(stores[2].address, NeedleRef(logical_volume=used, key=7, cookie=8),
                                b"kept", content_type="image/jpeg")
            await c.store.create(stores[0].address, never)

            async def freed() -> bool:
                held = [set(await c.store.status(s.address)) for s in stores if s]
                return half not in held[0] | held[1] and used in held[2] and never in held[0]

            await eventually(freed, 60, what="the half-created volume's copies freed, the others kept")
        assert await metric(directory, "trenchcoat_directory_orphan_copies_freed_total") == 2
        assert await eventually(lambda: metric(directory, "trenchcoat_directory_unknown_copies"), 30,
                                what="the two unknown copies counted") == 2
        # The id is abandoned: a leader finishing that creation late cannot put it in the map.
        with pytest.raises(FailedPrecondition, match="abandoned"):
            await state.add_volume(Volume(id=half, replicas=(), state=State.WRITABLE, capacity_bytes=1, created_ms=0))
        assert half not in {v.id for v in await cluster.volumes()}
        assert "which the map does not know (1 live needle(s))" in directory.logged_since(0)
    finally:
        await etcd.close()


async def test_a_creation_refused_by_one_store_is_abandoned_and_its_copies_freed_at_once(cluster):
    stores = [cluster.start_store(m, rack) for m, rack in ((1, "a"), (2, "b"), (3, "c"))]
    async with cluster.clients() as c:
        await c.store.create(stores[0].address, 1)  # the first id the directory will take: refused there
    directory = cluster.start_directory()
    await eventually(lambda: _writable(cluster, 2), what="2 writable volumes")
    assert 1 not in {v.id for v in await cluster.volumes()}
    assert "logical volume 1 not created" in directory.logged_since(0)
    async with cluster.clients() as c:
        for store in stores:
            assert 1 not in await c.store.status(store.address)
    assert await metric(directory, "trenchcoat_directory_orphan_copies_freed_total") == 3
    etcd = Etcd([cluster.etcd], cluster.config.cluster.name, timeout_s=10.0)
    try:
        assert await etcd.get("abandoned/1") is not None
    finally:
        await etcd.close()


async def _all_alive(cluster, n):
    stores = await cluster.stores_seen()
    return stores if len(stores) == n and all(s.alive for s in stores) else None


async def _writable(cluster, n):
    volumes = [v for v in await cluster.volumes() if v.state == "writable"]
    return volumes if len(volumes) >= n else None


async def test_watch_volumes_sends_the_map_then_each_change(cluster):
    cluster.start_all(directories=1)
    await eventually(lambda: _writable(cluster, 2), what="2 writable volumes")
    address = cluster.directory_address()
    async with cluster.clients() as c:
        # The stream's messages themselves (snapshot flag, revision) are what is tested:
        # no typed client exposes them, so the call goes through the edge directly.
        stub = c.pool.stub(directory_pb2_grpc.DirectoryServiceStub, address)
        stream = rpc.stream_out(stub.WatchVolumes, dpb.WatchVolumesRequest(), remote=f"directory {address}",
                                timeout=None)
        try:
            first = await asyncio.wait_for(anext(stream), 30)
            assert first.snapshot and len(first.volumes) >= 2 and first.revision > 0
            target = first.volumes[0].id
            await c.directory.mark_read_only(target, "test", repair=False)
            while True:  # growth may interleave its own changes
                change = await asyncio.wait_for(anext(stream), 10)
                assert not change.snapshot
                flipped = [v for v in change.volumes if v.id == target]
                if flipped:
                    assert flipped[0].state == dpb.VOLUME_STATE_READ_ONLY
                    break
        finally:
            await stream.aclose()
        with pytest.raises(InvalidArgument) as info:
            await c.directory.mark_read_only(0, "", repair=False)
        assert info.value.status == "INVALID_ARGUMENT"
