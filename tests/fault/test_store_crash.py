"""kill -9 the store in the middle of concurrent writes: every acknowledged write reads
back byte-exact after restart, and nothing unacknowledged reads back corrupt."""

from __future__ import annotations

import asyncio
import hashlib
import os
import random

import pytest

from tests.store_process import start_store
from trenchcoat import rpc
from trenchcoat.clients.store import StoreClient
from trenchcoat.errors import TrenchcoatError
from trenchcoat.needle_ref import NeedleRef
from trenchcoat.ops import ports

pytestmark = pytest.mark.integration


def blob(key: int) -> bytes:
    rng = random.Random(key)
    size = rng.choice([10, 1000, 20_000, 200_000])
    return hashlib.sha256(str(key).encode()).digest() * (size // 32 + 1)


def needle(key: int) -> NeedleRef:
    return NeedleRef(logical_volume=1, key=key, cookie=key & 0xFFFF)


async def test_kill_9_mid_writes_loses_no_acknowledged_write(service, tmp_path):
    data_dir = tmp_path / "data"
    port, metrics_port = ports.free_port(), ports.free_port()
    proc = start_store(service, data_dir, port, metrics_port,
                       TRENCHCOAT_STORE__CHECKPOINT_INTERVAL_S="0.2")
    acked: set[int] = set()
    attempted: set[int] = set()
    async with rpc.ChannelPool() as pool:
        store = StoreClient(pool, timeout_s=30)
        await store.create(proc.address, 1)

        async def writer(worker: int) -> None:
            for i in range(100_000):
                key = worker * 1_000_000 + i
                attempted.add(key)
                try:
                    await store.write(proc.address, needle(key), blob(key), timeout_s=10)
                except TrenchcoatError:
                    return
                acked.add(key)

        writers = [asyncio.ensure_future(writer(w)) for w in range(16)]
        deadline = asyncio.get_running_loop().time() + 60
        while len(acked) < 200 and asyncio.get_running_loop().time() < deadline:  # writes under way
            await asyncio.sleep(0.02)
        os.kill(proc.process.pid, 9)  # mid-flight: some writes are half on disk
        await asyncio.gather(*writers)
    proc.process.stop()
    assert len(acked) > 50, "the store should have acknowledged writes before the kill"

    proc = start_store(service, data_dir, port, metrics_port)
    async with rpc.ChannelPool() as pool:
        store = StoreClient(pool, timeout_s=30)
        for key in sorted(attempted):
            try:
                got = (await store.read(proc.address, needle(key))).data
            except TrenchcoatError as exc:
                assert exc.status == "NOT_FOUND", f"key {key}: {exc.status} {exc}"
                assert key not in acked, f"acknowledged write {key} was lost"
                continue
            assert got == blob(key), f"key {key} read back different bytes"
        status = (await store.status(proc.address, 1))[1]
        assert status.needles >= len(acked)
        _, damaged = await store.scrub(proc.address, 1)
        assert damaged == []
