"""The feed's fan-out when things break: a worker killed with SIGKILL mid-job, Redis
restarted (losing every timeline and the job stream) mid-fan-out, a job that keeps
failing. Nothing acknowledged is lost, nothing is doubled."""

from __future__ import annotations

import functools
import os
import re

import asyncpg
import pytest
import redis.asyncio as aioredis

from feedsvc import fanout, timelines
from feedsvc.model import Entry
from tests import harness
from tests.cluster import MediaCluster, eventually, fanned_out, feed_cluster
from trenchcoat.clients.feed import FeedEntry
from trenchcoat.errors import NotFound

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


def member_of(entry: FeedEntry) -> bytes:
    """The timeline member the feed writes for ``entry`` (its own layout, not spelled here)."""
    return timelines.member(Entry(entry.media_id, entry.author_id))


async def timelines_holding(redis_url: str, entry: FeedEntry, users: range) -> int:
    member = member_of(entry)
    r = aioredis.Redis.from_url(redis_url)
    try:
        held = 0
        for start in range(users.start, users.stop, 2000):
            pipe = r.pipeline(transaction=False)
            for u in range(start, min(start + 2000, users.stop)):
                pipe.zscore(timelines.timeline_key(u), member)
            held += sum(s is not None for s in await pipe.execute())
        return held
    finally:
        await r.aclose()


