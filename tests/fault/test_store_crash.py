"""kill -9 the store in the middle of concurrent writes: every acknowledged write reads
back byte-exact after restart, and nothing unacknowledged reads back corrupt."""

from __future__ import annotations

import asyncio
import hashlib
import os
import random

import grpc
import pytest

from tests.store_process import start_store
from trenchcoat import procs
from trenchcoat.v1 import store_pb2 as pb
from trenchcoat.v1 import store_pb2_grpc

pytestmark = pytest.mark.integration


def blob(key: int) -> bytes:
    rng = random.Random(key)
    size = rng.choice([10, 1000, 20_000, 200_000])
    return hashlib.sha256(str(key).encode()).digest() * (size // 32 + 1)


async def test_kill_9_mid_writes_loses_no_acknowledged_write(service, tmp_path):
    data_dir = tmp_path / "data"
    port, metrics_port = procs.free_port(), procs.free_port()
    proc = start_store(service, data_dir, port, metrics_port,
                       TRENCHCOAT_STORE__CHECKPOINT_INTERVAL_S="0.2")
    acked: set[int] = set()
    attempted: set[int] = set()
    async with grpc.aio.insecure_channel(proc.address) as channel:
        stub = store_pb2_grpc.StoreServiceStub(channel)
        await stub.CreateVolume(pb.CreateVolumeRequest(volume_id=1))

        async def writer(worker: int) -> None:
            for i in range(100_000):
                key = worker * 1_000_000 + i
                attempted.add(key)
                try:
                    await stub.WriteNeedle(
                        pb.WriteNeedleRequest(volume_id=1, key=key, cookie=key & 0xFFFF, data=blob(key)),
                        timeout=10,
                    )
                except grpc.aio.AioRpcError:
                    return
                acked.add(key)

        writers = [asyncio.ensure_future(writer(w)) for w in range(16)]
        await asyncio.sleep(1.5)
        os.kill(proc.process.pid, 9)  # mid-flight: some writes are half on disk
        await asyncio.gather(*writers)
    proc.process.stop()
    assert len(acked) > 50, "the store should have acknowledged writes before the kill"

    proc = start_store(service, data_dir, port, metrics_port)
    async with grpc.aio.insecure_channel(proc.address) as channel:
        stub = store_pb2_grpc.StoreServiceStub(channel)
        for key in sorted(attempted):
            try:
                got = await stub.ReadNeedle(pb.ReadNeedleRequest(volume_id=1, key=key, cookie=key & 0xFFFF))
            except grpc.aio.AioRpcError as exc:
                assert exc.code() == grpc.StatusCode.NOT_FOUND, f"key {key}: {exc.code()} {exc.details()}"
                assert key not in acked, f"acknowledged write {key} was lost"
                continue
            assert got.data == blob(key), f"key {key} read back different bytes"
        status = (await stub.VolumeStatus(pb.VolumeStatusRequest(volume_id=1))).volumes[0]
        assert status.needles >= len(acked)
        scrub = await stub.ScrubVolume(pb.ScrubVolumeRequest(volume_id=1))
        assert list(scrub.damaged) == []
