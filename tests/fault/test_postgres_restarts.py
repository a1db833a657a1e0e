"""PostgreSQL restarted again and again under the services that keep their truth there:
every background loop meets connections dropped mid-statement, refused, and servers still
starting up. Each is the database's trouble (the loop logs it and goes on), never a bug
that stops the process; once the database is back, uploads and posts work again."""

from __future__ import annotations

import asyncio
import os

from tests import harness
from tests.cluster import eventually, fanned_out, feed_cluster

ROUNDS = 12

ENV = {
    # every loop touching PostgreSQL runs as often as it can, so restarts land mid-statement
    "TRENCHCOAT_ROUTER__DELETE_RETRY_INTERVAL_S": "0.02",
    "TRENCHCOAT_FEED__SWEEP_INTERVAL_S": "0.05",
    "TRENCHCOAT_FEED__SWEEP_AFTER_S": "0.05",
    "TRENCHCOAT_FEED__CELEBRITY_THRESHOLD": "1000000",
}


async def test_router_and_feed_outlive_repeated_postgresql_restarts(service, etcd, tmp_path):
    pg = harness.start_postgres()  # this test's own: it is restarted
    redis = harness.start_redis()
    try:
        cluster = await feed_cluster(service, etcd, pg, redis.endpoint, tmp_path, fanout_workers=1, env=ENV)
        processes = {"router": cluster.router, "feed": cluster.feed, "fan-out worker": cluster.fanout[0]}
        async with cluster.clients() as c:
            await c.feed.follow(2, 1)
            for i in range(ROUNDS):
                pg.process.stop()
                await asyncio.sleep(0.25 * (i % 4))  # down for 0 to 0.75 s
                pg.process.start()
                pg.process.wait_ready(60)
                await asyncio.sleep(0.1 * (i % 3))
                for name, proc in processes.items():
                    assert proc is not None and proc.process.running(), f"the {name} stopped in round {i}"

            async def posted():
                media = await c.media.upload(os.urandom(100), owner_id=1, content_type="image/jpeg")
                return await c.feed.post(1, media.media_id, "after the restarts")

            entry = await eventually(posted, timeout=60, what="a post once PostgreSQL stays up")
            await eventually(lambda: fanned_out(cluster, entry), what="its fan-out")
            assert (await c.feed.home(2)).entries == [entry]
        for name, proc in processes.items():
            assert proc is not None and proc.process.running(), f"the {name} stopped"
    finally:
        redis.stop()
        pg.stop()