async def timeline_writes(proc: harness.ServiceProcess) -> float:
    async with harness.https_session() as session, session.get(proc.metrics_url) as r:
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
    cluster = await feed_cluster(service, etcd, postgres, redis_server.endpoint, tmp_path, fanout_workers=0, env=ENV)
    await many_followers(cluster, 1, FOLLOWERS)
    first = cluster.start_fanout()
    entry = await post_mid_fanout(cluster, first)
    first.kill()  # SIGKILL: its job stays pending in the stream
    assert not await fanned_out(cluster, entry), "the fan-out finished before the kill: nothing was tested"
    second = cluster.start_fanout()  # takes the job over once it has been idle claim_idle_s
    await eventually(lambda: fanned_out(cluster, entry), timeout=120, what="the fan-out finished by the other worker")
    held = await timelines_holding(redis_server.endpoint, entry, range(100000, 100000 + FOLLOWERS))
    assert held == FOLLOWERS
    # The job ran once more, whole, by the worker that took it over: one write per follower's
    # timeline, not a second run beside it (a job delivered to it twice, or retried as well).
    assert await timeline_writes(second) == FOLLOWERS
    async with cluster.clients() as c:
        for user in (100000, 100000 + FOLLOWERS // 2, 100000 + FOLLOWERS - 1):
            assert (await c.feed.home(user)).entries == [entry]


async def test_redis_restarted_mid_fanout_loses_nothing(service, etcd, postgres, tmp_path):
    redis = harness.start_redis()  # this test's own: it is restarted empty
    try:
        cluster = await feed_cluster(service, etcd, postgres, redis.endpoint, tmp_path, fanout_workers=0, env=ENV)
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
    cluster = await feed_cluster(service, etcd, postgres, redis_server.endpoint, tmp_path, fanout_workers=1, env=ENV)
    r = aioredis.Redis.from_url(redis_server.endpoint)
    try:
        await r.xadd(fanout.STREAM, {"media_id": "12345", "kind": "bogus", "attempt": "0", "error": ""})

        async def dead():
            return await r.xrange(fanout.DEAD)

        [(_, fields)] = await eventually(dead, timeout=60, what="the job in the dead-letter stream")
        reason = fields[b"reason"].decode()
        assert "failed 3 times" in reason and "unknown fan-out job kind 'bogus'" in reason
        assert await r.xlen(fanout.STREAM) == 0  # nothing left behind in the job stream
    finally:
        await r.aclose()
    async with cluster.clients() as c:  # the worker is not wedged by it: the next post fans out
        await c.feed.follow(2, 1)
        media = await c.media.upload(os.urandom(100), owner_id=1, content_type="image/jpeg")
        entry = await c.feed.post(1, media.media_id, "after the poison")
        await eventually(lambda: fanned_out(cluster, entry), what="the next post's fan-out")
        assert (await c.feed.home(2)).entries == [entry]


async def in_timeline(redis_url: str, user: int, entry: FeedEntry) -> bool:
    r = aioredis.Redis.from_url(redis_url)
    try:
        return await r.zscore(timelines.timeline_key(user), member_of(entry)) is not None
    finally:
        await r.aclose()


async def test_a_spread_run_again_after_its_post_was_deleted_removes_what_it_wrote(
        service, etcd, postgres, redis_server, tmp_path):
    """A spread that wrote part of its followers, then was deleted from under it and taken
    over (or retried) after the removal passed, must not leave the post behind."""
    cluster = await feed_cluster(service, etcd, postgres, redis_server.endpoint, tmp_path, fanout_workers=1, env=ENV)
    async with cluster.clients() as c:
        for fan in (2, 3, 4):
            await c.feed.follow(fan, 1)
        media = await c.media.upload(os.urandom(100), owner_id=1, content_type="image/jpeg")
        entry = await c.feed.post(1, media.media_id, "soon gone")
        await eventually(lambda: fanned_out(cluster, entry), what="the spread done")
        assert await c.feed.delete_post(1, entry.media_id)
        await eventually(lambda: fanned_out(cluster, entry), what="the removal done")
        r = aioredis.Redis.from_url(redis_server.endpoint)
        try:  # the late half of a spread that had started before the delete
            await r.zadd(timelines.timeline_key(3), {member_of(entry): 0})
            await r.xadd(fanout.STREAM, {"media_id": str(entry.media_id), "kind": "spread", "attempt": "1",
                                         "error": "taken over"})

            async def cleaned():
                return await r.xlen(fanout.STREAM) == 0 and not await in_timeline(redis_server.endpoint, 3, entry)

            await eventually(cleaned, what="the re-run spread to remove the post instead")
        finally:
            await r.aclose()


async def test_a_follow_retried_after_its_commit_still_backfills(service, etcd, postgres, redis_server, tmp_path):
    """The edge committed, then the call failed (Redis away) before the backfill: the
    client's retry finds the edge there and must backfill all the same."""
    cluster = await feed_cluster(service, etcd, postgres, redis_server.endpoint, tmp_path, fanout_workers=1, env=ENV)
    async with cluster.clients() as c:
        posted = []
        for _ in range(3):
            media = await c.media.upload(os.urandom(100), owner_id=1, content_type="image/jpeg")
            posted.append(await c.feed.post(1, media.media_id, "before"))
        for entry in posted:
            await eventually(functools.partial(fanned_out, cluster, entry), what="the spreads done")
        conn = await asyncpg.connect(cluster.postgres)
        try:  # what the first attempt got done
            await conn.execute("INSERT INTO feed_follows (follower_id, followee_id) VALUES (2, 1)")
            await conn.execute("UPDATE feed_authors SET followers = followers + 1 WHERE user_id = 1")
        finally:
            await conn.close()
        assert not await c.feed.follow(2, 1)  # the retry: the edge exists already
        assert all([await in_timeline(redis_server.endpoint, 2, e) for e in posted])
        assert (await c.feed.home(2)).entries == sorted(posted, reverse=True)


async def test_a_malformed_job_is_dead_lettered_not_a_crash(service, etcd, postgres, redis_server, tmp_path):
    cluster = await feed_cluster(service, etcd, postgres, redis_server.endpoint, tmp_path, fanout_workers=1, env=ENV)
    r = aioredis.Redis.from_url(redis_server.endpoint)
    try:
        await r.xadd(fanout.STREAM, {"junk": "no media_id here"})

        async def dead():
            return await r.xrange(fanout.DEAD)

        [(_, fields)] = await eventually(dead, timeout=60, what="the malformed entry dead-lettered")
        assert "not a fan-out job" in fields[b"reason"].decode()
    finally:
        await r.aclose()
    worker = cluster.fanout[0]
    assert worker is not None and worker.process.running()  # the worker lives on


async def test_the_feed_keeps_serving_through_a_postgresql_restart(service, etcd, tmp_path):
    pg = harness.start_postgres()  # this test's own: it is restarted
    try:
        from tests.cluster import fresh_database  # noqa: F401 - the cluster takes a fresh database of it

        redis = harness.start_redis()
        try:
            cluster = await feed_cluster(service, etcd, pg, redis.endpoint, tmp_path, fanout_workers=1, env=ENV)
            async with cluster.clients() as c:
                await c.feed.follow(2, 1)
                feed = cluster.feed
                assert feed is not None
                ticks = await sweeps(feed)
                pg.restart()  # the sweeper's next tick and the pool's connections meet it
                await eventually(lambda: _more_sweeps(feed, ticks + 2), timeout=60,
                                 what="two sweeps done since the restart")

                async def posted():
                    media = await c.media.upload(os.urandom(100), owner_id=1, content_type="image/jpeg")
                    return await c.feed.post(1, media.media_id, "after the restart")

                entry = await eventually(posted, timeout=60, what="a post after PostgreSQL came back")
                await eventually(lambda: fanned_out(cluster, entry), what="its fan-out")
                assert (await c.feed.home(2)).entries == [entry]
            assert cluster.feed is not None and cluster.feed.process.running()
        finally:
            redis.stop()
    finally:
        pg.stop()


async def sweeps(proc: harness.ServiceProcess) -> float:
    """Fan-out sweeps the feed process has run to the end."""
    async with harness.https_session() as session, session.get(proc.metrics_url) as r:
        text = await r.text()
    return sum(float(v) for v in re.findall(r'^trenchcoat_worker_ticks_total\{worker="Sweeper"\} (\S+)', text,
                                            re.MULTILINE))


async def _more_sweeps(proc: harness.ServiceProcess, at_least: float) -> bool:
    return await sweeps(proc) >= at_least


async def pending_intents(cluster: MediaCluster) -> int:
    conn = await asyncpg.connect(cluster.postgres)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM feed_intents WHERE finished_at IS NULL"))
    finally:
        await conn.close()


async def test_an_unfollow_and_a_delete_made_while_redis_was_away_reach_the_feeds_without_a_retry(
        service, etcd, postgres, tmp_path):
    """Both commit in PostgreSQL while Redis does not answer: they are answered (what
    follows is a durable intent), and once Redis is back the sweeper carries them into the
    timelines and caches: no unfollowed author's post and no deleted post is served, though
    the client never asked again."""
    redis = harness.start_redis()  # this test's own: it is frozen
    try:
        cluster = await feed_cluster(service, etcd, postgres, redis.endpoint, tmp_path, fanout_workers=1,
                                     env={"TRENCHCOAT_REDIS__TIMEOUT_S": "1", **ENV})
        reader, unfollowed, kept = 10, 11, 12
        async with cluster.clients() as c:
            await c.feed.follow(reader, unfollowed)
            await c.feed.follow(reader, kept)
            posted = {}
            for author in (unfollowed, kept, unfollowed, kept):
                media = await c.media.upload(os.urandom(100), owner_id=author, content_type="image/jpeg")
                entry = await c.feed.post(author, media.media_id, f"by {author}")
                posted[entry] = media
            for entry in posted:
                await eventually(functools.partial(fanned_out, cluster, entry), what="the spreads done")
            page = await c.feed.home(reader, hydrate=True)  # hydrated: the facts are cached in Redis
            assert page.entries == sorted(posted, reverse=True) and len(page.items or ()) == 4
            victim = min(e for e in posted if e.author_id == kept)
            with redis.frozen():
                assert await c.feed.unfollow(reader, unfollowed)  # committed: answered, not UNAVAILABLE
                assert await c.feed.delete_post(kept, victim.media_id)
            # No retry: the intents alone finish the follow-ups once Redis answers.
            await eventually(lambda: _none_pending(cluster), timeout=60, what="the intents finished")
            want = sorted((e for e in posted if e.author_id == kept and e != victim), reverse=True)
            assert (await c.feed.home(reader)).entries == want
            page = await c.feed.home(reader, hydrate=True)
            assert [i.entry for i in page.items or ()] == want and not page.unhydrated
            with pytest.raises(NotFound, match="was deleted"):  # the post's media went with it
                await c.media.stat(victim.media_id)
    finally:
        redis.stop()


async def _none_pending(cluster: MediaCluster) -> bool:
    return await pending_intents(cluster) == 0
