"""The upload path over real processes: etcd, PostgreSQL, a directory, 3 stores on 3
racks, a cache, a router, shared by the module's tests (each uploads as owners of its
own; none stops a process of the cluster)."""

from __future__ import annotations

import dataclasses
import os

import pytest

from tests.cluster import CALL_TIMEOUT_S, Clients, full_media_cluster, shared
from trenchcoat import rpc, tokens, urls
from trenchcoat.clients import media as media_client
from trenchcoat.clients.directory import VolumeView
from trenchcoat.clients.media import Media
from trenchcoat.errors import InvalidArgument, NotFound, PermissionDenied
from trenchcoat.v1 import media_pb2, router_pb2, router_pb2_grpc

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cluster(module_service, etcd, postgres, tmp_path_factory):
    return shared(full_media_cluster(module_service, etcd, postgres, tmp_path_factory.mktemp("upload"),
                                     directories=1, stores=3))


def upload_stream(owner, data, content_type="image/jpeg", key="", chunk=64 * 1024, size=None):
    """A hand-made upload stream (for the malformed ones MediaClient.upload never sends)."""
    header = router_pb2.UploadHeader(owner_id=owner, content_type=content_type,
                                     size_bytes=len(data) if size is None else size, idempotency_key=key)
    return media_client.upload_messages(header, data, chunk)


async def upload_raw(c: Clients, messages, owner: int = 1):
    """Sends ``messages`` to the router's Upload through the RPC edge, with ``owner``'s token."""
    assert c.cluster.router is not None
    address = c.cluster.router.address
    stub = c.pool.stub(router_pb2_grpc.MediaServiceStub, address)
    return await rpc.stream_in(stub.Upload, messages, remote=f"router {address}", timeout=CALL_TIMEOUT_S,
                               metadata=tokens.metadata_for(owner))


async def upload_bytes_raw(c: Clients, owner, data, size=0):
    """Sends one UploadBytes message through the RPC edge."""
    assert c.cluster.router is not None
    address = c.cluster.router.address
    stub = c.pool.stub(router_pb2_grpc.MediaServiceStub, address)
    request = router_pb2.UploadBytesRequest(
        header=router_pb2.UploadHeader(owner_id=owner, content_type="image/jpeg", size_bytes=size), data=data)
    return await rpc.unary(stub.UploadBytes, request, remote=f"router {address}", timeout=CALL_TIMEOUT_S,
                           metadata=tokens.metadata_for(owner))


def path_of(media: Media) -> str:
    return "/" + media.url.split("/", 3)[3]


async def read_from_every_replica(c: Clients, media: Media) -> tuple[list[bytes], VolumeView]:
    """The needle behind ``media``'s URL as each replica of its volume holds it."""
    path = urls.parse_path(path_of(media))
    volume = next(v for v in await c.directory.list_volumes() if v.id == path.needle.logical_volume)
    got = []
    for replica in volume.replicas:
        got.append((await c.store.read(replica.address,
                                      dataclasses.replace(path.needle, logical_volume=replica.volume_id))).data)
    return got, volume


async def test_upload_writes_every_replica_on_distinct_racks_and_commits_the_row(cluster):
    async with cluster.clients() as c:
        blobs = [os.urandom(n) for n in (1, 1000, 300_000)]
        infos = [await c.media.upload(b, owner_id=42, content_type="image/jpeg") for b in blobs]
        for blob, info in zip(blobs, infos, strict=True):
            assert info.owner_id == 42 and info.size_bytes == len(blob)
            assert info.state == "active"
            assert info.url.startswith("http://127.0.0.1:8080/1/")
            assert (info.media_id >> 10) & 0x1FFF == 42  # the shard is the owner's
            copies, volume = await read_from_every_replica(c, info)
            assert copies == [blob] * 3
            assert len({r.rack for r in volume.replicas}) == 3
        stat = await c.media.stat(infos[1].media_id)
        assert stat.url == infos[1].url
        batch = await c.media.batch_stat([infos[2].media_id, 12345, infos[0].media_id])
        assert [r.outcome for r in batch] == ["found", "not_found", "found"]
        assert [r.media_id for r in batch] == [infos[2].media_id, 12345, infos[0].media_id]
        assert [r.media.media_id for r in batch[::2] if r.media] == [infos[2].media_id, infos[0].media_id]
        assert batch[0].media == await c.media.stat(infos[2].media_id) and batch[0].media.tier == "hot"
        assert infos[0].media_id < infos[1].media_id < infos[2].media_id  # time-sortable


async def test_an_object_larger_than_one_message_is_streamed_and_stored_alike(cluster):
    """MediaClient sends an object that fits one chunk as one UploadBytes message, and
    streams a larger one through Upload: both end the same way."""
    async with cluster.clients() as c:
        blob = os.urandom(300_000)
        streamed = await c.media.upload(blob, owner_id=43, content_type="image/jpeg", chunk_bytes=64 * 1024)
        single = await c.media.upload(blob, owner_id=43, content_type="image/jpeg")
        for info in (streamed, single):
            assert info.state == "active" and info.size_bytes == len(blob)
            copies, _ = await read_from_every_replica(c, info)
            assert copies == [blob] * 3
        direct = await upload_bytes_raw(c, 44, b"abc", size=3)
        assert direct.media.size_bytes == 3 and direct.media.state == media_pb2.MEDIA_STATE_ACTIVE


