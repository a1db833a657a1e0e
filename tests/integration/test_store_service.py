"""The store as a real process, over real gRPC."""

from __future__ import annotations

import urllib.request

import grpc
import pytest

from store import needle
from tests.store_process import start_store
from trenchcoat.v1 import store_pb2 as pb
from trenchcoat.v1 import store_pb2_grpc

pytestmark = pytest.mark.integration


@pytest.fixture
async def store(service, tmp_path):
    proc = start_store(service, tmp_path / "data")
    channel = grpc.aio.insecure_channel(proc.address)
    stub = store_pb2_grpc.StoreServiceStub(channel)
    await stub.CreateVolume(pb.CreateVolumeRequest(volume_id=1))
    yield proc, stub
    await channel.close()


async def expect(code, call):
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    assert info.value.code() == code, info.value.details()
    return info.value.details()


async def test_write_read_delete_round_trip(store):
    _, stub = store
    w = await stub.WriteNeedle(pb.WriteNeedleRequest(volume_id=1, key=(1 << 64) - 1, cookie=42, data=b"photo"))
    assert w.offset == needle.SUPERBLOCK.size
    r = await stub.ReadNeedle(pb.ReadNeedleRequest(volume_id=1, key=(1 << 64) - 1, cookie=42))
    assert r.data == b"photo"
    d = await stub.DeleteNeedle(pb.DeleteNeedleRequest(volume_id=1, key=(1 << 64) - 1, cookie=42))
    assert d.deleted
    await expect(grpc.StatusCode.NOT_FOUND, stub.ReadNeedle(pb.ReadNeedleRequest(volume_id=1, key=(1 << 64) - 1, cookie=42)))
    d2 = await stub.DeleteNeedle(pb.DeleteNeedleRequest(volume_id=1, key=(1 << 64) - 1, cookie=42))
    assert not d2.deleted


async def test_bad_input_gets_precise_statuses(store):
    _, stub = store
    await stub.WriteNeedle(pb.WriteNeedleRequest(volume_id=1, key=7, cookie=1, data=b"x"))
    wrong_cookie = await expect(grpc.StatusCode.NOT_FOUND, stub.ReadNeedle(pb.ReadNeedleRequest(volume_id=1, key=7, cookie=2)))
    unknown_key = await expect(grpc.StatusCode.NOT_FOUND, stub.ReadNeedle(pb.ReadNeedleRequest(volume_id=1, key=8, cookie=1)))
    assert wrong_cookie == unknown_key.replace("0x8", "0x7")  # a guess learns nothing
    assert "volume 9" in await expect(grpc.StatusCode.NOT_FOUND, stub.ReadNeedle(pb.ReadNeedleRequest(volume_id=9, key=7, cookie=1)))
    assert "exceeds the maximum" in await expect(
        grpc.StatusCode.INVALID_ARGUMENT,
        stub.WriteNeedle(pb.WriteNeedleRequest(volume_id=1, key=9, cookie=1, data=b"x" * (1024 * 1024 + 1))),
    )
    await expect(grpc.StatusCode.INVALID_ARGUMENT, stub.CreateVolume(pb.CreateVolumeRequest(volume_id=0)))
    await expect(grpc.StatusCode.ALREADY_EXISTS, stub.CreateVolume(pb.CreateVolumeRequest(volume_id=1)))
    await expect(grpc.StatusCode.NOT_FOUND, stub.WriteNeedle(pb.WriteNeedleRequest(volume_id=2, key=1, cookie=1, data=b"x")))
    await expect(grpc.StatusCode.INVALID_ARGUMENT, stub.ExportVolume(pb.ExportVolumeRequest(volume_id=1, offset=1 << 40)).read())
    await stub.SetReadOnly(pb.SetReadOnlyRequest(volume_id=1, read_only=True))
    assert "read-only" in await expect(
        grpc.StatusCode.FAILED_PRECONDITION,
        stub.WriteNeedle(pb.WriteNeedleRequest(volume_id=1, key=10, cookie=1, data=b"x")),
    )
    assert (await stub.ReadNeedle(pb.ReadNeedleRequest(volume_id=1, key=7, cookie=1))).data == b"x"


async def test_garbage_bytes_on_the_wire_are_rejected_not_crashed(store):
    proc, stub = store
    async with grpc.aio.insecure_channel(proc.address) as channel:
        raw = channel.unary_unary("/trenchcoat.v1.StoreService/ReadNeedle")
        details = await expect(grpc.StatusCode.INVALID_ARGUMENT, raw(b"\xff\xff\xff\xff garbage"))
        assert "does not decode" in details
    assert (await stub.VolumeStatus(pb.VolumeStatusRequest())).machine_id == 1  # still serving


async def test_batch_read_answers_in_order_across_volumes_and_failures(store):
    _, stub = store
    await stub.CreateVolume(pb.CreateVolumeRequest(volume_id=2))
    for k in range(6):
        await stub.WriteNeedle(pb.WriteNeedleRequest(volume_id=1 + k % 2, key=k, cookie=k, data=bytes([k]) * 10))
    reads = [pb.ReadNeedleRequest(volume_id=1 + k % 2, key=k, cookie=k) for k in range(6)]
    reads.insert(2, pb.ReadNeedleRequest(volume_id=1, key=99, cookie=1))  # unknown key
    reads.insert(4, pb.ReadNeedleRequest(volume_id=7, key=1, cookie=1))  # unknown volume
    reads.append(pb.ReadNeedleRequest(volume_id=2, key=1, cookie=2))  # wrong cookie
    messages = [m async for m in stub.BatchRead(pb.BatchReadRequest(reads=reads))]
    assert len(messages) == 1  # small needles travel together
    got = list(messages[0].results)
    assert [r.index for r in got] == list(range(9))
    not_found = grpc.StatusCode.NOT_FOUND.value[0]
    assert [r.code for r in got] == [0, 0, not_found, 0, not_found, 0, 0, 0, not_found]
    assert "volume 7" in got[4].message
    assert [r.data for r in got if r.code == 0] == [bytes([k]) * 10 for k in range(6)]


