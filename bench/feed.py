"""Benchmark of the feed: ``python -m bench.feed [--quick] [--json]``.

A real cluster (private etcd, PostgreSQL and Redis; a directory, three stores, a cache, a
router; the feed and two fan-out workers, each its own process); followers written
straight into PostgreSQL (following a million users through the API would take hours):

- post_latency_celebrity_vs_normal  p50 latency of Post by an author with FOLLOWERS_BIG
                                    followers over one with 10 (aim <= 1.2: no follower work
                                    on the request path)
- fanout_entries_per_s              timeline entries written per second fanning out one post
                                    to FANOUT followers (post committed -> last timeline written)
- redis_pipeline_entries_per_s      raw pipelined ZADDs of the same entries, from this process
- fanout_vs_redis_pipeline          the two over each other (aim >= 0.5)
- fanout_lag_s                      seconds from the post's commit to its last timeline write
                                    (fan-out and raw rates: medians of three, alternated)
- home_reads_per_s                  hydrated pages of 20, concurrency 16, a reader following
                                    10 authors
- celebrity_splice_cost             reads/s of a reader following the same 10 and 5 celebrities
                                    over the first (aim >= 0.7)
- hydration_backend_calls_per_id    media ids asked of BatchStat per entry of a cold page read
                                    by 1,000 readers at once (must be 1.0)
"""

from __future__ import annotations

import asyncio
import os
import re
import statistics
import sys
import time
import urllib.request
from pathlib import Path

import asyncpg
import redis.asyncio as aioredis

from bench import common
from bench.store import start
from bench.upload import cluster_env, start_cluster
from trenchcoat import rpc
from trenchcoat.clients.feed import FeedClient
from trenchcoat.clients.media import MediaClient
from trenchcoat.errors import TrenchcoatError
from trenchcoat.ids import to_signed
from trenchcoat.ops import ports, processes

CONCURRENCY = 16
NORMAL_AUTHORS = range(1000, 1010)
CELEBRITIES = range(2000, 2005)
BIG, NORMAL, FANOUT_AUTHOR = 1, 2, 3
READER_PLAIN, READER_SPLICED, READER_COLD = 10, 11, 12


def metric(url: str, name: str) -> float:
    text = urllib.request.urlopen(url, timeout=10, context=common.https_context()).read().decode()
    return sum(float(v) for v in re.findall(rf"^{re.escape(name)}(?:{{[^}}]*}})? (\S+)", text, re.MULTILINE))


async def followers(dsn: str, author: int, n: int, first: int) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("INSERT INTO feed_follows (follower_id, followee_id)"
                           " SELECT f, $1 FROM generate_series($3::bigint, $3::bigint + $2 - 1) AS f", author, n, first)
        await conn.execute("INSERT INTO feed_authors (user_id, followers) VALUES ($1, $2)"
                           " ON CONFLICT (user_id) DO UPDATE SET followers = feed_authors.followers + $2", author, n)
    finally:
        await conn.close()


async def fanout_seconds(dsn: str, media_id: int, timeout: float = 600) -> float:
    """Seconds from the post's commit to its fan-out's end (the row's own timestamps)."""
    conn = await asyncpg.connect(dsn)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            row = await conn.fetchrow("SELECT extract(epoch FROM fanned_out_at - created_at) AS s FROM feed_posts"
                                      " WHERE post_id = $1 AND fanned_out_at IS NOT NULL", to_signed(media_id))
            if row is not None:
                return float(row["s"])
            await asyncio.sleep(0.05)
        raise TimeoutError(f"the fan-out of {media_id} did not finish in {timeout:.0f}s")
    finally:
        await conn.close()


async def raw_pipeline_rate(redis_url: str, n: int, batch: int) -> float:
    """Entries/s of pipelined ZADDs into ``n`` keys, ``batch`` a round trip."""
    r = aioredis.Redis.from_url(redis_url)
    try:
        member = b"%016x%016x" % (123456789, 42)
        began = time.perf_counter()
        for start_at in range(0, n, batch):
            pipe = r.pipeline(transaction=False)
            for u in range(start_at, min(start_at + batch, n)):
                pipe.zadd(f"raw:{{u{u}}}", {member: 0})
            await pipe.execute()
        return n / (time.perf_counter() - began)
    finally:
        await r.aclose()


async def upload_and_post(media: MediaClient, feed: FeedClient, author: int, caption: str = "") -> int:
    uploaded = await media.upload(os.urandom(256), owner_id=author, content_type="image/jpeg")
    return (await feed.post(author, uploaded.media_id, caption or f"by {author}")).media_id


async def post_latencies(media: MediaClient, feed: FeedClient, authors: tuple[int, ...], n: int) -> list[float]:
    """p50 of Post alone for each author (the uploads happen first, untimed), the authors'
    posts interleaved so neither side gets the warmer moments."""
    ids = {a: [(await media.upload(os.urandom(128), owner_id=a, content_type="image/jpeg")).media_id
               for _ in range(n)] for a in authors}
    latencies: dict[int, list[float]] = {a: [] for a in authors}
    for k in range(n):
        for a in authors:
            began = time.perf_counter()
            await feed.post(a, ids[a][k], "timed")
            latencies[a].append(time.perf_counter() - began)
    return [statistics.median(latencies[a]) for a in authors]


async def reads_per_s(feed: FeedClient, user: int, seconds: float) -> float:
    stop = time.perf_counter() + seconds
    done = 0

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < stop:
            await feed.home(user, limit=20, hydrate=True)
            done += 1

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return done / (time.perf_counter() - began)


