"""The sweeper: enqueues again every post whose fan-out duty has not finished
``sweep_after_s`` after it began (a job lost with a Redis restart, dead-lettered, or never
enqueued), and publishes the queue's depth. Runs in every feed process; two sweeping at
once only enqueue a job twice, which fan-out tolerates."""

from __future__ import annotations

import logging

from feedsvc import metrics
from feedsvc.fanout import FanoutQueue, job_for
from feedsvc.records import Records
from trenchcoat.workers import PeriodicWorker

log = logging.getLogger(__name__)


class Sweeper(PeriodicWorker):
    def __init__(self, records: Records, queue: FanoutQueue, *, interval_s: float, after_s: float) -> None:
        super().__init__("fan-out sweeper", interval_s)
        self._records = records
        self._queue = queue
        self._after_s = after_s

    async def tick(self) -> None:
        await self.sweep()
        queued, dead = await self._queue.depth()
        metrics.QUEUE_DEPTH.set(queued)
        metrics.DEAD_DEPTH.set(dead)

    async def sweep(self) -> int:
        """Enqueues the unfinished fan-outs; returns how many."""
        posts = await self._records.unfinished_fanouts(self._after_s)
        for post in posts:
            await self._queue.enqueue(job_for(post))
        if posts:
            metrics.SWEPT.inc(len(posts))
            log.info("enqueued again %d fan-outs that had not finished", len(posts))
        return len(posts)
