"""The feed's fan-out when things break: a worker killed with SIGKILL mid-job, Redis
restarted (losing every timeline and the job stream) mid-fan-out, a job that keeps
failing. Nothing acknowledged is lost, nothing is doubled."""

from __future__ import annotations

import os
import re

import aiohttp
import asyncpg
import pytest
import redis.asyncio as aioredis

from tests import harness
from tests.cluster import MediaCluster, eventually, feed_cluster
from trenchcoat.feed_client import FeedEntry

pytestmark = pytest.mark.integration

FOLLOWERS = 20_000
ENV = {
    "TRENCHCOAT_FEED__CELEBRITY_THRESHOLD": "1000000",  # everyone is pushed
    "TRENCHCOAT_FANOUT__BATCH_SIZE": "50",  # a fan-out of 20,000 takes hundreds of round trips
    "TRENCHCOAT_FANOUT__MAX_ATTEMPTS": "3",
}


async def many_followers(cluster: MediaCluster, author: int, n: int) -> None:
    """``n`` followers of ``author``, written straight into PostgreSQL (following one by
    one through the API would take minutes)."""
    conn = await asyncpg.connect(cluster.postgres)
    try:
        await conn.execute("INSERT INTO feed_follows (follower_id, followee_id)"
                           " SELECT f, $1 FROM generate_series(100000, 100000 + $2 - 1) AS f", author, n)
        await conn.execute("INSERT INTO feed_authors (user_id, followers) VALUES ($1, $2)"
                           " ON CONFLICT (user_id) DO UPDATE SET followers = $2", author, n)
    finally:
        await conn.close()


async def fanned_out(cluster: MediaCluster, entry: FeedEntry) -> bool:
    conn = await asyncpg.connect(cluster.postgres)
    try:
        from trenchcoat.ids import to_signed

        return await conn.fetchval("SELECT fanned_out_at IS NOT NULL FROM feed_posts WHERE post_id = $1",
                                   to_signed(entry.media_id))
    finally:
        await conn.close()


async def timelines_holding(redis_url: str, entry: FeedEntry, users: range) -> int:
    member = f"{entry.media_id:016x}{entry.author_id:016x}"
    r = aioredis.Redis.from_url(redis_url)
    try:
        held = 0
        for start in range(users.start, users.stop, 2000):
            pipe = r.pipeline(transaction=False)
            for u in range(start, min(start + 2000, users.stop)):
                pipe.zscore(f"tl:{{u{u}}}", member)
            held += sum(s is not None for s in await pipe.execute())
        return held
    finally:
        await r.aclose()


async def timeline_writes(proc: harness.ServiceProcess) -> float:
    async with aiohttp.ClientSession() as session, session.get(proc.metrics_url) as r:
        text = await r.text()
    return sum(float(v) for v in re.findall(r"^trenchcoat_feed_timeline_writes_total (\S+)", text, re.MULTILINE))


async def post_mid_fanout(cluster: MediaCluster, worker: harness.ServiceProcess) -> FeedEntry:
    """Posts for user 1 and returns once ``worker`` is part-way through its fan-out."""
    async with cluster.clients() as c:
        media = await c.media.upload(os.urandom(100), owner_id=1, content_type="image/jpeg")
        entry = await c.feed.post(1, media.media_id, "to twenty thousand")

    async def part_way():
        return 0 < await timeline_writes(worker) < FOLLOWERS

    await eventually(part_way, timeout=60, what="the fan-out under way")
    return entry


async def test_a_worker_killed_mid_job_is_taken_over_and_every_timeline_gets_the_post_once(
        service, etcd, postgres, redis_server, tmp_path):
    cluster = await feed_cluster(service, etcd, postgres, redis_server.endpoint, tmp_path, fanout_workers=0, **ENV)
    await many_followers(cluster, 1, FOLLOWERS)
    first = cluster.start_fanout()
    entry = await post_mid_fanout(cluster, first)
    first.kill()  # SIGKILL: its job stays pending in the stream
    assert not await fanned_out(cluster, entry), "the fan-out finished before the kill: nothing was tested"
    cluster.start_fanout()  # takes the job over once it has been idle claim_idle_s
    await eventually(lambda: fanned_out(cluster, entry), timeout=120, what="the fan-out finished by the other worker")
    held = await timelines_holding(redis_server.endpoint, entry, range(100000, 100000 + FOLLOWERS))
    assert held == FOLLOWERS
    async with cluster.clients() as c:
        for user in (100000, 100000 + FOLLOWERS // 2, 100000 + FOLLOWERS - 1):
            assert (await c.feed.home(user)).entries == [entry]  # once, not twice


async def test_redis_restarted_mid_fanout_loses_nothing(service, etcd, postgres, tmp_path):
    redis = harness.start_redis()  # this test's own: it is restarted empty
    try:
        cluster = await feed_cluster(service, etcd, postgres, redis.endpoint, tmp_path, fanout_workers=0, **ENV)
        await many_followers(cluster, 1, FOLLOWERS)
        worker = cluster.start_fanout()
        entry = await post_mid_fanout(cluster, worker)
        redis.restart()  # every timeline, the job stream and its group are gone
        await eventually(lambda: fanned_out(cluster, entry), timeout=180,
                         what="the fan-out enqueued again by the sweeper and finished")
        held = await timelines_holding(redis.endpoint, entry, range(100000, 100000 + FOLLOWERS))
        assert held == FOLLOWERS
        async with cluster.clients() as c:
            assert (await c.feed.home(100000 + 7)).entries == [entry]
            assert (await c.feed.home(1)).entries == [entry]
    finally:
        redis.stop()


async def test_a_job_that_keeps_failing_is_dead_lettered_with_its_reason(service, etcd, postgres, redis_server,
                                                                         tmp_path):
    cluster = await feed_cluster(service, etcd, postgres, redis_server.endpoint, tmp_path, fanout_workers=1, **ENV)
    r = aioredis.Redis.from_url(redis_server.endpoint)
    try:
        await r.xadd("feed:fanout", {"media_id": "12345", "kind": "bogus", "attempt": "0", "error": ""})

        async def dead():
            return await r.xrange("feed:fanout-dead")

        [(_, fields)] = await eventually(dead, timeout=60, what="the job in the dead-letter stream")
        reason = fields[b"reason"].decode()
        assert "failed 3 times" in reason and "unknown fan-out job kind 'bogus'" in reason
        assert await r.xlen("feed:fanout") == 0  # nothing left behind in the job stream
    finally:
        await r.aclose()
    assert cluster.fanout[0] is not None