def start_feed(tmp: Path, env: dict[str, str], router: str, workers: int) -> tuple[list[processes.ManagedProcess], str, str]:
    """The feed and its fan-out workers: (processes, feed address, feed metrics URL)."""
    out = []
    port, mport = ports.free_port(), ports.free_port()
    out.append(start([sys.executable, "-m", "feedsvc"], tmp / "feed.log", port, {
        **env, "TRENCHCOAT_FEED__PORT": str(port), "TRENCHCOAT_FEED__METRICS_PORT": str(mport),
        "TRENCHCOAT_ROUTER__ENDPOINTS": router}))
    for i in range(workers):
        wport, wmport = ports.free_port(), ports.free_port()
        out.append(start([sys.executable, "-m", "feedsvc.worker"], tmp / f"fanout-{i}.log", wport, {
            **env, "TRENCHCOAT_FANOUT__PORT": str(wport), "TRENCHCOAT_FANOUT__METRICS_PORT": str(wmport)}))
    return out, f"127.0.0.1:{port}", f"https://127.0.0.1:{mport}/metrics"


async def main() -> int:
    args = common.arguments(__doc__)
    big = 100_000 if args.quick else 1_000_000
    fanout_n = 20_000 if args.quick else 100_000
    seconds = 3.0 if args.quick else 10.0
    figures: dict[str, float] = {}
    with common.private_dependencies_with_redis("bench-feed-") as (tmp, etcd, dsn, redis_url):
        env = cluster_env(tmp, "feed", etcd, dsn, 3) | {
            "TRENCHCOAT_REDIS__URL": redis_url,
            "TRENCHCOAT_FEED__CELEBRITY_THRESHOLD": str(fanout_n + 1),  # the fan-out author is pushed
            "TRENCHCOAT_FEED__LEASE_WAIT_S": "10",  # 1,000 readers at once share two cores
            **{f"TRENCHCOAT_{s}__COUNT": "1" for s in ("FEED", "FANOUT")},
        }
        cluster = start_cluster(tmp, env)
        feed_procs, feed_address, _ = start_feed(tmp, env, cluster.router, workers=2)
        try:
            async with rpc.ChannelPool() as pool:
                media = MediaClient(pool, cluster.router, timeout_s=120)
                feed = FeedClient(pool, feed_address, timeout_s=120)
                for _ in range(100):  # the first volumes may still be growing
                    try:
                        await upload_and_post(media, feed, 999)
                        break
                    except TrenchcoatError:
                        await asyncio.sleep(0.2)
                await followers(dsn, BIG, big, 10_000_000)
                await followers(dsn, NORMAL, 10, 20_000_000)
                await followers(dsn, FANOUT_AUTHOR, fanout_n, 30_000_000)

                n = 30 if args.quick else 100
                normal, celebrity = await post_latencies(media, feed, (NORMAL, BIG), n)
                figures["post_p50_ms_normal"] = normal * 1000
                figures["post_p50_ms_celebrity"] = celebrity * 1000
                figures["post_latency_celebrity_vs_normal"] = celebrity / normal

                lags, raw = [], []
                for _ in range(3):  # alternating, so a burst of load from a neighbour lands on both
                    lags.append(await fanout_seconds(dsn, await upload_and_post(media, feed, FANOUT_AUTHOR)))
                    raw.append(await raw_pipeline_rate(redis_url, fanout_n, 1000))
                lag = statistics.median(lags)
                figures["fanout_lag_s"] = lag
                figures["fanout_entries_per_s"] = fanout_n / lag
                figures["redis_pipeline_entries_per_s"] = statistics.median(raw)
                figures["fanout_vs_redis_pipeline"] = figures["fanout_entries_per_s"] / figures[
                    "redis_pipeline_entries_per_s"]

                for author in NORMAL_AUTHORS:
                    await feed.follow(READER_PLAIN, author)
                    await feed.follow(READER_SPLICED, author)
                for celebrity_id in CELEBRITIES:
                    await followers(dsn, celebrity_id, fanout_n + 1, 40_000_000 + celebrity_id * 1_000_000)
                    await feed.follow(READER_SPLICED, celebrity_id)
                for k in range(3):
                    for author in [*NORMAL_AUTHORS, *CELEBRITIES]:
                        await upload_and_post(media, feed, author, f"post {k}")
                await asyncio.sleep(1.0)  # the fan-outs of those small posts
                await reads_per_s(feed, READER_PLAIN, 0.5)  # warm: hydration cached, connections up
                await reads_per_s(feed, READER_SPLICED, 0.5)
                plain = await reads_per_s(feed, READER_PLAIN, seconds)
                spliced = await reads_per_s(feed, READER_SPLICED, seconds)
                figures["home_reads_per_s"] = plain
                figures["home_reads_per_s_5_celebrities"] = spliced
                figures["celebrity_splice_cost"] = spliced / plain

                cold = [await upload_and_post(media, feed, 3000) for _ in range(20)]
                await feed.follow(READER_COLD, 3000)
                await fanout_seconds(dsn, cold[-1])
                before = metric(cluster.router_metrics, "trenchcoat_router_batch_stat_ids_total")
                await asyncio.gather(*(feed.home(READER_COLD, limit=20, hydrate=True) for _ in range(1000)))
                asked = metric(cluster.router_metrics, "trenchcoat_router_batch_stat_ids_total") - before
                figures["hydration_backend_calls_per_id"] = asked / len(cold)
        finally:
            for p in reversed(feed_procs):
                p.stop()
            cluster.stop()
    common.report(figures, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
