"""``python -m feedsvc``: one feed process (FeedService; the fan-out workers are processes
of their own, ``python -m feedsvc.worker``)."""

from __future__ import annotations

import sys

from feedsvc.fanout import FanoutQueue
from feedsvc.follows import Follows
from feedsvc.home import HomeFeeds
from feedsvc.hydrate import MetadataCache
from feedsvc.intents import IntentSweeper
from feedsvc.media import Routers
from feedsvc.posts import Posts
from feedsvc.records import Records
from feedsvc.service import SERVICE_NAME, FeedServicer
from feedsvc.sweeper import Sweeper
from feedsvc.timelines import Timelines
from trenchcoat import redisio, server, siblings
from trenchcoat.clients.media import MediaClient
from trenchcoat.rpc import ChannelPool
from trenchcoat.v1 import feed_pb2_grpc


def main() -> int:
    config = server.load_config("feedsvc", "The feed: posts, follows, home feeds.")
    siblings.prepare(config.feed.workers)
    section = config.feed
    for what, value in (("postgres.dsn", config.postgres.dsn), ("redis.url", config.redis.url)):
        if not value:
            print(f"feed: {what} is empty: posts and follows live in PostgreSQL, timelines in Redis",
                  file=sys.stderr)
            return 2

    async def build() -> server.ServiceHost:
        sharded = await server.sharded_database(Records, config, process="feed")  # posts, follows where the map says
        records = sharded.db
        redis = redisio.from_config(config.redis)
        pool = ChannelPool()
        routers = Routers([MediaClient(pool, address, timeout_s=section.call_timeout_s)
                           for address in config.router_endpoints()])
        timelines = Timelines(redis, timeline_max=section.timeline_max, celebrity_recent=section.celebrity_recent)
        queue = FanoutQueue(redis)
        metadata = MetadataCache(redis, records, routers, ttl_s=section.metadata_ttl_s,
                                 lease_period_s=section.lease_period_s, lease_wait_s=section.lease_wait_s)
        posts = Posts(records, timelines, queue, routers, metadata,
                      celebrity_threshold=section.celebrity_threshold, hold_s=section.sweep_after_s)
        follows = Follows(records, timelines, backfill_posts=section.backfill_posts, hold_s=section.sweep_after_s)
        servicer = FeedServicer(posts, follows, HomeFeeds(records, timelines), records, timelines, metadata,
                                page_size=section.page_size, max_page_size=section.max_page_size)
        sweeper = Sweeper(records, queue, timelines, interval_s=section.sweep_interval_s,
                          after_s=section.sweep_after_s)
        return server.host_for(
            f"feed@{section.port}", config.cluster, section,
            bindings=[server.Binding(SERVICE_NAME, servicer, feed_pb2_grpc.add_FeedServiceServicer_to_server)],
            workers=[sweeper, IntentSweeper(records, follows, posts, interval_s=section.intent_interval_s,
                                            hold_s=section.sweep_after_s), *sharded.workers],
            closers=[pool.close, redis.aclose, sharded.close],
        )

    return server.run(build)


if __name__ == "__main__":
    sys.exit(main())
