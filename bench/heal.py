"""Benchmarks of the hot tier's healing: ``python -m bench.heal [--quick] [--json]``.

Store processes on this machine, driven through ``StoreClient`` (no directory: each
figure isolates one mechanism), every figure a ratio against a baseline of the same run:

- ``audit_mb_per_s`` (at ``store.audit_bytes_per_s``) and
  ``live_read_p99_during_audit_vs_idle``: a store restarted over a volume of needles
  audits it at once (a pass starts at boot); ReadNeedle p99 of random needles while that
  pass runs, over the p99 once it is done (the next pass is an hour away). Aim <= 1.2.
- ``catchup_bytes_per_missing_byte``: two copies of a volume, one missing the last 1,000
  appends; ``CatchUpVolume`` brings it level: bytes it received (digest, listing, needles)
  over the stored bytes it lacked. Aim <= 1.1. ``whole_copy_bytes_per_missing_byte`` is
  what copying the volume whole would have moved instead.
- ``rereplication_mb_per_s`` (at the throttle) and
  ``live_upload_p99_during_rereplication_vs_idle``: a new store copies a volume
  (``RepairVolume`` at ``bytes_per_s``, in the leader's chunks) from a store that keeps taking uploads (WriteNeedle
  to another volume on both); upload p99 during the copy over the p99 without it. Aim <= 1.5.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp

from bench import common
from bench.store import start
from directory.rereplication import CHUNK_BYTES
from trenchcoat import needle, rpc
from trenchcoat.clients.store import StoreClient
from trenchcoat.needle_ref import NeedleRef
from trenchcoat.ops import ports, processes

MiB = 1024 * 1024


class Store:
    """One store process on free ports, with its data under ``root``."""

    def __init__(self, root: Path, machine_id: int, **settings: str) -> None:
        self.root, self.machine_id, self.settings = root, machine_id, settings
        self.port, self.mport, self.hport = ports.free_port(), ports.free_port(), ports.free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.process: processes.ManagedProcess | None = None

    def start(self, **settings: str) -> None:
        env = {**os.environ, "TRENCHCOAT_CLUSTER__DATA_DIR": str(self.root),
               "TRENCHCOAT_STORE__MACHINE_ID": str(self.machine_id),
               "TRENCHCOAT_STORE__PORT": str(self.port), "TRENCHCOAT_STORE__METRICS_PORT": str(self.mport),
               "TRENCHCOAT_STORE__HTTP_PORT": str(self.hport), "TRENCHCOAT_STORE__COUNT": "1",
               "TRENCHCOAT_ETCD__ENDPOINTS": "", "TRENCHCOAT_CLUSTER__LOG_LEVEL": "WARNING",
               "TRENCHCOAT_STORE__VOLUME_CAPACITY_BYTES": str(8 * 1024 * MiB),
               **{f"TRENCHCOAT_STORE__{k.upper()}": v for k, v in {**self.settings, **settings}.items()}}
        self.process = start([sys.executable, "-m", "store"], self.root / f"store-{self.machine_id}.log", self.port,
                             env)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None


def p99(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=100)[98] if len(samples) >= 100 else max(samples)


async def timed(call: Callable[[], Awaitable[object]], until: Callable[[], bool], concurrency: int) -> list[float]:
    """Latencies of ``call`` made by ``concurrency`` workers until ``until()``."""
    out: list[float] = []

    async def worker() -> None:
        while not until():
            began = time.perf_counter()
            await call()
            out.append(time.perf_counter() - began)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return out


async def fill(client: StoreClient, address: str, volume_id: int, count: int, size: int, seed: int,
               first_key: int = 1) -> list[NeedleRef]:
    rng = random.Random(seed)
    refs = [NeedleRef(logical_volume=volume_id, key=k, cookie=rng.getrandbits(32))
            for k in range(first_key, first_key + count)]
    for start_at in range(0, count, 64):
        batch = refs[start_at:start_at + 64]
        await asyncio.gather(*(client.write(address, r, rng.randbytes(size)) for r in batch))
    return refs


async def audit_figures(tmp: Path, quick: bool) -> dict[str, float]:
    throttle = 16 * MiB if quick else 32 * MiB
    volume_bytes = 96 * MiB if quick else 512 * MiB
    size = 64 * 1024
    store = Store(tmp / "audit", 1, audit_interval_s="3600", audit_bytes_per_s=str(throttle))
    store.start()
    try:
        async with rpc.ChannelPool() as pool:
            client = StoreClient(pool, timeout_s=60)
            await client.create(store.address, 1)
            refs = await fill(client, store.address, 1, volume_bytes // size, size, seed=1)
        store.stop()
        began = time.monotonic()
        store.start()  # a pass starts at boot: over the whole volume, at the throttle
        async with rpc.ChannelPool() as pool:
            client = StoreClient(pool, timeout_s=60)

            def read() -> Awaitable[object]:
                return client.read(store.address, random.choice(refs))

            passes = [0.0]

            def audit_done() -> bool:
                return passes[0] > 0

            async def watch() -> None:
                while not passes[0]:
                    passes[0] = await metric(store, "trenchcoat_store_audit_pass_seconds")
                    await asyncio.sleep(0.25)

            during, _ = await asyncio.gather(timed(read, audit_done, 4), watch())
            audited = await metric(store, "trenchcoat_store_audited_bytes_total")
            stop_at = time.monotonic() + max(3.0, min(10.0, passes[0]))
            idle = await timed(read, lambda: time.monotonic() >= stop_at, 4)
    finally:
        store.stop()
    return {"audit_mb_per_s": audited / passes[0] / MiB, "audit_throttle_mb_per_s": throttle / MiB,
            "audit_pass_s": passes[0], "audit_seconds_since_boot": time.monotonic() - began,
            "live_read_p99_ms_during_audit": p99(during) * 1000, "live_read_p99_ms_idle": p99(idle) * 1000,
            "live_read_p99_during_audit_vs_idle": p99(during) / p99(idle)}


async def catchup_figures(tmp: Path, quick: bool) -> dict[str, float]:
    a, b = Store(tmp / "catchup", 1), Store(tmp / "catchup", 2)
    a.start()
    b.start()
    try:
        async with rpc.ChannelPool() as pool:
            client = StoreClient(pool, timeout_s=60)
            for s in (a, b):
                await client.create(s.address, 1)
            base = 2000 if quick else 20_000
            rng = random.Random(3)
            for k in range(1, base + 1, 64):  # the needles both copies hold
                batch = [(NeedleRef(logical_volume=1, key=x, cookie=x), rng.randbytes(rng.randint(2000, 30000)))
                         for x in range(k, min(k + 64, base + 1))]
                await asyncio.gather(*(client.write(s.address, r, d) for s in (a, b) for r, d in batch))
            missing = 0
            for k in range(base + 1, base + 1001, 64):  # 1,000 appends that reached only the first
                batch = [(NeedleRef(logical_volume=1, key=x, cookie=x), rng.randbytes(rng.randint(2000, 30000)))
                         for x in range(k, min(k + 64, base + 1001))]
                await asyncio.gather(*(client.write(a.address, r, d) for r, d in batch))
                missing += sum(needle.stored_size(len(d)) for _, d in batch)
            began = time.perf_counter()
            done = await client.catch_up(b.address, 1, a.address)
            took = time.perf_counter() - began
            whole = (await client.status(a.address, 1))[1].file_bytes
            same = (await client.status(a.address, 1))[1].digest == (await client.status(b.address, 1))[1].digest
    finally:
        a.stop()
        b.stop()
    assert same and done.needles_copied == 1000, (same, done)
    return {"catchup_bytes_per_missing_byte": done.bytes_received / missing,
            "whole_copy_bytes_per_missing_byte": whole / missing, "catchup_s": took,
            "catchup_needles_in_volume": base + 1000}


async def rereplication_figures(tmp: Path, quick: bool, chunk_bytes: int = CHUNK_BYTES) -> dict[str, float]:
    throttle = 16 * MiB if quick else 32 * MiB
    volume_bytes = 96 * MiB if quick else 512 * MiB
    source, target = Store(tmp / "rerep", 1), Store(tmp / "rerep", 2)
    source.start()
    target.start()
    try:
        async with rpc.ChannelPool() as pool:
            client = StoreClient(pool, timeout_s=120)
            await client.create(source.address, 1)
            await fill(client, source.address, 1, volume_bytes // (64 * 1024), 64 * 1024, seed=5)
            for s in (source, target):
                await client.create(s.address, 2)  # the volume live uploads go to
            keys = iter(range(1, 10**9))
            payload = os.urandom(32 * 1024)

            def upload() -> Awaitable[object]:
                ref = NeedleRef(logical_volume=2, key=next(keys), cookie=1)
                return asyncio.gather(client.write(source.address, ref, payload),
                                      client.write(target.address, ref, payload))

            stop_at = time.monotonic() + (4.0 if quick else 10.0)
            idle = await timed(upload, lambda: time.monotonic() >= stop_at, 4)
            copy = asyncio.ensure_future(client.repair(target.address, 1, source.address, chunk_bytes,
                                                       bytes_per_s=throttle))
            began = time.perf_counter()
            during = await timed(upload, copy.done, 4)
            copied = await copy
            took = time.perf_counter() - began
    finally:
        source.stop()
        target.stop()
    return {"rereplication_mb_per_s": copied / took / MiB, "rereplication_throttle_mb_per_s": throttle / MiB,
            "live_upload_p99_ms_during_rereplication": p99(during) * 1000, "live_upload_p99_ms_idle": p99(idle) * 1000,
            "live_upload_p99_during_rereplication_vs_idle": p99(during) / p99(idle)}


async def metric(store: Store, name: str) -> float:
    """An unlabelled sample of the store's /metrics (0 when absent)."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=common.https_context())) as session, \
            session.get(f"https://127.0.0.1:{store.mport}/metrics") as r:
        text = await r.text()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


async def main() -> int:
    args = common.arguments(__doc__)
    tmp = Path(tempfile.mkdtemp(prefix="bench-heal-"))
    figures: dict[str, float] = {}
    try:
        figures.update(await audit_figures(tmp, args.quick))
        figures.update(await catchup_figures(tmp, args.quick))
        figures.update(await rereplication_figures(tmp, args.quick))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    common.report(figures, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