async def test_batch_read_packs_messages_to_about_a_mebibyte(store):
    _, stub = store
    blob = b"z" * 300_000
    for k in range(10):
        await stub.WriteNeedle(pb.WriteNeedleRequest(volume_id=1, key=k, cookie=1, data=blob))
    reads = [pb.ReadNeedleRequest(volume_id=1, key=k, cookie=1) for k in range(10)]
    messages = [m async for m in stub.BatchRead(pb.BatchReadRequest(reads=reads))]
    assert [len(m.results) for m in messages] == [3, 3, 3, 1]
    assert [r.index for m in messages for r in m.results] == list(range(10))
    assert all(r.data == blob for m in messages for r in m.results)


@pytest.mark.parametrize("n", [0, 1001])
async def test_batch_read_refuses_empty_and_oversize_batches(store, n):
    _, stub = store
    reads = [pb.ReadNeedleRequest(volume_id=1, key=1, cookie=1)] * n
    details = await expect(grpc.StatusCode.INVALID_ARGUMENT, _drain(stub.BatchRead(pb.BatchReadRequest(reads=reads))))
    assert "1 to 1000" in details


async def _drain(stream):
    return [m async for m in stream]


async def test_flipped_byte_is_data_loss_and_scrub_reports_it(store, tmp_path):
    _, stub = store
    w = await stub.WriteNeedle(pb.WriteNeedleRequest(volume_id=1, key=3, cookie=3, data=b"Q" * 64))
    path = tmp_path / "data" / "store-1" / "vol-1.dat"
    with open(path, "r+b") as f:
        f.seek(w.offset + needle.HEADER.size + 10)
        f.write(b"R")
    await expect(grpc.StatusCode.DATA_LOSS, stub.ReadNeedle(pb.ReadNeedleRequest(volume_id=1, key=3, cookie=3)))
    scrub = await stub.ScrubVolume(pb.ScrubVolumeRequest(volume_id=1))
    assert scrub.needles_checked == 1 and scrub.damaged[0].key == 3 and "checksum" in scrub.damaged[0].reason


async def test_compact_status_export_and_metrics(store):
    proc, stub = store
    for k in range(20):
        await stub.WriteNeedle(pb.WriteNeedleRequest(volume_id=1, key=k, cookie=1, data=b"z" * 1000))
    for k in range(10):
        await stub.DeleteNeedle(pb.DeleteNeedleRequest(volume_id=1, key=k, cookie=1))
    before = (await stub.VolumeStatus(pb.VolumeStatusRequest(volume_id=1))).volumes[0]
    assert before.needles == 10 and before.dead_bytes > 0
    c = await stub.CompactVolume(pb.CompactVolumeRequest(volume_id=1))
    assert c.reclaimed_bytes == before.dead_bytes and c.live_needles == 10
    after = (await stub.VolumeStatus(pb.VolumeStatusRequest())).volumes[0]
    assert after.dead_bytes == 0 and after.file_bytes == before.file_bytes - c.reclaimed_bytes
    chunks = [m async for m in stub.ExportVolume(pb.ExportVolumeRequest(volume_id=1, chunk_bytes=4096))]
    assert sum(len(m.data) for m in chunks) == after.file_bytes
    assert all(needle.crc32c(m.data) == m.crc32c for m in chunks)
    assert (await stub.ReadNeedle(pb.ReadNeedleRequest(volume_id=1, key=15, cookie=1))).data == b"z" * 1000
    text = urllib.request.urlopen(proc.metrics_url, timeout=5).read().decode()
    for needle_metric in ('trenchcoat_store_needles{volume="1"} 10.0', "trenchcoat_store_fsync_batch_size_count",
                          'trenchcoat_store_operations_total{op="write",outcome="ok"} 20.0'):
        assert needle_metric in text


async def test_volumes_survive_a_clean_restart(service, tmp_path):
    proc = start_store(service, tmp_path / "data")
    async with grpc.aio.insecure_channel(proc.address) as channel:
        stub = store_pb2_grpc.StoreServiceStub(channel)
        await stub.CreateVolume(pb.CreateVolumeRequest(volume_id=4))
        await stub.WriteNeedle(pb.WriteNeedleRequest(volume_id=4, key=1, cookie=1, data=b"kept"))
    assert proc.stop() == 0
    assert (tmp_path / "data" / "store-1" / "vol-4.idx").exists()  # final checkpoint
    proc = start_store(service, tmp_path / "data")
    async with grpc.aio.insecure_channel(proc.address) as channel:
        stub = store_pb2_grpc.StoreServiceStub(channel)
        assert (await stub.ReadNeedle(pb.ReadNeedleRequest(volume_id=4, key=1, cookie=1))).data == b"kept"
