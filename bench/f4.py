"""Benchmark of the f4 warm tier: ``python -m bench.f4 [--quick] [--json]``.

Real processes: a private PostgreSQL, the key store, a hot store, and f4 storage nodes
(two processes standing for 14 failure domains). The cell's encoder and reader
(``f4.cell.Cell``, what the f4 front runs) work from this process, as the front would.
Blobs are 100 KiB of random bytes (1,200 of them; 300 with --quick).

- encode_mb_per_s          logical MB/s of Cell.encode: seal, lay out, RS(10,4) parity,
                           14 durable block puts, the manifest
- pyeclib_mb_per_s         RS(10,4) row encoding alone (f4.codec.encode_row) of the
                           same bytes, this process
- encode_vs_pyeclib        the first over the second
- hot_read_per_s           StoreService.ReadNeedle of the blobs from the hot store, c=16
- warm_read_per_s          Cell.read of the same blobs (key from the key store, one or
                           two range reads of data blocks, decrypt, CRC), c=16
- warm_read_vs_hot_read
- degraded_read_per_s      Cell.read with the node of the blobs' data block unreachable:
                           every read rebuilds its extent from 10 other blocks
- degraded_read_vs_warm_read
- reconstruct_bytes_per_blob_byte  bytes read from surviving blocks per byte rebuilt
                           (aim <= 11: ranges, never whole blocks)
- disk_per_logical_warm    bytes of every block of every stripe over the blobs' bytes
                           (aim <= 1.45 per cell)
- rebuild_throttle_mb_per_s  the rebuilder's throttle: bytes a second read from the 10
                           surviving blocks (f4.rebuild_bytes_per_s's default, 32 MiB/s)
- rebuild_mb_per_s         MB/s of block bytes rebuilt whole (f4.rebuild.Rebuilder in
                           place, one block after another, each put and read back),
                           nothing else running
- rebuild_vs_throttle      rebuild_mb_per_s x 10 over the throttle (close to, never
                           above, 1)
- rebuild_mb_per_s_during_reads  the same while the live reads below run (each round
                           over when the block under way is done)
- live_p99_idle_ms         p99 of Cell.read (c=16) with nothing else running
- live_p99_during_rebuild_ms  the same while a throttled rebuild runs
- live_p99_during_rebuild_vs_idle  the second over the first (aim <= 1.5)
- disk_per_logical_xor     XOR geo-replication over three cells (two storage nodes
                           each, 14 failure domains a cell): two volumes of the same
                           blobs' count encoded by the front (f4.front.Front), paired,
                           the XOR written; bytes of every block file on disk in all
                           three cells over the two volumes' bytes (aim <= 2.2)

The rebuilder runs in a process of its own, as ``python -m f4.rebuilder`` does, so its
decoding never runs on the reader's event loop; idle and rebuilding rounds of live reads
alternate (four of each), so a neighbour's burst of load lands on both.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import random
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event
from pathlib import Path

from prometheus_client import REGISTRY

from bench import common
from bench.store import CONCURRENCY, rate, start
from f4 import codec
from f4.cell import Cell, Node, PlainBlob
from f4.front import Front
from f4.geo import Region
from f4.layout import Geometry
from f4.manifest import MANIFEST_STRIPE, Manifest
from f4.rebuild import Journal, Rebuilder, target
from trenchcoat import rpc
from trenchcoat.clients.f4 import F4StorageClient, KeyStoreClient
from trenchcoat.clients.store import StoreClient
from trenchcoat.config import F4Config, F4RebuilderConfig
from trenchcoat.needle_ref import NeedleRef
from trenchcoat.ops import ports, processes

BLOB_BYTES = 100 * 1024
GEOMETRY = Geometry(cell_bytes=1024 * 1024, rows=4)
THROTTLE_BYTES_PER_S = F4Config().rebuild_bytes_per_s
ROUNDS = 4
"""Idle and rebuilding rounds of live reads, alternating, of seconds / ROUNDS each."""


def _env(tmp: Path, **extra: str) -> dict[str, str]:
    # Each process runs alone on its own free ports: a count above 1 would make its config
    # claim port + i and metrics_port + i for siblings, which may clash with another free port.
    return {**os.environ, "TRENCHCOAT_CLUSTER__DATA_DIR": str(tmp / "cluster"),
            "TRENCHCOAT_CLUSTER__LOG_LEVEL": "WARNING", "TRENCHCOAT_F4_STORAGE__COUNT": "1", **extra}


def _reconstruct_bytes() -> float:
    return REGISTRY.get_sample_value("trenchcoat_f4_reconstruct_bytes_read_total") or 0.0


async def latencies(call: Callable[[], Awaitable[object]], seconds: float) -> list[float]:
    """Seconds each ``call()`` took, from CONCURRENCY concurrent tasks for ``seconds``."""
    took: list[float] = []
    stop = time.perf_counter() + seconds

    async def worker() -> None:
        while time.perf_counter() < stop:
            began = time.perf_counter()
            await call()
            took.append(time.perf_counter() - began)

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return took


def p99(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=100)[98]


def rebuild_process(conn: Connection, stop: Event, raw_manifest: bytes, journal: str) -> None:
    """The rebuilder's process: rebuilds the manifest's blocks in place, whole, one after
    another, in rounds the parent asks for over ``conn``: ``("for", seconds)`` until
    ``seconds`` have passed, ``("until",)`` until ``stop`` is set; each finishes the block
    under way. A round answers ``("started",)``, then (block bytes rebuilt, seconds)."""
    asyncio.run(_rebuild_rounds(conn, stop, Manifest.from_bytes(raw_manifest), Path(journal)))


async def _rebuild_rounds(conn: Connection, stop: Event, manifest: Manifest, journal: Path) -> None:
    domains: dict[str, list[str]] = {}
    for stripe in manifest.stripes:
        for node, domain in stripe.blocks:
            domains.setdefault(domain, []).append(node)
    blocks = [(s.number, i) for s in manifest.stripes for i in range(codec.N)]
    turn = 0
    async with rpc.ChannelPool() as pool:
        rebuilder = Rebuilder(F4StorageClient(pool, timeout_s=30.0), THROTTLE_BYTES_PER_S, Journal(journal),
                              step_bytes=F4RebuilderConfig().step_bytes)
        while (ask := await asyncio.to_thread(conn.recv)) != ("quit",):
            began = time.perf_counter()
            rebuilt = 0
            conn.send(("started",))
            while not stop.is_set() if ask[0] == "until" else time.perf_counter() - began < ask[1]:
                number, index = blocks[turn % len(blocks)]
                turn += 1
                onto = target(manifest.stripes[number], index, domains, node_answers=True)
                rebuilt += (await rebuilder.rebuild(manifest, number, index, onto, reason="requested")).total_bytes
            conn.send((rebuilt, time.perf_counter() - began))


async def figures(tmp: Path, dsn: str, count: int, seconds: float) -> dict[str, float]:
    out: dict[str, float] = {}
    started: list[processes.ManagedProcess] = []
    domains = [f"rack-{i}" for i in range(codec.N)]
    nodes: list[Node] = []
    try:
        for n in range(2):
            port = ports.free_port()
            started.append(start([sys.executable, "-m", "f4.storage"], tmp / f"f4-storage-{n}.log", port, _env(
                tmp, TRENCHCOAT_F4_STORAGE__PORT=str(port), TRENCHCOAT_F4_STORAGE__METRICS_PORT=str(ports.free_port()),
                TRENCHCOAT_F4_STORAGE__NODE_ID=str(n + 1), TRENCHCOAT_F4_STORAGE__DOMAINS=",".join(domains[n::2]))))
            nodes.append(Node(f"127.0.0.1:{port}", tuple(domains[n::2])))
        kport = ports.free_port()
        started.append(start([sys.executable, "-m", "f4.keystore"], tmp / "keystore.log", kport, _env(
            tmp, TRENCHCOAT_POSTGRES__DSN=dsn, TRENCHCOAT_F4_KEYSTORE__PORT=str(kport),
            TRENCHCOAT_F4_KEYSTORE__METRICS_PORT=str(ports.free_port()))))
        sport = ports.free_port()
        started.append(start([sys.executable, "-m", "store"], tmp / "store.log", sport, _env(
            tmp, TRENCHCOAT_STORE__PORT=str(sport), TRENCHCOAT_STORE__METRICS_PORT=str(ports.free_port()),
            TRENCHCOAT_STORE__HTTP_PORT="0", TRENCHCOAT_STORE__COUNT="1")))
        rnd = random.Random(1)
        blobs = [PlainBlob(key=10_000 + i, alternate_key=0, cookie=rnd.getrandbits(32), media_type=1,
                           data=rnd.randbytes(BLOB_BYTES)) for i in range(count)]
        logical = count * BLOB_BYTES
        async with rpc.ChannelPool() as pool:
            storage = F4StorageClient(pool, timeout_s=30.0)
            keys = KeyStoreClient(pool, f"127.0.0.1:{kport}", timeout_s=30.0)
            cell = Cell(storage, keys, nodes, GEOMETRY, hedge_s=5.0)

            async def feed():
                for blob in blobs:
                    yield blob

            began = time.perf_counter()
            manifest = await cell.encode(1, feed())
            out["encode_mb_per_s"] = logical / (time.perf_counter() - began) / 1e6
            stream = b"".join(b.data for b in blobs)  # the same bytes, laid out in stripes and rows as encode does
            began = time.perf_counter()
            for first in range(0, len(stream), GEOMETRY.stripe_capacity):  # raw pyeclib: rows coded, nothing kept
                part = stream[first:first + GEOMETRY.stripe_capacity]
                position = 0
                for _, cell_bytes in GEOMETRY.rows_of(len(part)):
                    codec.encode_row(GEOMETRY.split_row(part[position:position + codec.K * cell_bytes], cell_bytes))
                    position += codec.K * cell_bytes
            out["pyeclib_mb_per_s"] = logical / (time.perf_counter() - began) / 1e6
            out["encode_vs_pyeclib"] = out["encode_mb_per_s"] / out["pyeclib_mb_per_s"]
            out["disk_per_logical_warm"] = manifest.stored_bytes / logical

            hot = StoreClient(pool, timeout_s=30.0)
            address = f"127.0.0.1:{sport}"
            await hot.create(address, 1)
            refs = []
            for b in blobs:
                ref = NeedleRef(logical_volume=1, key=b.key, cookie=b.cookie)
                await hot.write(address, ref, b.data)
                refs.append(ref)

            async def hot_read() -> None:
                await hot.read(address, random.choice(refs))

            async def warm_read() -> None:
                b = random.choice(blobs)
                await cell.read(manifest, b.key, 0, b.cookie)

            await warm_read()  # the key store's cache and channels warmed like the store's
            out["hot_read_per_s"] = await rate(hot_read, seconds)
            out["warm_read_per_s"] = await rate(warm_read, seconds)
            out["warm_read_vs_hot_read"] = out["warm_read_per_s"] / out["hot_read_per_s"]

            # Degraded: the blocks in the first of the two nodes unreachable for the reader
            # (data block 0 of every stripe lives there); reads of blobs in that block rebuild.
            dead = f"127.0.0.1:{ports.free_port()}"
            lost = {s.number: 0 for s in manifest.stripes}
            degraded = replace(manifest, stripes=[
                replace(s, blocks=tuple((dead, d) if i == lost[s.number] else (a, d)
                                        for i, (a, d) in enumerate(s.blocks)))
                for s in manifest.stripes])
            in_lost = [b for b in blobs if all(
                e.block == 0 for e in GEOMETRY.extents(manifest.stripes[manifest.blobs[b.key, 0].stripe].data_bytes,
                                                       manifest.blobs[b.key, 0].offset,
                                                       manifest.blobs[b.key, 0].sealed_length))]
            read_bytes = _reconstruct_bytes()
            rebuilt = 0
            for b in in_lost:
                got = await cell.read(degraded, b.key, 0, b.cookie)
                assert got.reconstructed and got.data == b.data
                rebuilt += manifest.blobs[b.key, 0].sealed_length
            out["reconstruct_bytes_per_blob_byte"] = (_reconstruct_bytes() - read_bytes) / rebuilt

            async def degraded_read() -> None:
                b = random.choice(in_lost)
                await cell.read(degraded, b.key, 0, b.cookie)

            out["degraded_read_per_s"] = await rate(degraded_read, seconds)
            out["degraded_read_vs_warm_read"] = out["degraded_read_per_s"] / out["warm_read_per_s"]
            out |= await rebuild_figures(tmp, manifest, warm_read, seconds)
            out["disk_per_logical_xor"] = await xor_figure(tmp, started, storage, keys, blobs)
    finally:
        for p in reversed(started):
            p.stop()
    return out


async def xor_figure(tmp: Path, started: list[processes.ManagedProcess], storage: F4StorageClient,
                     keys: KeyStoreClient, blobs: list[PlainBlob]) -> float:
    """Effective replication with XOR geo-replication, measured on disk."""
    cells = ("east", "west", "xor")
    endpoints = []
    for c, name in enumerate(cells):
        domains = [f"{name}-{i}" for i in range(codec.N)]
        for half in range(2):
            port, node_id = ports.free_port(), 100 + 2 * c + half
            started.append(start([sys.executable, "-m", "f4.storage"], tmp / f"f4-storage-{node_id}.log", port, _env(
                tmp, TRENCHCOAT_F4_STORAGE__PORT=str(port), TRENCHCOAT_F4_STORAGE__METRICS_PORT=str(ports.free_port()),
                TRENCHCOAT_F4_STORAGE__NODE_ID=str(node_id), TRENCHCOAT_F4_STORAGE__CELL=name,
                TRENCHCOAT_F4_STORAGE__DOMAINS=",".join(domains[half::2]))))
            endpoints.append(f"127.0.0.1:{port}")
    front = Front(Region(storage, keys, GEOMETRY, cells), storage, keys, endpoints, None, None,  # type: ignore[arg-type]
                  call_timeout_s=30.0)
    await front.refresh_nodes()
    halves = [[replace(b, key=b.key + 1_000_000 * (v + 1)) for b in blobs] for v in range(2)]
    for volume, its_blobs in zip((101, 102), halves, strict=True):
        async def feed(its_blobs: list[PlainBlob] = its_blobs) -> AsyncIterator[PlainBlob]:
            for blob in its_blobs:
                yield blob

        await front.encode_from(volume, [("bench", feed)])
    paired = await front.manifest(101, fresh=True)
    if not paired.buddy:
        raise RuntimeError("the two volumes were not paired")
    on_disk = sum(p.stat().st_size for n in range(100, 106) for p in (tmp / "cluster" / f"f4-storage-{n}").rglob("*.blk")
                  if p.parent.name != f"s{MANIFEST_STRIPE}")
    return on_disk / sum(len(b.data) for volume_blobs in halves for b in volume_blobs)


async def rebuild_figures(tmp: Path, manifest: Manifest, warm_read: Callable[[], Awaitable[None]],
                          seconds: float) -> dict[str, float]:
    """Whole-block rebuilds in place at the default throttle, alone and under live reads,
    from a rebuilder process of their own; and the live reads' p99 idle and meanwhile."""
    out: dict[str, float] = {"rebuild_throttle_mb_per_s": THROTTLE_BYTES_PER_S / 1e6}
    context = multiprocessing.get_context("spawn")
    conn, child_conn = context.Pipe()
    stop = context.Event()
    child = context.Process(target=rebuild_process, name="bench-f4-rebuilder",
                            args=(child_conn, stop, manifest.to_bytes(), str(tmp / "rebuild-journal")))
    child.start()
    child_conn.close()  # the child's end is the child's alone: its exit ends our reads with EOFError

    async def answer() -> tuple[float, ...]:
        try:
            return await asyncio.to_thread(conn.recv)
        except EOFError:
            raise RuntimeError(f"the rebuilder process exited ({child.exitcode})") from None

    try:
        conn.send(("for", seconds))
        await answer()
        rebuilt, took = await answer()
        out["rebuild_mb_per_s"] = rebuilt / took / 1e6
        out["rebuild_vs_throttle"] = out["rebuild_mb_per_s"] * codec.K / out["rebuild_throttle_mb_per_s"]
        idle: list[float] = []
        busy: list[float] = []
        during = [0.0, 0.0]
        for _ in range(ROUNDS):
            idle += await latencies(warm_read, seconds / ROUNDS)
            conn.send(("until",))
            await answer()  # the rebuild is under way
            busy += await latencies(warm_read, seconds / ROUNDS)
            stop.set()
            rebuilt, took = await answer()  # once the block under way is done: the next idle round is idle
            stop.clear()
            during = [during[0] + rebuilt, during[1] + took]
        out["rebuild_mb_per_s_during_reads"] = during[0] / during[1] / 1e6
        out["live_p99_idle_ms"] = p99(idle) * 1e3
        out["live_p99_during_rebuild_ms"] = p99(busy) * 1e3
        out["live_p99_during_rebuild_vs_idle"] = out["live_p99_during_rebuild_ms"] / out["live_p99_idle_ms"]
    finally:
        if child.is_alive():
            conn.send(("quit",))
        await asyncio.to_thread(child.join, 30)
        if child.is_alive():
            child.kill()
            child.join()
    return out


async def main() -> int:
    args = common.arguments(__doc__)
    count, seconds = (300, 3.0) if args.quick else (1200, 8.0)
    with common.private_dependencies("bench-f4-") as (tmp, _etcd, dsn):
        result = await figures(tmp, dsn, count, seconds)
    common.report(result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
