"""The feed on a Redis Cluster whose primary is killed -9 before its replica had its last
writes (replication is asynchronous): the replica takes over without them. Every post
whose fan-out had been acknowledged still reaches every follower's home feed (the sweeper
sees Redis changed and runs the last fan-outs again), and the fan-out job that was queued
only on the dead primary still runs (its post's duty is unfinished in PostgreSQL: the
sweeper enqueues it again). The loss is made certain, not hoped for: the replica is
frozen (SIGSTOP) and its link cut while the primary takes the writes, and the test checks
the promoted replica lacks them before it checks they came back."""

from __future__ import annotations

from typing import Any

import pytest
from redis.crc import key_slot

from feedsvc import fanout
from feedsvc.timelines import timeline_key
from tests import harness
from tests.cluster import eventually, feed_cluster
from tests.integration.test_feed import post, settled, whole_feed

pytestmark = pytest.mark.integration


async def timeline_ids(redis: Any, user: int) -> set[int]:
    """The media ids in a user's timeline as Redis holds it now."""
    return {int(m[:16], 16) for m in await redis.zrange(timeline_key(user), 0, -1)}


async def test_a_failover_losing_acknowledged_writes_loses_no_fan_out_and_no_job(service, etcd, postgres, tmp_path):
    rc = harness.start_redis_cluster()  # its own: this test kills a primary
    try:
        cluster = await feed_cluster(service, etcd, postgres, rc.endpoint, tmp_path, redis_cluster=True)
        primary = rc.cluster.master_of(key_slot(fanout.STREAM.encode()))  # the fan-out jobs' primary
        replica_port = next(n.port for n in rc.cluster.view() if n.master_id == primary.id)
        replica = rc.cluster.nodes[rc.cluster.ports.index(replica_port)]
        assert replica.pid is not None
        author = 7
        fans = [u for u in range(1000, 9000) if primary.serves(key_slot(timeline_key(u).encode()))][:5]
        redis = cluster.redis_client()
        async with cluster.clients() as c:
            for fan in fans:
                await c.feed.follow(fan, author)
            first = await post(c, author)
            await eventually(lambda: settled(cluster), what="the first fan-out done")
            for fan in fans:  # each fan's timeline built (from now on, reads trust it)
                assert await whole_feed(c, fan) == [first]
            rc.wait_replicated()
            with harness.frozen(replica.pid):  # the replica stops taking the primary's writes:
                # frozen, and its link cut (what the primary had sent would otherwise wait in
                # the frozen replica's socket, to be read when it wakes)
                rc.cluster.command(primary.port, "CLIENT", "KILL", "TYPE", "replica")
                during = [await post(c, author) for _ in range(2)]
                await eventually(lambda: settled(cluster), what="fan-outs acknowledged by the primary alone")
                for fan in fans:
                    assert await whole_feed(c, fan) == [*reversed(during), first]
                for worker in cluster.fanout:  # a job queued on the primary alone, nobody to take it
                    assert worker is not None
                    worker.stop()
                queued = await post(c, author)
                killed = rc.kill_master_of(fanout.STREAM)
            rc.wait_ok(120)  # the replica took over, without what the primary had not passed on
            lost = [fan for fan in fans if not {e.media_id for e in during} <= await timeline_ids(redis, fan)]
            assert lost, "the promoted replica holds every write: the failover lost nothing to test"
            for i in range(len(cluster.fanout)):
                cluster.start_fanout(i)
            want = [queued, *reversed(during), first]

            async def whole() -> bool:
                return all([await whole_feed(c, fan) == want for fan in fans])

            await eventually(whole, timeout=120, what="every fan's feed whole again")
        await redis.aclose()
        rc.restart(killed)  # back as a replica of the node that took over
        rc.wait_ok(120)
    finally:
        rc.stop()
