"""The feed on a Redis Cluster whose primary is killed -9 before its replica had its last
writes (replication is asynchronous): the replica takes over without them. Every post
whose fan-out had been acknowledged still reaches every follower's home feed (the sweeper
sees Redis changed and runs the last fan-outs again), a follow's backfill and an
unfollow's cleanup done on the primary alone are done again (their intents, kept a while
once finished, are opened again), and the fan-out job that was queued only on the dead
primary still runs (its post's duty is unfinished in PostgreSQL: the
sweeper enqueues it again). The loss is made certain, not hoped for: the replica is
frozen (SIGSTOP) and its link cut while the primary takes the writes, and the test checks
the promoted replica lacks them before it checks they came back. A rendition job queued on
the dead primary alone is lost the same way, and the router's sweep enqueues it again
(the upload's renditions are unfinished in PostgreSQL): every size is made."""

from __future__ import annotations

from typing import Any

import pytest
from redis.crc import key_slot

from feedsvc import fanout
from feedsvc.timelines import timeline_key
from tests import harness
from tests.cluster import eventually, feed_cluster, rendition_cluster
from tests.fault.test_feed_faults import pending_intents
from tests.integration.test_feed import post, settled, whole_feed
from tests.integration.test_renditions import finished, photo
from trenchcoat.rendition_jobs import STREAMS

pytestmark = pytest.mark.integration


async def timeline_ids(redis: Any, user: int) -> set[int]:
    """The media ids in a user's timeline as Redis holds it now."""
    return {int(m[:16], 16) for m in await redis.zrange(timeline_key(user), 0, -1)}


async def test_a_failover_losing_acknowledged_writes_loses_no_fan_out_and_no_job(service, etcd, postgres, tmp_path):
    rc = harness.start_redis_cluster()  # its own: this test kills a primary
    try:
        cluster = await feed_cluster(service, etcd, postgres, rc.endpoint, tmp_path, redis_cluster=True)
        primary = rc.cluster.master_of(key_slot(fanout.STREAM.encode()))  # the fan-out jobs' primary
        author, other = 7, 8
        fans = [u for u in range(1000, 9000) if primary.serves(key_slot(timeline_key(u).encode()))][:5]
        leaver, joiner = fans[0], fans[1]  # who unfollow and follow while the replica is away
        redis = cluster.redis_client()
        async with cluster.clients() as c:
            for fan in fans:
                await c.feed.follow(fan, author)
            earlier = await post(c, other)  # nobody follows them yet
            first = await post(c, author)
            await eventually(lambda: settled(cluster), what="the first fan-out done")
            for fan in fans:  # each fan's timeline built (from now on, reads trust it)
                assert await whole_feed(c, fan) == [first]
            rc.wait_replicated()
            with rc.replica_cut_off(fanout.STREAM):
                during = [await post(c, author) for _ in range(2)]
                await eventually(lambda: settled(cluster), what="fan-outs acknowledged by the primary alone")
                for fan in fans:
                    assert await whole_feed(c, fan) == [*reversed(during), first]
                # A follow's backfill and an unfollow's cleanup, done (their intents finished)
                # on the primary alone.
                assert await c.feed.unfollow(leaver, author) and await c.feed.follow(joiner, other)
                await eventually(lambda: no_pending_intents(cluster), what="the follow-ups done")
                assert await whole_feed(c, leaver) == [] and earlier in await whole_feed(c, joiner)
                for worker in cluster.fanout:  # a job queued on the primary alone, nobody to take it
                    assert worker is not None
                    worker.stop()
                queued = await post(c, author)
                killed = rc.kill_master_of(fanout.STREAM)
            rc.wait_ok(120)  # the replica took over, without what the primary had not passed on
            lost = [fan for fan in fans if not {e.media_id for e in during} <= await timeline_ids(redis, fan)]
            assert lost, "the promoted replica holds every write: the failover lost nothing to test"
            assert first.media_id in await timeline_ids(redis, leaver), "the unfollow's cleanup was not lost"
            assert earlier.media_id not in await timeline_ids(redis, joiner), "the follow's backfill was not lost"
            for i in range(len(cluster.fanout)):
                cluster.start_fanout(i)
            want = [queued, *reversed(during), first]
            wants = dict.fromkeys(fans, want) | {leaver: [], joiner: [*want, earlier]}

            async def whole() -> bool:
                return all([await whole_feed(c, fan) == wants[fan] for fan in fans])

            await eventually(whole, timeout=120, what="every fan's feed whole again")
        await redis.aclose()
        rc.restart(killed)  # back as a replica of the node that took over
        rc.wait_ok(120)
    finally:
        rc.stop()


async def test_a_failover_losing_a_queued_rendition_job_still_gets_every_rendition_made(
        service, etcd, postgres, tmp_path):
    rc = harness.start_redis_cluster()  # its own: this test kills a primary
    try:
        # No transformer yet: the job waits in the stream, where the failover loses it.
        cluster = await rendition_cluster(service, etcd, postgres, rc.endpoint, tmp_path, transformers=0,
                                          redis_cluster=True,
                                          env={"TRENCHCOAT_ROUTER__RENDITIONS_SWEEP_AFTER_S": "2",
                                               "TRENCHCOAT_ROUTER__RENDITIONS_SWEEP_INTERVAL_S": "0.5"})
        rc.wait_replicated()
        async with cluster.clients() as c:
            with rc.replica_cut_off(STREAMS.stream) as primary:
                media = await c.media.upload(photo(400, 300, seed=9), owner_id=12, content_type="image/jpeg")
                lost = await eventually(lambda: queued_jobs(rc, primary.port), what="the job queued on the primary")
                killed = rc.kill_master_of(STREAMS.stream)
            rc.wait_ok(120)  # the replica took over, without the job
            kept = await queued_jobs(rc, rc.cluster.master_of(key_slot(STREAMS.stream.encode())).port)
            assert not lost & kept, "the promoted replica holds the job: the failover lost nothing to test"
            cluster.start_transformer()
            done = await eventually(lambda: finished(c, media.media_id), timeout=120, what="the lost job's renditions")
            assert done.renditions_state == "done" and [r.alternate_key for r in done.renditions] == [1, 2]
        rc.restart(killed)
        rc.wait_ok(120)
    finally:
        rc.stop()


async def no_pending_intents(cluster: Any) -> bool:
    return await pending_intents(cluster) == 0


async def queued_jobs(rc: harness.RedisClusterDependency, port: int) -> set[bytes]:
    """The ids of the rendition jobs in the stream, as the node on ``port`` holds it."""
    entries = rc.cluster.command(port, "XRANGE", STREAMS.stream, "-", "+")
    assert isinstance(entries, list)
    return {entry[0] for entry in entries}
