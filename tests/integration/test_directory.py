"""Directories and stores as real processes over a private etcd."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from tests.cluster import MediaCluster, eventually
from trenchcoat import procs
from trenchcoat.v1 import directory_pb2 as dpb
from trenchcoat.v1 import directory_pb2_grpc

pytestmark = pytest.mark.integration


@pytest.fixture
def cluster(service, etcd, tmp_path):
    return MediaCluster(service, tmp_path / "data", etcd.endpoint)


def racks_of(volume: dpb.LogicalVolume) -> list[str]:
    return [r.rack for r in volume.replicas]


async def test_volumes_grow_with_one_replica_per_rack(cluster):
    cluster.start_all()
    stores = await eventually(lambda: _all_alive(cluster, 6), what="6 live stores")
    assert sorted({s.rack for s in stores}) == ["a", "b", "c"]
    volumes = await eventually(lambda: _writable(cluster, 2), what="2 writable volumes")
    for v in await cluster.volumes():
        assert len(v.replicas) == 3 and len(set(racks_of(v))) == 3, v
        assert all(r.alive and r.address for r in v.replicas)
    assert (await cluster.leader()).leader.startswith("directory@")
    async with grpc.aio.insecure_channel(cluster.directory_address()) as channel:
        stub = directory_pb2_grpc.DirectoryServiceStub(channel)
        got = await stub.Allocate(dpb.AllocateRequest(size_bytes=1000))
        assert got.volume.id in {v.id for v in volumes}
        located = await stub.Locate(dpb.LocateRequest(logical_volume=got.volume.id))
        assert {r.machine_id for r in located.volume.replicas} == {r.machine_id for r in got.volume.replicas}
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.Locate(dpb.LocateRequest(logical_volume=999_999))
        assert info.value.code() == grpc.StatusCode.NOT_FOUND


async def test_fewer_racks_than_copies_is_refused_with_a_reason(cluster):
    cluster.start_directory()
    cluster.start_store(1, "a")
    cluster.start_store(2, "b")
    await eventually(lambda: _all_alive(cluster, 2), what="2 live stores")
    async with grpc.aio.insecure_channel(cluster.directory_address()) as channel:
        stub = directory_pb2_grpc.DirectoryServiceStub(channel)

        async def refused():
            try:
                await stub.Allocate(dpb.AllocateRequest(size_bytes=10))
            except grpc.aio.AioRpcError as exc:
                return (exc.code(), exc.details()) if "only 2 rack(s)" in exc.details() else None
            return None

        code, details = await eventually(refused, what="a placement refusal")
        assert code == grpc.StatusCode.UNAVAILABLE
        assert "only 2 rack(s) (a, b)" in details
    assert await cluster.volumes() == []


async def test_a_second_store_with_a_taken_machine_id_is_refused(cluster, tmp_path):
    cluster.start_directory()
    cluster.start_store(1, "a")
    with pytest.raises(procs.ProcessError, match="exit code 2"):
        cluster.start_store(1, "b", name="impostor", TRENCHCOAT_CLUSTER__DATA_DIR=str(tmp_path / "other"))
    log = (tmp_path / "logs" / "impostor.log").read_text()
    assert "machine id 1 is already registered" in log


async def _all_alive(cluster, n):
    stores = await cluster.stores_seen()
    return stores if len(stores) == n and all(s.alive for s in stores) else None


async def _writable(cluster, n):
    volumes = [v for v in await cluster.volumes() if v.state == dpb.VOLUME_STATE_WRITABLE]
    return volumes if len(volumes) >= n else None


async def test_watch_volumes_sends_the_map_then_each_change(cluster):
    cluster.start_all(directories=1)
    await eventually(lambda: _writable(cluster, 2), what="2 writable volumes")
    async with grpc.aio.insecure_channel(cluster.directory_address()) as channel:
        stub = directory_pb2_grpc.DirectoryServiceStub(channel)
        stream = stub.WatchVolumes(dpb.WatchVolumesRequest())
        first = await stream.read()
        assert first.snapshot and len(first.volumes) >= 2 and first.revision > 0
        target = first.volumes[0].id
        await stub.MarkReadOnly(dpb.MarkReadOnlyRequest(logical_volume=target, reason="test"))
        while True:  # growth may interleave its own changes
            change = await asyncio.wait_for(stream.read(), 10)
            assert not change.snapshot
            flipped = [v for v in change.volumes if v.id == target]
            if flipped:
                assert flipped[0].state == dpb.VOLUME_STATE_READ_ONLY
                break
        stream.cancel()
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.MarkReadOnly(dpb.MarkReadOnlyRequest(logical_volume=0))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
