"""An f4 storage node as a real process over real gRPC: durable puts checked end to end,
range reads verified chunk by chunk, damage reported as DATA_LOSS, blocks kept across a
kill -9."""

from __future__ import annotations

import os
import random

import pytest

from f4.storage.blocks import CRC_CHUNK
from tests import harness
from trenchcoat import rpc
from trenchcoat.clients.f4 import PUT_CHUNK, F4StorageClient
from trenchcoat.errors import ChecksumMismatch, InvalidArgument, NotFound, OutOfRange
from trenchcoat.f4_types import BlockId
from trenchcoat.ops import ports

pytestmark = pytest.mark.integration

TIMEOUT_S = 30.0
DOMAINS = ("rack-a", "rack-b")


def start_node(service, data_dir, port=None, metrics_port=None, *, node_id=3, domains=DOMAINS, **extra):
    """An f4 storage node process keeping blocks for ``domains``."""
    port = port or ports.free_port()
    metrics_port = metrics_port or ports.free_port()
    return service(f"f4-storage-{node_id}", harness.python_module("f4.storage"), port=port,
                   metrics_port=metrics_port, env={
                       "TRENCHCOAT_CLUSTER__DATA_DIR": str(data_dir),
                       "TRENCHCOAT_F4_STORAGE__PORT": str(port),
                       "TRENCHCOAT_F4_STORAGE__METRICS_PORT": str(metrics_port),
                       "TRENCHCOAT_F4_STORAGE__NODE_ID": str(node_id),
                       # One process on its own free ports: with the default count of 14 the
                       # config would also claim port + 1..13 and metrics_port + 1..13 for
                       # siblings, and two free ports 13 apart would clash.
                       "TRENCHCOAT_F4_STORAGE__COUNT": "1",
                       "TRENCHCOAT_F4_STORAGE__DOMAINS": ",".join(domains),
                       "TRENCHCOAT_F4_STORAGE__DRAIN_NOTICE_S": "0",
                       **extra,
                   })


@pytest.fixture
async def node(service, tmp_path):
    proc = start_node(service, tmp_path / "data")
    async with rpc.ChannelPool() as pool:
        yield proc, F4StorageClient(pool, timeout_s=TIMEOUT_S)


async def test_a_block_reads_back_by_any_range(node):
    proc, client = node
    data = random.Random(1).randbytes(PUT_CHUNK * 2 + 12345)  # several messages, a partial last chunk
    block = BlockId(volume=7, stripe=0, index=12)
    assert await client.put_block(proc.address, block, "rack-b", data) == len(data)
    rnd = random.Random(2)
    for _ in range(50):
        start = rnd.randrange(len(data))
        length = rnd.randrange(1, min(len(data) - start, 3 * CRC_CHUNK) + 1)
        assert await client.read_range(proc.address, block, start, length) == data[start:start + length]
    assert await client.read_range(proc.address, block, len(data) - 1, 1) == data[-1:]
    [info] = await client.list_blocks(proc.address)
    assert (info.block, info.domain, info.healthy, info.size) == (block, "rack-b", True, len(data))


async def test_bad_requests_are_precise(node):
    proc, client = node
    block = BlockId(volume=1, stripe=0, index=0)
    with pytest.raises(NotFound, match="holds no block 0 of stripe 0 of volume 1"):
        await client.read_range(proc.address, block, 0, 1)
    with pytest.raises(InvalidArgument, match=r"serves failure domains \['rack-a', 'rack-b'\], not 'rack-z'"):
        await client.put_block(proc.address, block, "rack-z", b"x")
    await client.put_block(proc.address, block, "rack-a", b"0123456789")
    with pytest.raises(OutOfRange, match=r"bytes \[5, 15\) are past the end of .* \(10 bytes\)"):
        await client.read_range(proc.address, block, 5, 10)


async def test_a_flipped_byte_is_data_loss_reported_unhealthy_and_a_new_put_heals_it(node, tmp_path):
    proc, client = node
    data = os.urandom(5 * CRC_CHUNK)
    block = BlockId(volume=2, stripe=1, index=3)
    await client.put_block(proc.address, block, "rack-a", data)
    path = tmp_path / "data" / "f4-storage-3" / "rack-a" / "v2" / "s1" / "b3.blk"
    with open(path, "r+b") as f:
        f.seek(2 * CRC_CHUNK + 100)
        f.write(bytes([data[2 * CRC_CHUNK + 100] ^ 1]))
    assert await client.read_range(proc.address, block, 0, CRC_CHUNK) == data[:CRC_CHUNK]  # other chunks are fine
    with pytest.raises(ChecksumMismatch, match="failed their checksum"):
        await client.read_range(proc.address, block, 2 * CRC_CHUNK + 50, 100)
    [info] = await client.list_blocks(proc.address)
    assert not info.healthy
    await client.put_block(proc.address, block, "rack-a", data)  # a rebuild puts it again
    assert await client.read_range(proc.address, block, 2 * CRC_CHUNK, CRC_CHUNK) == data[2 * CRC_CHUNK:3 * CRC_CHUNK]
    assert (await client.list_blocks(proc.address))[0].healthy