async def test_a_retried_upload_with_the_same_idempotency_key_returns_the_first(cluster):
    async with cluster.clients() as c:
        first = await c.media.upload(b"x" * 100, owner_id=7, content_type="image/jpeg", idempotency_key="k-1")
        again = await c.media.upload(b"x" * 100, owner_id=7, content_type="image/jpeg", idempotency_key="k-1")
        other_user = await c.media.upload(b"x" * 100, owner_id=8, content_type="image/jpeg", idempotency_key="k-1")
        assert again.media_id == first.media_id
        assert other_user.media_id != first.media_id


@pytest.mark.parametrize("send, needle", [
    (lambda c: c.media.upload(b"", owner_id=1, content_type="image/jpeg"), "no bytes"),
    # One chunk: a client still streaming when the server refuses sees grpc's own error.
    (lambda c: upload_raw(c, upload_stream(1, b"z" * (4 * 1024 * 1024 + 1), size=0, chunk=8 * 1024 * 1024)),
     "larger than"),
    (lambda c: upload_raw(c, upload_stream(1, b"z", size=4 * 1024 * 1024 + 1)), "declares"),
    (lambda c: c.media.upload(b"z", owner_id=1, content_type="jpeg"), "not a type trenchcoat stores"),
    (lambda c: c.media.upload(b"z", owner_id=1, content_type="text/plain"),
     "use one of application/octet-stream, image/jpeg"),
    (lambda c: upload_raw(c, upload_stream(1, b"zz", size=5)), "declared 5 bytes but 2 arrived"),
    (lambda c: upload_raw(c, iter([router_pb2.UploadRequest(chunk=b"zz")])), "first message"),
    (lambda c: upload_raw(c, iter([])), "empty upload stream"),
    (lambda c: upload_bytes_raw(c, 1, b"zz", size=5), "declared 5 bytes but 2 arrived"),
    (lambda c: upload_bytes_raw(c, 1, b""), "no bytes"),
    (lambda c: upload_bytes_raw(c, 1, b"z" * (4 * 1024 * 1024 + 1)), "the most an upload may carry"),
    # PostgreSQL's text cannot hold NUL: refused up front, not INTERNAL from the INSERT.
    (lambda c: c.media.upload(b"z", owner_id=1, content_type="image/jpeg", idempotency_key="k\x00"), "NUL"),
])
async def test_bad_uploads_are_invalid_argument_with_a_reason(cluster, send, needle):
    async with cluster.clients() as c:
        with pytest.raises(InvalidArgument) as info:
            await send(c)
        assert info.value.status == "INVALID_ARGUMENT"
        assert info.value.remote  # the router's answer, not the client's own check
        assert needle in str(info.value)


async def test_an_upload_for_a_user_the_token_does_not_name_is_refused(cluster):
    """A negative owner never reaches the router's checks from an app: no token names it."""
    async with cluster.clients() as c:
        with pytest.raises(PermissionDenied, match="act for user -5"):
            await c.media.upload(b"z", owner_id=-5, content_type="image/jpeg", token=tokens.token_for(1))


async def test_stat_of_an_unknown_id_is_not_found(cluster):
    async with cluster.clients() as c:
        with pytest.raises(NotFound) as info:
            await c.media.stat(99)
        assert info.value.status == "NOT_FOUND"


async def test_two_routers_uploading_for_one_shard_at_once_never_collide(cluster):
    """Both routers mint through PostgreSQL's next_id (one sequence per shard), so ids of
    one owner's uploads through either router are all distinct, in their shard, and every
    upload reads back."""
    first = cluster.router
    second = cluster.start_router()  # a second router process on the same database
    cluster.router = first  # (the module's other tests keep talking to the first)
    try:
        await _two_routers(first, second)
    finally:
        second.stop()  # nothing of it left working on the module's database


async def _two_routers(first, second) -> None:
    import asyncio

    from trenchcoat import ids
    from trenchcoat.clients.media import MediaClient

    assert first is not None and first.address != second.address
    async with rpc.ChannelPool() as pool:
        clients = [MediaClient(pool, r.address, timeout_s=CALL_TIMEOUT_S) for r in (first, second)]

        async def uploads(client: MediaClient, n: int) -> list[Media]:
            return [await client.upload(os.urandom(64), owner_id=8193 + 1, content_type="image/png") for _ in range(n)]

        done = await asyncio.gather(*(uploads(c, 60) for c in clients for _ in range(3)))
        media = [m for batch in done for m in batch]
        assert len({m.media_id for m in media}) == len(media) == 360
        assert {ids.split_id(m.media_id)[1] for m in media} == {ids.shard_for_user(8194)}
        for m in media[::37]:
            assert (await clients[1].stat(m.media_id)).media_id == m.media_id
