"""``python -m feedsvc.worker``: one fan-out worker process (``[fanout] count`` of them run).

It takes jobs from the ``feed:fanout`` stream as a member of the consumer group (first any
job a dead worker left idle past ``claim_idle_s``, then new ones), runs up to
``concurrency`` at once (``feedsvc/fanout.py`` says what a job does), refreshes each
running job's claim so it is not taken over while it runs, and acknowledges it when done.
A failed job is enqueued again after an exponential backoff with jitter; after
``max_attempts`` failures, or as many workers dying on it, it goes to the dead-letter
stream with its reason. The process serves gRPC health and /metrics like every service.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
import sys

from feedsvc import metrics
from feedsvc.fanout import Delivery, Fanout, FanoutQueue
from feedsvc.records import Records
from feedsvc.timelines import Timelines
from trenchcoat import redisio, server
from trenchcoat.config import FanoutConfig
from trenchcoat.errors import TrenchcoatError

log = logging.getLogger(__name__)

BACKOFF_BASE_S = 0.2
BACKOFF_MAX_S = 30.0
DRAIN_S = 5.0
"""On shutdown, how long running jobs get to finish before they are cancelled (a
cancelled job stays pending and another worker takes it over)."""


def backoff(attempt: int) -> float:
    """Seconds before attempt ``attempt + 1``: exponential with full jitter, capped."""
    return random.uniform(0, min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2 ** attempt))


class FanoutWorker:
    def __init__(self, queue: FanoutQueue, fanout: Fanout, config: FanoutConfig, *, consumer: str) -> None:
        self._queue = queue
        self._fanout = fanout
        self._config = config
        self.consumer = consumer
        self._stop = asyncio.Event()
        self._running: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        await self._queue.ensure_group()
        claim_idle_ms = int(self._config.claim_idle_s * 1000)
        try:
            while not self._stop.is_set():
                free = self._config.concurrency - len(self._running)
                if free <= 0:
                    await asyncio.wait(self._running, return_when=asyncio.FIRST_COMPLETED)
                    continue
                try:
                    deliveries = await self._queue.take(self.consumer, free, block_ms=500, claim_idle_ms=claim_idle_ms)
                except TrenchcoatError as exc:
                    log.warning("cannot take fan-out jobs: %s", exc)
                    try:
                        await asyncio.wait_for(self._stop.wait(), 1.0)
                    except TimeoutError:
                        pass
                    continue
                for delivery in deliveries:
                    task = asyncio.create_task(self._handle(delivery), name=f"fanout:{delivery.entry_id.decode()}")
                    self._running.add(task)
                    task.add_done_callback(self._running.discard)
        finally:
            if self._running:
                _, late = await asyncio.wait(self._running, timeout=DRAIN_S)
                for task in late:
                    task.cancel()
                await asyncio.gather(*late, return_exceptions=True)

    async def shutdown(self) -> None:
        self._stop.set()

    async def _handle(self, delivery: Delivery) -> None:
        limit = self._config.max_attempts
        try:
            job = delivery.job
        except ValueError as exc:  # a malformed entry: no worker could ever run it
            metrics.FANOUT_JOBS.labels("?", "dead").inc()
            await self._settle(delivery, self._queue.dead_letter(delivery, str(exc)))
            return
        if delivery.deliveries > limit:
            metrics.FANOUT_JOBS.labels(job.kind, "dead").inc()
            await self._dead(delivery, f"taken over {delivery.deliveries - 1} times from workers that stopped "
                                       f"mid-job; last error: {job.error or 'none'}")
            return
        # The claim is kept fresh until the entry is settled (through a retry's backoff
        # too), so no other worker takes over a job this one still holds.
        keeper = asyncio.create_task(self._keep_claim(delivery), name=f"claim:{job.media_id}")
        try:
            try:
                await self._fanout.run(job)
            except Exception as exc:
                why = str(exc) if isinstance(exc, TrenchcoatError) else f"{type(exc).__name__}: {exc}"
                if not isinstance(exc, TrenchcoatError):
                    log.exception("fan-out of %d (%s) failed", job.media_id, job.kind)
                attempt = job.attempt + 1
                if attempt >= limit:
                    metrics.FANOUT_JOBS.labels(job.kind, "dead").inc()
                    await self._dead(delivery, f"failed {attempt} times; last: {why}")
                else:
                    metrics.FANOUT_JOBS.labels(job.kind, "retried").inc()
                    await asyncio.sleep(backoff(attempt))
                    await self._settle(delivery, self._queue.retry(delivery, why))
                return
            metrics.FANOUT_JOBS.labels(job.kind, "ok").inc()
            await self._settle(delivery, self._queue.done(delivery.entry_id))
        finally:
            keeper.cancel()

    async def _dead(self, delivery: Delivery, reason: str) -> None:
        """Dead-letters the job and records it on the post, so the sweeper leaves it to an
        operator instead of enqueueing it again every sweep."""
        await self._settle(delivery, self._queue.dead_letter(delivery, reason))
        await self._settle(delivery, self._fanout.records.fanout_failed(delivery.job.media_id))

    @staticmethod
    async def _settle(delivery: Delivery, step) -> None:
        """Acknowledging, re-enqueueing or dead-lettering a job; if Redis is away the entry
        stays pending and is taken over (and run again: jobs are idempotent) later."""
        try:
            await step
        except TrenchcoatError as exc:
            log.warning("fan-out entry %s: could not settle it (it will run again): %s",
                        delivery.entry_id.decode(), exc)

    async def _keep_claim(self, delivery: Delivery) -> None:
        while True:
            await asyncio.sleep(self._config.claim_idle_s / 3)
            try:
                await self._queue.keep_claim(self.consumer, delivery.entry_id)
            except TrenchcoatError as exc:
                log.warning("cannot refresh the claim on fan-out entry %s: %s", delivery.entry_id.decode(), exc)


def main() -> int:
    config = server.load_config("feedsvc.worker", "A fan-out worker process.")
    section = config.fanout
    for what, value in (("postgres.dsn", config.postgres.dsn), ("redis.url", config.redis.url)):
        if not value:
            print(f"fanout worker: {what} is empty: posts live in PostgreSQL, timelines in Redis", file=sys.stderr)
            return 2

    async def build() -> server.ServiceHost:
        records = await Records.connect(config.postgres.dsn, timeout_s=config.postgres.timeout_s,
                                        max_size=max(4, section.concurrency * 2))
        redis = redisio.connect(config.redis.url, timeout_s=config.redis.timeout_s)
        timelines = Timelines(redis, timeline_max=config.feed.timeline_max,
                              celebrity_recent=config.feed.celebrity_recent)
        fanout = Fanout(records, timelines, batch_size=section.batch_size)
        worker = FanoutWorker(FanoutQueue(redis), fanout, section,
                              consumer=f"{socket.gethostname()}-{os.getpid()}")
        return server.host_for(
            f"fanout@{section.port}", config.cluster, section,
            workers=[worker],
            closers=[records.close, redis.aclose],
        )

    return server.run(build)


if __name__ == "__main__":
    sys.exit(main())
