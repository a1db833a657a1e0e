"""The store as a real process, over real gRPC."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import grpc
import pytest

from tests import harness
from tests.store_process import start_store
from trenchcoat import needle, rpc
from trenchcoat.clients.store import StoreClient
from trenchcoat.errors import (
    AlreadyExists,
    ChecksumMismatch,
    InvalidArgument,
    NeedleNotFound,
    TrenchcoatError,
    VolumeNotFound,
    VolumeReadOnly,
)
from trenchcoat.locators import locator
from trenchcoat.needle_ref import NeedleRef
from trenchcoat.store_types import Blob
from trenchcoat.v1 import media_pb2, store_pb2_grpc
from trenchcoat.v1 import store_pb2 as pb

pytestmark = pytest.mark.integration

TIMEOUT_S = 30.0


def ref(volume: int, key: int, cookie: int) -> NeedleRef:
    return NeedleRef(logical_volume=volume, key=key, cookie=cookie)


@dataclass
class Store:
    """A store process and a client of it."""

    proc: harness.ServiceProcess
    pool: rpc.ChannelPool
    client: StoreClient

    @property
    def address(self) -> str:
        return self.proc.address

    async def call(self, method: str, request: Any) -> Any:
        """A call through the edge, for replies whose fields the typed client does not
        return (a write's offset, the store's machine id, dead bytes)."""
        stub = self.pool.stub(store_pb2_grpc.StoreServiceStub, self.address)
        return await rpc.unary(getattr(stub, method), request, remote=f"store {self.address}", timeout=TIMEOUT_S)

    def stream(self, method: str, request: Any):
        stub = self.pool.stub(store_pb2_grpc.StoreServiceStub, self.address)
        return rpc.stream_out(getattr(stub, method), request, remote=f"store {self.address}", timeout=TIMEOUT_S)


@pytest.fixture
async def store(service, tmp_path):
    proc = start_store(service, tmp_path / "data")
    async with rpc.ChannelPool() as pool:
        s = Store(proc, pool, StoreClient(pool, timeout_s=TIMEOUT_S))
        await s.client.create(s.address, 1)
        yield s


async def expect(error: type[TrenchcoatError], call) -> str:
    """Awaits ``call``, which must fail with ``error`` (and exactly its status); returns the message."""
    with pytest.raises(error) as info:
        await call
    assert info.value.status == error.status, str(info.value)
    return str(info.value)


async def test_write_read_delete_round_trip(store):
    c, a = store.client, store.address
    key = (1 << 64) - 1
    w = await store.call("WriteNeedle", pb.WriteNeedleRequest(needle=locator(ref(1, key, 42)), data=b"photo"))
    assert w.offset == needle.SUPERBLOCK.size
    assert (await c.read(a, ref(1, key, 42))).data == b"photo"
    assert await c.delete(a, ref(1, key, 42))
    await expect(NeedleNotFound, c.read(a, ref(1, key, 42)))
    assert not await c.delete(a, ref(1, key, 42))


async def test_the_needle_keeps_its_media_type(store):
    c, a = store.client, store.address
    await c.write(a, ref(1, 3, 1), b"\x89PNG", content_type="image/png")
    await c.write(a, ref(1, 4, 1), b"bytes")
    assert await c.read(a, ref(1, 3, 1)) == Blob(b"\x89PNG", "image/png")
    assert await c.batch_read(a, [ref(1, 4, 1), ref(1, 3, 1)]) == [
        Blob(b"bytes", "application/octet-stream"), Blob(b"\x89PNG", "image/png")]
    assert "use one of" in await expect(InvalidArgument, c.write(a, ref(1, 5, 1), b"x", content_type="text/html"))


async def test_bad_input_gets_precise_statuses(store):
    c, a = store.client, store.address
    await c.write(a, ref(1, 7, 1), b"x")
    wrong_cookie = await expect(NeedleNotFound, c.read(a, ref(1, 7, 2)))
    unknown_key = await expect(NeedleNotFound, c.read(a, ref(1, 8, 1)))
    assert wrong_cookie == unknown_key.replace("0x8", "0x7")  # a guess learns nothing
    assert "volume 9" in await expect(VolumeNotFound, c.read(a, ref(9, 7, 1)))
    assert "exceeds the maximum" in await expect(InvalidArgument, c.write(a, ref(1, 9, 1), b"x" * (1024 * 1024 + 1)))
    await expect(InvalidArgument, c.create(a, 0))
    await expect(AlreadyExists, c.create(a, 1))
    await expect(VolumeNotFound, c.write(a, ref(2, 1, 1), b"x"))
    await expect(InvalidArgument, _drain(c.export(a, 1, offset=1 << 40, timeout_s=TIMEOUT_S)))
    await c.set_read_only(a, 1, True)
    assert "read-only" in await expect(VolumeReadOnly, c.write(a, ref(1, 10, 1), b"x"))
    assert (await c.read(a, ref(1, 7, 1))).data == b"x"


async def test_a_request_without_a_volume_names_the_missing_field(store):
    for method, request in [("ReadNeedle", pb.ReadNeedleRequest()),
                            ("WriteNeedle", pb.WriteNeedleRequest(data=b"x")),
                            ("DeleteNeedle", pb.DeleteNeedleRequest(needle=media_pb2.NeedleLocator(key=1, cookie=1)))]:
        assert "needle.logical_volume is required" in await expect(InvalidArgument, store.call(method, request))
    request = pb.BatchReadRequest(reads=[pb.ReadNeedleRequest(needle=locator(ref(1, 1, 1))), pb.ReadNeedleRequest()])
    assert "reads[1].needle.logical_volume is required" in await expect(InvalidArgument,
                                                                        _drain(store.stream("BatchRead", request)))


async def test_garbage_bytes_on_the_wire_are_rejected_not_crashed(store):
    raw = store.pool.channel(store.address).unary_unary("/trenchcoat.v1.StoreService/ReadNeedle")
    details = await expect(InvalidArgument, rpc.unary(raw, b"\xff\xff\xff\xff garbage",
                                                      remote=f"store {store.address}", timeout=TIMEOUT_S))
    assert "does not decode" in details
    assert (await store.call("VolumeStatus", pb.VolumeStatusRequest())).machine_id == 1  # still serving


async def test_batch_read_answers_in_order_across_volumes_and_failures(store):
    c, a = store.client, store.address
    await c.create(a, 2)
    for k in range(6):
        await c.write(a, ref(1 + k % 2, k, k), bytes([k]) * 10)
    reads = [ref(1 + k % 2, k, k) for k in range(6)]
    reads.insert(2, ref(1, 99, 1))  # unknown key
    reads.insert(4, ref(7, 1, 1))  # unknown volume
    reads.append(ref(2, 1, 2))  # wrong cookie
    # How results are packed into messages: the stream itself, through the edge.
    request = pb.BatchReadRequest(reads=[pb.ReadNeedleRequest(needle=locator(r)) for r in reads])
    messages = [m async for m in store.stream("BatchRead", request)]
    assert len(messages) == 1  # small needles travel together
    got = list(messages[0].results)
    assert [r.index for r in got] == list(range(9))
    not_found = grpc.StatusCode.NOT_FOUND.value[0]
    assert [r.code for r in got] == [0, 0, not_found, 0, not_found, 0, 0, 0, not_found]
    assert "volume 7" in got[4].message
    assert [r.data for r in got if r.code == 0] == [bytes([k]) * 10 for k in range(6)]
    # The typed client gives each failure its class.
    typed = await c.batch_read(a, reads)
    assert [type(r) for r in typed] == [Blob, Blob, NeedleNotFound, Blob, VolumeNotFound, Blob, Blob, Blob,
                                        NeedleNotFound]
    assert "volume 7" in str(typed[4])
    assert [r.data for r in typed if isinstance(r, Blob)] == [bytes([k]) * 10 for k in range(6)]


async def test_batch_read_packs_messages_to_about_a_mebibyte(store):
    c, a = store.client, store.address
    blob = b"z" * 300_000
    for k in range(10):
        await c.write(a, ref(1, k, 1), blob)
    request = pb.BatchReadRequest(reads=[pb.ReadNeedleRequest(needle=locator(ref(1, k, 1))) for k in range(10)])
    messages = [m async for m in store.stream("BatchRead", request)]
    assert [len(m.results) for m in messages] == [3, 3, 3, 1]
    assert [r.index for m in messages for r in m.results] == list(range(10))
    assert all(r.data == blob for m in messages for r in m.results)
    octets = "application/octet-stream"  # written without a type
    assert await c.batch_read(a, [ref(1, k, 1) for k in range(10)]) == [Blob(blob, octets)] * 10


@pytest.mark.parametrize("n", [0, 1001])
async def test_batch_read_refuses_empty_and_oversize_batches(store, n):
    details = await expect(InvalidArgument, store.client.batch_read(store.address, [ref(1, 1, 1)] * n))
    assert "1 to 1000" in details


async def _drain(stream):
    return [m async for m in stream]


async def test_flipped_byte_is_data_loss_and_scrub_reports_it(store, tmp_path):
    c, a = store.client, store.address
    w = await store.call("WriteNeedle", pb.WriteNeedleRequest(needle=locator(ref(1, 3, 3)), data=b"Q" * 64))
    path = tmp_path / "data" / "store-1" / "vol-1.dat"
    with open(path, "r+b") as f:
        f.seek(w.offset + needle.HEADER.size + 10)
        f.write(b"R")
    await expect(ChecksumMismatch, c.read(a, ref(1, 3, 3)))
    checked, damaged = await c.scrub(a, 1, timeout_s=TIMEOUT_S)
    assert checked == 1 and damaged[0].key == 3 and "checksum" in damaged[0].reason


async def test_compact_status_export_and_metrics(store):
    c, a = store.client, store.address
    for k in range(20):
        await c.write(a, ref(1, k, 1), b"z" * 1000)
    for k in range(10):
        await c.delete(a, ref(1, k, 1))
    before = (await store.call("VolumeStatus", pb.VolumeStatusRequest(volume_id=1))).volumes[0]
    assert before.needles == 10 and before.dead_bytes > 0
    assert (await c.status(a, 1))[1].needles == 10
    reclaimed, live = await c.compact(a, 1, timeout_s=TIMEOUT_S)
    assert reclaimed == before.dead_bytes and live == 10
    after = (await store.call("VolumeStatus", pb.VolumeStatusRequest())).volumes[0]
    assert after.dead_bytes == 0 and after.file_bytes == before.file_bytes - reclaimed
    assert (await c.status(a))[1].file_bytes == after.file_bytes
    chunks = [m async for m in c.export(a, 1, chunk_bytes=4096, timeout_s=TIMEOUT_S)]
    assert sum(len(m.data) for m in chunks) == after.file_bytes
    assert all(needle.crc32c(m.data) == m.crc32c for m in chunks)
    assert (await c.read(a, ref(1, 15, 1))).data == b"z" * 1000
    text = harness.scrape(store.proc.metrics_url)
    for needle_metric in ('trenchcoat_store_needles{volume="1"} 10.0', "trenchcoat_store_fsync_batch_size_count",
                          'trenchcoat_store_operations_total{op="write",outcome="ok"} 20.0'):
        assert needle_metric in text


async def test_volumes_survive_a_clean_restart(service, tmp_path):
    proc = start_store(service, tmp_path / "data")
    async with rpc.ChannelPool() as pool:
        client = StoreClient(pool, timeout_s=TIMEOUT_S)
        await client.create(proc.address, 4)
        await client.write(proc.address, ref(4, 1, 1), b"kept")
    assert proc.stop() == 0
    assert (tmp_path / "data" / "store-1" / "vol-4.idx").exists()  # final checkpoint
    proc = start_store(service, tmp_path / "data")
    async with rpc.ChannelPool() as pool:
        client = StoreClient(pool, timeout_s=TIMEOUT_S)
        assert (await client.read(proc.address, ref(4, 1, 1))).data == b"kept"


async def test_free_volume_only_when_sealed_and_twice_is_harmless(store, tmp_path):
    from trenchcoat.errors import FailedPrecondition

    c, a = store.client, store.address
    await c.write(a, ref(1, 5, 5), b"sealed photo")
    with pytest.raises(FailedPrecondition, match="writable here; only a sealed volume is freed"):
        await c.free_volume(a, 1)
    await c.set_read_only(a, 1, True)
    assert await c.free_volume(a, 1)
    await expect(VolumeNotFound, c.read(a, ref(1, 5, 5)))
    assert not await c.free_volume(a, 1)  # freed before: nothing to do, no error
    assert not list((tmp_path / "data" / "store-1").glob("vol-1.*"))