async def test_acknowledged_blocks_survive_kill_9_and_interrupted_puts_leave_nothing(service, tmp_path):
    port, mport = ports.free_port(), ports.free_port()
    proc = start_node(service, tmp_path / "data", port, mport)
    blocks = {BlockId(volume=4, stripe=s, index=i): os.urandom(30_000 + s + i) for s in range(2) for i in (0, 13)}
    async with rpc.ChannelPool() as pool:
        client = F4StorageClient(pool, timeout_s=TIMEOUT_S)
        for block, data in blocks.items():
            await client.put_block(proc.address, block, DOMAINS[block.index % 2], data)
    leftover = tmp_path / "data" / "f4-storage-3" / "rack-a" / "v4" / "s0" / "b5.blk.tmp"
    leftover.write_bytes(b"half a put")  # what a put cut short by a crash leaves
    proc.kill()
    proc = start_node(service, tmp_path / "data", port, mport)
    async with rpc.ChannelPool() as pool:
        client = F4StorageClient(pool, timeout_s=TIMEOUT_S)
        for block, data in blocks.items():
            assert await client.read_range(proc.address, block, 0, len(data)) == data
        assert {b.block for b in await client.list_blocks(proc.address)} == set(blocks)
    assert not leftover.exists()


async def test_a_block_damaged_on_the_way_is_data_loss_and_not_kept(node, tmp_path):
    from trenchcoat.v1 import f4_pb2, f4_pb2_grpc

    proc, client = node
    block = f4_pb2.BlockId(volume_id=9, stripe=0, index=1)

    async def messages():
        yield f4_pb2.PutBlockRequest(block=block, domain="rack-a", data=b"sent bytes")
        yield f4_pb2.PutBlockRequest(crc32c=12345)  # not the CRC32C of what arrived

    async with rpc.ChannelPool() as pool:
        stub = pool.stub(f4_pb2_grpc.F4StorageServiceStub, proc.address)
        with pytest.raises(ChecksumMismatch, match=r"arrived damaged .* nothing was kept"):
            await rpc.stream_in(stub.PutBlock, messages(), remote="f4 storage", timeout=TIMEOUT_S)

        async def headless():
            yield f4_pb2.PutBlockRequest(data=b"no block named")

        with pytest.raises(InvalidArgument, match="names the block and the failure domain"):
            await rpc.stream_in(stub.PutBlock, headless(), remote="f4 storage", timeout=TIMEOUT_S)
    assert await client.list_blocks(proc.address) == []
    assert not list((tmp_path / "data").rglob("*.blk*"))


async def test_the_scrub_finds_damage_nobody_reads_and_a_missing_block_file(service, tmp_path):
    from tests.cluster import eventually

    proc = start_node(service, tmp_path / "data", TRENCHCOAT_F4_STORAGE__SCRUB_INTERVAL_S="0.2")
    async with rpc.ChannelPool() as pool:
        client = F4StorageClient(pool, timeout_s=TIMEOUT_S)
        flipped, gone, intact = (BlockId(volume=6, stripe=0, index=i) for i in (0, 1, 2))
        for block in (flipped, gone, intact):
            await client.put_block(proc.address, block, "rack-a", os.urandom(4 * CRC_CHUNK))
        root = tmp_path / "data" / "f4-storage-3" / "rack-a" / "v6" / "s0"
        with open(root / "b0.blk", "r+b") as f:
            f.seek(3 * CRC_CHUNK + 7)
            byte = f.read(1)
            f.seek(3 * CRC_CHUNK + 7)
            f.write(bytes([byte[0] ^ 0x10]))
        (root / "b1.blk").unlink()

        async def unhealthy():
            return {b.block for b in await client.list_blocks(proc.address) if not b.healthy}

        assert await eventually(lambda: _both(unhealthy, {flipped, gone}), what="the scrub's findings")
        with pytest.raises(ChecksumMismatch, match="its file is gone"):
            await client.read_range(proc.address, gone, 0, 10)
        assert intact not in await unhealthy()


async def _both(unhealthy, wanted):
    return await unhealthy() == wanted


async def test_two_puts_of_one_block_at_once_leave_one_of_them_whole(node):
    import asyncio

    proc, client = node
    block = BlockId(volume=8, stripe=0, index=4)
    first, second = os.urandom(PUT_CHUNK * 3), os.urandom(PUT_CHUNK * 3)
    await asyncio.gather(client.put_block(proc.address, block, "rack-a", first),
                         client.put_block(proc.address, block, "rack-a", second))
    got = await client.read_range(proc.address, block, 0, len(first))
    assert got in (first, second)  # never a mix of the two
