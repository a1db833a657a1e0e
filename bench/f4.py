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
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
import time
from dataclasses import replace
from pathlib import Path

from prometheus_client import REGISTRY

from bench import common
from bench.store import rate, start
from f4 import codec
from f4.cell import Cell, Node, PlainBlob
from f4.layout import Geometry
from trenchcoat import procs, rpc
from trenchcoat.f4_client import F4StorageClient, KeyStoreClient
from trenchcoat.needle_ref import NeedleRef
from trenchcoat.store_client import StoreClient

BLOB_BYTES = 100 * 1024
GEOMETRY = Geometry(cell_bytes=1024 * 1024, rows=4)


def _env(tmp: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "TRENCHCOAT_CLUSTER__DATA_DIR": str(tmp / "cluster"),
            "TRENCHCOAT_CLUSTER__LOG_LEVEL": "WARNING", **extra}


def _reconstruct_bytes() -> float:
    return REGISTRY.get_sample_value("trenchcoat_f4_reconstruct_bytes_read_total") or 0.0


async def figures(tmp: Path, dsn: str, count: int, seconds: float) -> dict[str, float]:
    out: dict[str, float] = {}
    started: list[procs.ManagedProcess] = []
    domains = [f"rack-{i}" for i in range(codec.N)]
    nodes: list[Node] = []
    try:
        for n in range(2):
            port = procs.free_port()
            started.append(start([sys.executable, "-m", "f4.storage"], tmp / f"f4-storage-{n}.log", port, _env(
                tmp, TRENCHCOAT_F4_STORAGE__PORT=str(port), TRENCHCOAT_F4_STORAGE__METRICS_PORT=str(procs.free_port()),
                TRENCHCOAT_F4_STORAGE__NODE_ID=str(n + 1), TRENCHCOAT_F4_STORAGE__DOMAINS=",".join(domains[n::2]))))
            nodes.append(Node(f"127.0.0.1:{port}", tuple(domains[n::2])))
        kport = procs.free_port()
        started.append(start([sys.executable, "-m", "f4.keystore"], tmp / "keystore.log", kport, _env(
            tmp, TRENCHCOAT_POSTGRES__DSN=dsn, TRENCHCOAT_F4_KEYSTORE__PORT=str(kport),
            TRENCHCOAT_F4_KEYSTORE__METRICS_PORT=str(procs.free_port()))))
        sport = procs.free_port()
        started.append(start([sys.executable, "-m", "store"], tmp / "store.log", sport, _env(
            tmp, TRENCHCOAT_STORE__PORT=str(sport), TRENCHCOAT_STORE__METRICS_PORT=str(procs.free_port()),
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
            dead = f"127.0.0.1:{procs.free_port()}"
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
    finally:
        for p in reversed(started):
            p.stop()
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
