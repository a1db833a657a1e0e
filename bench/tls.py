"""Benchmark of mutual TLS: ``python -m bench.tls [--quick] [--json]``.

Two clusters of one shape (bench.upload's: a directory, three stores on three racks, a
cache, a router, each its own process, each on a private etcd and PostgreSQL): one as users
run it, with mutual TLS and the permission table on every gRPC hop, user tokens on uploads
and dependencies taking credentials over TLS; one with ``cluster.insecure = true``
(plaintext, its dependencies too), measured in the same run, in alternating rounds.
The clients pool their channels as every process does, so no call pays a handshake.

- upload_per_s_1k_tls / _plaintext, tls_vs_plaintext_upload_1k   1 KiB uploads from
  CONCURRENCY clients (client -> router -> three stores, each fdatasync'd)
- read_miss_per_s_1k_tls / _plaintext, tls_vs_plaintext_read_miss_1k   MediaService.Read of
  photos read for the first time (client -> router -> cache -> store: three gRPC hops)
- p99_ms_* of each

Ratios are of the medians over the rounds (3 rounds; 1 with --quick).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys

from bench import common
from bench.read import timed
from bench.upload import BenchCluster, cluster_env, pct, start_cluster
from trenchcoat import rpc
from trenchcoat.clients.media import MediaClient
from trenchcoat.errors import TrenchcoatError

SIZE = 1024


def plaintext_env(env: dict[str, str]) -> dict[str, str]:
    """``env`` with cluster.insecure and no TLS directory."""
    return {**{k: v for k, v in env.items() if k != common.TLS_DIR_KEY}, "TRENCHCOAT_CLUSTER__INSECURE": "true"}


async def ready(pool: rpc.ChannelPool, router: str) -> None:
    """Until an upload succeeds (the first volumes are made as the stores register)."""
    media = MediaClient(pool, router, timeout_s=60.0)
    for attempt in range(100):
        try:
            await media.upload(os.urandom(SIZE), owner_id=1, content_type="image/jpeg")
            return
        except TrenchcoatError:
            if attempt == 99:
                raise
            await asyncio.sleep(0.2)


async def round_of(cluster: BenchCluster, pool: rpc.ChannelPool, seconds: float, misses: int) -> dict[str, float]:
    media = MediaClient(pool, cluster.router, timeout_s=60.0)
    data = os.urandom(SIZE)
    uploaded: list[int] = []

    async def upload(i: int) -> None:
        uploaded.append((await media.upload(data, owner_id=i % 1000 + 1, content_type="image/jpeg")).media_id)

    upload_rate, upload_latencies = await timed(upload, None, seconds)
    while len(uploaded) < misses:  # enough photos never read, for the misses
        await timed(upload, misses - len(uploaded), 0)
    cold = uploaded[-misses:]

    async def read_miss(i: int) -> None:
        await media.read(cold[i])

    miss_rate, miss_latencies = await timed(read_miss, len(cold), 0)
    return {"upload_per_s_1k": upload_rate, "upload_p99_ms_1k": pct(upload_latencies, 99),
            "read_miss_per_s_1k": miss_rate, "read_miss_p99_ms_1k": pct(miss_latencies, 99)}


async def main() -> int:
    args = common.arguments(__doc__)
    rounds, seconds, misses = (1, 4.0, 600) if args.quick else (3, 10.0, 2000)
    results: dict[str, list[dict[str, float]]] = {"tls": [], "plaintext": []}
    with (common.private_dependencies("bench-tls-") as (tmp, etcd, dsn),
          common.private_dependencies("bench-plain-", secure=False) as (plain_tmp, plain_etcd, plain_dsn)):
        secure = start_cluster(tmp, cluster_env(tmp, "tls", etcd, dsn, 3))
        plain = start_cluster(plain_tmp, plaintext_env(cluster_env(plain_tmp, "plain", plain_etcd, plain_dsn, 3)))
        try:
            async with rpc.ChannelPool() as secure_pool, rpc.ChannelPool(tls=False) as plain_pool:
                shapes = {"tls": (secure, secure_pool), "plaintext": (plain, plain_pool)}
                for cluster, pool in shapes.values():
                    await ready(pool, cluster.router)
                for _ in range(rounds):
                    for name, (cluster, pool) in shapes.items():
                        results[name].append(await round_of(cluster, pool, seconds, misses))
        finally:
            secure.stop()
            plain.stop()
    figures: dict[str, float] = {}
    for name, runs in results.items():
        for key in runs[0]:
            figures[f"{key}_{name}"] = statistics.median(r[key] for r in runs)
    for what in ("upload", "read_miss"):
        figures[f"tls_vs_plaintext_{what}_1k"] = figures[f"{what}_per_s_1k_tls"] / figures[f"{what}_per_s_1k_plaintext"]
    common.report(figures, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
