"""Directories and stores as real processes over a private etcd."""

from __future__ import annotations

import asyncio

import pytest

from tests.cluster import MediaCluster, eventually
from trenchcoat import rpc
from trenchcoat.clients.directory import VolumeView
from trenchcoat.errors import InvalidArgument, NotFound, TrenchcoatError, Unavailable
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
