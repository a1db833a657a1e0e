"""The upload path over real processes: etcd, PostgreSQL, 2 directories, 6 stores on 3
racks, a router."""

from __future__ import annotations

import os

import grpc
import pytest

from tests.cluster import full_media_cluster
from trenchcoat import urls
from trenchcoat.v1 import media_pb2, router_pb2, router_pb2_grpc
from trenchcoat.v1 import store_pb2 as spb
from trenchcoat.v1 import store_pb2_grpc

pytestmark = pytest.mark.integration


@pytest.fixture
async def cluster(service, etcd, postgres, tmp_path):
    return await full_media_cluster(service, etcd, postgres, tmp_path)


def upload_messages(owner, data, content_type="image/jpeg", key="", chunk=64 * 1024, size=None):
    yield router_pb2.UploadRequest(header=router_pb2.UploadHeader(
        owner_id=owner, content_type=content_type, size_bytes=len(data) if size is None else size,
        idempotency_key=key))
    for i in range(0, len(data), chunk):
        yield router_pb2.UploadRequest(chunk=data[i:i + chunk])


async def read_from_every_replica(c, media):
    path = urls.parse_path("/" + media.url.split("/", 3)[3])
    volume = next(v for v in await c.volumes() if v.id == path.photo.logical_volume)
    got = []
    for replica in volume.replicas:
        async with grpc.aio.insecure_channel(replica.address) as channel:
            stub = store_pb2_grpc.StoreServiceStub(channel)
            reply = await stub.ReadNeedle(spb.ReadNeedleRequest(
                volume_id=replica.volume_id, key=path.photo.key, cookie=path.photo.cookie))
            got.append(reply.data)
    return got, volume


async def test_upload_writes_every_replica_on_distinct_racks_and_commits_the_row(cluster):
    async with grpc.aio.insecure_channel(cluster.router.address) as channel:
        stub = router_pb2_grpc.MediaServiceStub(channel)
        blobs = [os.urandom(n) for n in (1, 1000, 300_000)]
        infos = [(await stub.Upload(upload_messages(42, b))).media for b in blobs]
        for blob, info in zip(blobs, infos, strict=True):
            assert info.owner_id == 42 and info.size_bytes == len(blob)
            assert info.state == media_pb2.MEDIA_STATE_ACTIVE
            assert info.url.startswith("http://127.0.0.1:8080/1/")
            assert (info.ref.media_id >> 10) & 0x1FFF == 42  # the shard is the owner's
            copies, volume = await read_from_every_replica(cluster, info)
            assert copies == [blob] * 3
            assert len({r.rack for r in volume.replicas}) == 3
        stat = await stub.Stat(router_pb2.StatRequest(ref=infos[1].ref))
        assert stat.media.url == infos[1].url
        batch = await stub.BatchStat(router_pb2.BatchStatRequest(
            refs=[infos[2].ref, media_pb2.MediaRef(media_id=12345), infos[0].ref]))
        assert [m.state for m in batch.media] == [
            media_pb2.MEDIA_STATE_ACTIVE, media_pb2.MEDIA_STATE_UNSPECIFIED, media_pb2.MEDIA_STATE_ACTIVE]
        assert [m.ref.media_id for m in batch.media][::2] == [infos[2].ref.media_id, infos[0].ref.media_id]
        assert infos[0].ref.media_id < infos[1].ref.media_id < infos[2].ref.media_id  # time-sortable


async def test_a_retried_upload_with_the_same_idempotency_key_returns_the_first(cluster):
    async with grpc.aio.insecure_channel(cluster.router.address) as channel:
        stub = router_pb2_grpc.MediaServiceStub(channel)
        first = (await stub.Upload(upload_messages(7, b"x" * 100, key="k-1"))).media
        again = (await stub.Upload(upload_messages(7, b"x" * 100, key="k-1"))).media
        other_user = (await stub.Upload(upload_messages(8, b"x" * 100, key="k-1"))).media
        assert again.ref.media_id == first.ref.media_id
        assert other_user.ref.media_id != first.ref.media_id


@pytest.mark.parametrize("messages, needle", [
    (lambda: upload_messages(1, b""), "no bytes"),
    # One chunk: a client still streaming when the server refuses sees grpc's own error.
    (lambda: upload_messages(1, b"z" * (4 * 1024 * 1024 + 1), size=0, chunk=8 * 1024 * 1024), "larger than"),
    (lambda: upload_messages(1, b"z", size=4 * 1024 * 1024 + 1), "declares"),
    (lambda: upload_messages(-5, b"z"), "owner_id must be >= 0"),
    (lambda: upload_messages(1, b"z", content_type="jpeg"), "MIME type"),
    (lambda: upload_messages(1, b"zz", size=5), "declared 5 bytes but 2 arrived"),
    (lambda: iter([router_pb2.UploadRequest(chunk=b"zz")]), "first message"),
    (lambda: iter([]), "empty upload stream"),
])
async def test_bad_uploads_are_invalid_argument_with_a_reason(cluster, messages, needle):
    async with grpc.aio.insecure_channel(cluster.router.address) as channel:
        stub = router_pb2_grpc.MediaServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.Upload(messages())
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert needle in info.value.details()


async def test_stat_of_an_unknown_id_is_not_found(cluster):
    async with grpc.aio.insecure_channel(cluster.router.address) as channel:
        stub = router_pb2_grpc.MediaServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.Stat(router_pb2.StatRequest(ref=media_pb2.MediaRef(media_id=99)))
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
