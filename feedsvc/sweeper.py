"""The sweeper: enqueues again every post whose fan-out duty has not finished
``sweep_after_s`` after it began and has no job left in the queue (a job lost with a Redis
restart, or never enqueued; jobs waiting in a backed-up queue or running, however long,
are left alone, and dead-lettered ones are an operator's), forgets deletion marks a day old, and publishes the
queue's depth. Runs in every feed process; two sweeping at once only enqueue a job twice,
which fan-out tolerates."""

from __future__ import annotations

import logging

from feedsvc import metrics
from feedsvc.fanout import FanoutQueue, job_for
from feedsvc.records import Records
from feedsvc.timelines import Timelines
from trenchcoat import redisio
from trenchcoat.redisio import failures
from trenchcoat.workers import PeriodicWorker

log = logging.getLogger(__name__)


REPLICATION_LAG_S = 30.0
"""How far before Redis was last seen the same a fan-out's writes may not have reached a
replica (replication lags milliseconds; this is generous, and running a fan-out again costs
little)."""
DELETION_MARK_S = 86_400
"""How long a deleted post's mark keeps it out of reads (its cleanup takes seconds)."""


class Sweeper(PeriodicWorker):
    def __init__(self, records: Records, queue: FanoutQueue, timelines: Timelines, *, interval_s: float,
                 after_s: float) -> None:
        super().__init__("fan-out sweeper", interval_s)
        self._records = records
        self._queue = queue
        self._timelines = timelines
        self._after_s = after_s

    async def tick(self) -> None:
        await self.after_redis_change()
        await self.sweep()
        await self._timelines.prune_deleted(DELETION_MARK_S)
        queued, dead = await self._queue.depth()
        metrics.QUEUE_DEPTH.set(queued)
        metrics.DEAD_DEPTH.set(dead)

    async def after_redis_change(self) -> int:
        """When the Redis holding the timelines is not the one last seen (restarted, or a
        replica took over from a failed primary), the fan-outs and follow-ups finished
        shortly before are done again: replication is asynchronous, so a primary killed
        may not have passed on the last writes it acknowledged. Returns how many."""
        with failures("Redis's run id"):
            run = await redisio.primaries_run(self._timelines.redis)
        again = await self._records.redis_changed(run, REPLICATION_LAG_S)
        if again:
            metrics.SWEPT.inc(again)
            log.warning("Redis changed (restarted or failed over): %d fan-outs and follow-ups finished since "
                        "shortly before are done again", again)
        return again

    async def sweep(self) -> int:
        """Enqueues the unfinished fan-outs; returns how many."""
        unfinished = await self._records.unfinished_fanouts(self._after_s, await self._queue.oldest_ms())
        if not unfinished:
            return 0
        # A fan-out still running (or taken over from a worker that died) has its job in the
        # stream: enqueuing another would run it twice.
        queued = await self._queue.holding("media_id", [str(p.media_id) for p in unfinished])
        posts = [p for p in unfinished if str(p.media_id) not in queued]
        for post in posts:
            await self._queue.add(job_for(post))
        if posts:
            metrics.SWEPT.inc(len(posts))
            log.info("enqueued again %d fan-outs that had not finished", len(posts))
        return len(posts)
