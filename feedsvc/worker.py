"""``python -m feedsvc.worker``: one fan-out worker process (``[fanout] count`` of them run).

It takes jobs from the ``feed:{fanout}`` stream as a member of the consumer group (first any
job a dead worker left idle past ``claim_idle_s``, then new ones), runs up to
``concurrency`` at once (``feedsvc/fanout.py`` says what a job does), refreshes each
running job's claim so it is not taken over while it runs, and acknowledges it when done.
A failed job is enqueued again after an exponential backoff with jitter; after
``max_attempts`` failures, or as many workers dying on it, it goes to the dead-letter
stream with its reason. The process serves gRPC health and /metrics like every service.
"""

from __future__ import annotations

import logging
import os
import socket
import sys

from feedsvc import metrics
from feedsvc.fanout import Fanout, FanoutQueue, Job
from feedsvc.records import Records
from feedsvc.timelines import Timelines
from trenchcoat import redisio, server
from trenchcoat.jobqueue import Delivery, Failure, JobRunner

log = logging.getLogger(__name__)


class FanoutJobs:
    """What a fan-out entry does, for ``trenchcoat.jobqueue.JobRunner``."""

    def __init__(self, fanout: Fanout) -> None:
        self._fanout = fanout

    def kind(self, delivery: Delivery) -> str:
        return Job.from_fields(delivery.fields).kind

    async def run(self, delivery: Delivery) -> None:
        await self._fanout.run(Job.from_fields(delivery.fields))

    def failure(self, exc: BaseException) -> Failure:
        # Every failure of a fan-out (Redis, PostgreSQL away) may pass; with no retry budget
        # of its own, each counts toward max_attempts.
        return Failure.COUNTED

    async def dead(self, delivery: Delivery, reason: str) -> None:
        """Records the dead letter on the post, so the sweeper leaves it to an operator
        instead of enqueueing it again every sweep."""
        await self._fanout.records.fanout_failed(Job.from_fields(delivery.fields).media_id)

    def outcome(self, kind: str, outcome: str) -> None:
        metrics.FANOUT_JOBS.labels(kind, outcome).inc()
        if outcome == "dead":
            metrics.DEAD_LETTERS.inc()


def main() -> int:
    config = server.load_config("feedsvc.worker", "A fan-out worker process.")
    section = config.fanout
    for what, value in (("postgres.dsn", config.postgres.dsn), ("redis.url", config.redis.url)):
        if not value:
            print(f"fanout worker: {what} is empty: posts live in PostgreSQL, timelines in Redis", file=sys.stderr)
            return 2

    async def build() -> server.ServiceHost:
        sharded = await server.sharded_database(Records, config, migrate=False, process="fanout",
                                                max_size=max(4, section.concurrency * 2))
        records = sharded.db
        redis = redisio.from_config(config.redis)
        timelines = Timelines(redis, timeline_max=config.feed.timeline_max,
                              celebrity_recent=config.feed.celebrity_recent)
        fanout = Fanout(records, timelines, batch_size=section.batch_size)
        worker = JobRunner(FanoutQueue(redis), FanoutJobs(fanout), consumer=f"{socket.gethostname()}-{os.getpid()}",
                           concurrency=section.concurrency, max_attempts=section.max_attempts,
                           claim_idle_s=section.claim_idle_s)
        return server.host_for(
            f"fanout@{section.port}", config.cluster, section,
            workers=[worker, *sharded.workers],
            closers=[sharded.close, redis.aclose],
        )

    return server.run(build)


if __name__ == "__main__":
    sys.exit(main())
