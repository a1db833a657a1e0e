"""Benchmark of the media rows over PostgreSQL instances: ``python -m bench.shards [--quick] [--json]``.

Two private PostgreSQL servers (TLS and SCRAM, as by default; fsync off) and ``router.metadata.MediaStore``
over them by the even shard map, against a store over one of them alone, in one run:

- ``rows_max_over_mean``          the most rows an instance holds over the mean, for 100k random
                                  owners placed by the map (aim <= 1.05)
- ``rows_max_over_mean_stored``   the same, counted in the two databases after ``STORED`` real
                                  uploads' rows (reserve + activate) of random owners
- ``batchstat_100_two_instances_vs_one``  reads of the rows and renditions of 100 random ids (what
                                  BatchStat asks PostgreSQL: one query per instance holding any,
                                  in parallel) a second over two instances, over the same reads on
                                  one instance (aim >= 0.8)
- ``batchstat_100_per_s_one``, ``..._two``: the absolute rates (context; they vary between days)
- ``upload_during_shard_move_vs_idle``  uploads' rows (reserve + activate, CONCURRENCY writers over
                                  random owners, retrying what a paused shard refuses) a second while
                                  ``trenchcoat shards move`` moves half the first instance's shards to
                                  the second (copy, catch-up, pause, flip, drop: ``trenchcoat.shardmove``),
                                  over the same writers' rate for as long right after (aim >= 0.7)
- ``shard_move_longest_write_pause_ms``  the longest a writer of a moved shard waited, from its first
                                  refusal to its write landing on the new instance (the store follows
                                  the map in etcd as a service does: ``shards.MapFollower``)
- ``shard_move_pause_ms``         the mover's own pause: from the source refusing to the new map in etcd
- ``shard_move_rows``             the rows the move copied

- ``feed_ops_redis_cluster_vs_single``  the feed's Redis work (``feedsvc.timelines.Timelines``:
                                  one in ten a fan-out of a post to 200 followers, a pipeline of
                                  scripts; the rest a home page read: the reader's state, then its
                                  timeline and 5 celebrity lists with their floors) a second, CONCURRENCY
                                  at a time, on a Redis Cluster of 3 primaries with a replica each,
                                  over the same on a single Redis (both TLS and persistent as
                                  `trenchcoat up` runs them; alternating rounds; aim >= 0.8)
- ``feed_ops_per_s_single``, ``..._cluster``: the absolute rates (context)
"""

from __future__ import annotations

import asyncio
import functools
import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import asyncpg

from bench import common
from feedsvc.model import Entry
from feedsvc.timelines import Timelines, pull_key, pull_meta, timeline_key, timeline_meta
from router.metadata import MediaStore
from trenchcoat import ids, pgmigrate, redisio, shardmove, shards
from trenchcoat.errors import Unavailable
from trenchcoat.etcd import Etcd
from trenchcoat.ops import dependencies, ports
from trenchcoat.shards import ShardMap

T = TypeVar("T")
OWNERS = 100_000
CONCURRENCY = 8


def placed_by_map(shard_map: ShardMap, owners: list[int]) -> float:
    rows = dict.fromkeys(shard_map.instances, 0)
    for owner in owners:
        rows[shard_map.instance_of_user(owner)] += 1
    return max(rows.values()) / (len(owners) / len(rows))


async def fresh(dsn: str) -> str:
    """A new database on the server at ``dsn`` (its DSN): each store gets clean tables."""
    name = f"b{os.urandom(6).hex()}"
    conn = await asyncpg.connect(dsn.replace("/trenchcoat?", "/postgres?"))
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return dsn.replace("/trenchcoat?", f"/{name}?")


async def load(store: MediaStore, owners: list[int]) -> list[int]:
    """Reserves and activates a row for each owner (CONCURRENCY at a time); their ids."""
    minted: list[int] = []
    queue = list(owners)

    async def worker() -> None:
        while queue:
            owner = queue.pop()
            row, _ = await store.reserve(shard=ids.shard_for_user(owner), owner_id=owner, logical_volume=1,
                                         cookie=owner & 0xFFFF, size_bytes=1000, content_type="image/jpeg",
                                         idempotency_key=None)
            await store.activate(row.media_id, 1)
            minted.append(row.media_id)

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return minted


async def batch_rate(store: MediaStore, minted: list[int], seconds: float) -> float:
    """BatchStat's reads of 100 random ids, CONCURRENCY at a time: batches a second."""
    done = 0
    deadline = time.monotonic() + seconds
    rng = random.Random(5)

    async def worker() -> None:
        nonlocal done
        while time.monotonic() < deadline:
            some = rng.sample(minted, 100)
            rows = await store.get_many(some)
            await store.renditions_of(some)
            assert len(rows) == 100
            done += 1

    start = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return done / (time.monotonic() - start)


