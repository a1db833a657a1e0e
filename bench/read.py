"""Benchmark of the read path: ``python -m bench.read [--quick] [--json]``.

A real cluster (private etcd and PostgreSQL, one directory, three stores on three racks,
a cache serving photo URLs over HTTP, a router, each its own process); CONCURRENCY
concurrent readers, for 1 KiB and 64 KiB photos:

- gateway_hit_per_s_*      GETs of photo URLs the cache holds (what the CDN pulls)
- gateway_miss_per_s_*     GETs of photos read for the first time, marked as from the CDN
                           (so not admitted): cache -> store every time
- grpc_read_per_s_*        MediaService.Read by media_id (cache hits after the first),
                           through MediaClient
- store_read_per_s_*       StoreService.ReadNeedle of the same bytes, straight to a store,
                           through StoreClient
- gateway_hit_vs_store_*   cache-hit GETs/s over direct Store reads/s
- gateway_miss_vs_store_*  first-read GETs/s over direct Store reads/s
with p50/p99 latency (ms) of each.
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
import time
from collections.abc import Awaitable, Callable

import aiohttp

from bench import common
from bench.upload import cluster_env, pct, start_cluster
from trenchcoat import rpc, urls
from trenchcoat.clients.media import Media, MediaClient
from trenchcoat.clients.store import StoreClient
from trenchcoat.errors import TrenchcoatError

CONCURRENCY = 16


async def timed(call: Callable[[int], Awaitable[None]], count: int | None, seconds: float) -> tuple[float, list[float]]:
    """Runs ``call(i)`` from CONCURRENCY workers, for ``count`` calls or ``seconds``."""
    latencies: list[float] = []
    counter = iter(range(count if count is not None else 10**12))
    stop = time.perf_counter() + seconds

    async def worker() -> None:
        for i in counter:
            if count is None and time.perf_counter() > stop:
                return
            began = time.perf_counter()
            await call(i)
            latencies.append(time.perf_counter() - began)

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return len(latencies) / (time.perf_counter() - began), latencies


async def upload_many(router: str, size: int, n: int) -> list[Media]:
    data = os.urandom(size)
    out: list[Media] = []
    async with rpc.ChannelPool() as pool:
        media = MediaClient(pool, router, timeout_s=60.0)

        async def one(i: int) -> None:
            for attempt in range(50):  # the first volumes may still be growing
                try:
                    out.append(await media.upload(data, owner_id=i + 1, content_type="image/jpeg"))
                    return
                except TrenchcoatError:
                    if attempt == 49:
                        raise
                    await asyncio.sleep(0.2)

        await timed(one, n, 0)
    return out


async def figures_for(cluster, size: int, label: str, misses: int, seconds: float) -> dict[str, float]:
    out: dict[str, float] = {}
    hot = await upload_many(cluster.router, size, 20)
    cold = await upload_many(cluster.router, size, misses)
    paths = ["/" + m.url.split("/", 3)[3] for m in hot]
    cold_paths = ["/" + m.url.split("/", 3)[3] for m in cold]

    def record(name: str, result: tuple[float, list[float]]) -> None:
        out[f"{name}_per_s_{label}"] = result[0]
        out[f"{name}_p50_ms_{label}"] = pct(result[1], 50)
        out[f"{name}_p99_ms_{label}"] = pct(result[1], 99)

    connector = aiohttp.TCPConnector(limit=CONCURRENCY, ssl=common.https_context())
    async with aiohttp.ClientSession(cluster.gateway, connector=connector) as session:
        for path in paths:  # user-direct reads admit the hot set
            async with session.get(path) as r:
                await r.read()

        async def hit(i: int) -> None:
            async with session.get(random.choice(paths)) as r:
                assert r.status == 200
                await r.read()

        async def miss(i: int) -> None:
            async with session.get(cold_paths[i], headers={"X-Trenchcoat-Via-CDN": "1"}) as r:
                assert r.status == 200
                await r.read()

        record("gateway_hit", await timed(hit, None, seconds))
        record("gateway_miss", await timed(miss, len(cold_paths), 0))
    async with rpc.ChannelPool() as pool:
        media = MediaClient(pool, cluster.router, timeout_s=60.0)

        async def grpc_read(i: int) -> None:
            await media.read(random.choice(hot).media_id)

        record("grpc_read", await timed(grpc_read, None, seconds))
    # The same bytes straight from a store holding them.
    needle = urls.parse_path(paths[0]).needle
    volume_replicas = list(cluster.stores)
    async with rpc.ChannelPool() as pool:
        store = StoreClient(pool, timeout_s=60.0)
        await store.read(volume_replicas[0], needle)  # every store holds every volume here (3 stores, 3 replicas)

        async def store_read(i: int) -> None:
            await store.read(volume_replicas[0], needle)

        record("store_read", await timed(store_read, None, seconds))
    out[f"gateway_hit_vs_store_{label}"] = out[f"gateway_hit_per_s_{label}"] / out[f"store_read_per_s_{label}"]
    out[f"gateway_miss_vs_store_{label}"] = out[f"gateway_miss_per_s_{label}"] / out[f"store_read_per_s_{label}"]
    return out


async def main() -> int:
    args = common.arguments(__doc__)
    seconds, misses = (3.0, 2000) if args.quick else (10.0, 8000)
    figures: dict[str, float] = {}
    with common.private_dependencies("bench-read-") as (tmp, etcd, dsn):
        cluster = start_cluster(tmp, cluster_env(tmp, "read", etcd, dsn, 3))
        try:
            for size, label in ((1024, "1k"), (64 * 1024, "64k")):
                figures.update(await figures_for(cluster, size, label, misses, seconds))
        finally:
            cluster.stop()
    common.report(figures, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