async def upload_rate(store: MediaStore, owners: list[int], stop: asyncio.Event,
                      pauses: list[float]) -> tuple[int, float]:
    """CONCURRENCY writers reserving and activating rows for random ``owners`` until
    ``stop``, each retrying what is Unavailable (a paused shard), the longest such wait of
    each write appended to ``pauses``: (rows, seconds)."""
    rng = random.Random(len(pauses))
    done = 0

    async def retried(call: Callable[[], Awaitable[T]]) -> T:
        began = None
        while True:
            try:
                result = await call()
            except Unavailable:
                began = began if began is not None else time.monotonic()
                await asyncio.sleep(0.01)
                continue
            if began is not None:
                pauses.append(time.monotonic() - began)
            return result

    async def worker() -> None:
        nonlocal done
        while not stop.is_set():
            owner = rng.choice(owners)
            row, _ = await retried(functools.partial(
                store.reserve, shard=ids.shard_for_user(owner), owner_id=owner, logical_volume=1,
                cookie=owner & 0xFFFF, size_bytes=1000, content_type="image/jpeg", idempotency_key=None))
            await retried(functools.partial(store.activate, row.media_id, 1))
            done += 1

    start = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return done, time.monotonic() - start


async def during_move(store: MediaStore, dsns: list[str], etcd_endpoint: str, owners: list[int]) -> dict[str, float]:
    """Uploads while half the first instance's shards move to the second, then as long idle."""
    etcd = Etcd([etcd_endpoint], f"bench-{os.urandom(4).hex()}", timeout_s=30.0)
    follower = shards.MapFollower(etcd, store, "bench", interval_s=0.5)
    tasks = [asyncio.create_task(follower.run()), asyncio.create_task(follower.seen.run())]
    try:
        async with pgmigrate.reaching(dsns, timeout_s=30.0) as instances:
            stored_map, _ = await shards.init(etcd, list(instances))
            await pgmigrate.hold(instances, stored_map, timeout_s=30.0)
            store.route_by(stored_map)
            first = stored_map.ranges[0]
            half = (first.first, (first.first + first.last) // 2)
            mover = shardmove.Mover(etcd, instances, timeout_s=30.0)
            stop, pauses = asyncio.Event(), [0.0]
            writers = asyncio.create_task(upload_rate(store, owners, stop, pauses))
            await asyncio.sleep(0.5)
            report = await mover.move(*half, stored_map.ranges[-1].instance)
            stop.set()
            moved_rows, moved_s = await writers
            idle_stop = asyncio.Event()
            idle = asyncio.create_task(upload_rate(store, owners, idle_stop, [0.0]))
            await asyncio.sleep(moved_s)
            idle_stop.set()
            idle_rows, idle_s = await idle
    finally:
        await follower.shutdown()
        await follower.seen.shutdown()
        await asyncio.gather(*tasks, return_exceptions=True)
        await etcd.close()
    return {
        "upload_during_shard_move_vs_idle": (moved_rows / moved_s) / (idle_rows / idle_s),
        "shard_move_longest_write_pause_ms": max(pauses) * 1000,
        "shard_move_pause_ms": report.pause_s * 1000,
        "shard_move_rows": float(report.copied),
        "shard_move_s": moved_s,
    }


async def feed_ops_rate(redis: redisio.Client, seconds: float) -> float:
    """The feed's Redis work (see the module's doc) a second, CONCURRENCY at a time."""
    timelines = Timelines(redis, timeline_max=800, celebrity_recent=100)
    rng = random.Random(3)
    done = 0
    deadline = time.monotonic() + seconds
    next_id = 1 << 40

    async def worker() -> None:
        nonlocal done, next_id
        while time.monotonic() < deadline:
            if rng.random() < 0.1:
                next_id += 1 << 10
                author = rng.randrange(1, 1 << 20)
                await timelines.push([rng.randrange(1, 100_000) for _ in range(200)], Entry(next_id, author))
            else:
                reader = rng.randrange(1, 100_000)
                await timelines.read_state(reader)
                keys = [(timeline_key(reader), timeline_meta(reader)),
                        *[(pull_key(a), pull_meta(a)) for a in rng.sample(range(1, 1000), 5)]]
                await timelines.windows(keys, 0, 20)
            done += 1

    start = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return done / (time.monotonic() - start)


async def redis_cluster_vs_single(tmp: Path, tls_dir: Path, quick: bool) -> dict[str, float]:
    seconds, rounds = (3.0, 1) if quick else (8.0, 3)
    single = dependencies.redis_process(tmp / "redis", tmp / "redis.log", ports.free_port(), persistent=True,
                                        tls_dir=tls_dir)
    cluster = dependencies.redis_cluster_processes(tmp / "redis-cluster", tmp, persistent=True, tls_dir=tls_dir)
    try:
        single.start()
        cluster.start()
        await asyncio.to_thread(single.wait_ready, 60)
        await asyncio.to_thread(cluster.create, 120)
        clients = {"single": redisio.connect(single.endpoint, timeout_s=30.0),
                   "cluster": redisio.connect(cluster.endpoint, timeout_s=30.0, cluster=True)}
        rates: dict[str, list[float]] = {"single": [], "cluster": []}
        try:
            for client in clients.values():  # warm: connections, scripts, first keys
                await feed_ops_rate(client, 0.5)
            for _ in range(rounds):
                for name, client in clients.items():
                    rates[name].append(await feed_ops_rate(client, seconds))
        finally:
            for client in clients.values():
                await client.aclose()
    finally:
        single.stop()
        for node in cluster.nodes:
            node.stop()
    single_rate, cluster_rate = (sorted(r)[len(r) // 2] for r in (rates["single"], rates["cluster"]))
    return {"feed_ops_redis_cluster_vs_single": cluster_rate / single_rate,
            "feed_ops_per_s_single": single_rate, "feed_ops_per_s_cluster": cluster_rate}


async def measure(quick: bool) -> dict[str, float]:
    rng = random.Random(11)
    owners = [rng.randrange(1, 1 << 50) for _ in range(OWNERS)]
    stored = 2_000 if quick else 10_000
    seconds, rounds = (3.0, 1) if quick else (8.0, 3)
    tmp = Path(tempfile.mkdtemp(prefix="tc-bench-shards-"))
    os.chmod(tmp, 0o755)  # PostgreSQL runs as another user when we are root
    tls_dir = Path(os.environ[common.TLS_DIR_KEY])
    servers = [dependencies.postgres_process(tmp / f"pg{i}", tmp / f"pg{i}.log", ports.free_port(), durable=False,
                                             tls_dir=tls_dir, owner=dependencies.POSTGRES_USER) for i in range(2)]
    servers.append(dependencies.etcd_process(tmp / "etcd", tmp / "etcd.log", ports.free_port(), ports.free_port(),
                                             tls_dir=tls_dir))
    try:
        for server in servers:
            server.start()
        for server in servers:
            await asyncio.to_thread(server.wait_ready, 60)
        two_dsns = [await fresh(s.endpoint) for s in servers[:2]]
        one_dsn = await fresh(servers[0].endpoint)
        async with pgmigrate.reaching(two_dsns, timeout_s=30.0) as instances:
            shard_map = ShardMap.even(list(instances))
        two = await MediaStore.connect(two_dsns, timeout_s=30.0, shard_map=shard_map, max_size=CONCURRENCY)
        one = await MediaStore.connect(one_dsn, timeout_s=30.0, max_size=CONCURRENCY)
        try:
            for store in (two, one):
                await store.migrate()
            sample = owners[:stored]
            minted_two, minted_one = await load(two, sample), await load(one, sample)
            counts = [len(await _ids_in(d)) for d in two_dsns]
            rates: dict[str, list[float]] = {"one": [], "two": []}
            for _ in range(rounds):  # alternating, so drift in the machine's load hits both
                rates["one"].append(await batch_rate(one, minted_one, seconds))
                rates["two"].append(await batch_rate(two, minted_two, seconds))
            moving = await during_move(two, two_dsns, servers[2].endpoint, sample)
            redis_figures = await redis_cluster_vs_single(tmp, tls_dir, quick)
        finally:
            await two.close()
            await one.close()
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    one_rate, two_rate = (sorted(r)[len(r) // 2] for r in (rates["one"], rates["two"]))
    return {
        "rows_max_over_mean": placed_by_map(shard_map, owners),
        "rows_max_over_mean_stored": max(counts) / (sum(counts) / len(counts)),
        "batchstat_100_two_instances_vs_one": two_rate / one_rate,
        "batchstat_100_per_s_one": one_rate,
        "batchstat_100_per_s_two": two_rate,
        **moving,
        **redis_figures,
    }


async def _ids_in(dsn: str) -> list[int]:
    conn = await asyncpg.connect(dsn)
    try:
        return [r[0] for r in await conn.fetch("SELECT media_id FROM media")]
    finally:
        await conn.close()


async def main() -> int:
    args = common.arguments(__doc__)
    common.report(await measure(args.quick), args.json)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
