"""Fan-out: the queue of jobs (a Redis stream read by a consumer group) and what a job does.

A post's fan-out duty is recorded in its row (``fanned_out_at`` NULL until done), so the
queue may lose jobs (a Redis restart) without losing work: the sweeper
(``feedsvc/sweeper.py``) enqueues again any duty left unfinished. Delivery is at least
once and a job may run twice, even at once: every step is idempotent (adding a member to a
sorted set, removing one, marking a row done).

A job ``spread``s a live post: a pushed post goes to every follower's timeline (followers
read from PostgreSQL a keyset page at a time, written to Redis in one pipelined round trip
per page, each timeline trimmed to ``timeline_max``); a celebrity's post goes to its shared
recent list instead; either goes to the author's own timeline. A job ``remove``s a deleted
post the same way. A job for a deleted post removes it, whatever its kind (a spread that
ran part-way before the delete may have written after the removal passed). A job that
finds Redis restarted while it ran (its run id changed) fails and runs again, so what it
wrote before the restart is written again before the post is recorded done.

Jobs live in the stream ``feed:{fanout}``, read by the group ``fanout``. A worker that dies
mid-job leaves it pending; another worker takes it over (XAUTOCLAIM) once it has been idle
``claim_idle_s`` (a running job refreshes its claim every third of that). A job that fails
is enqueued again, after a backoff, with its attempt count and error; one that has failed
``max_attempts`` times, or whose workers died that often, goes to ``feed:{fanout}:dead``
with its reason. Handled entries are acknowledged and deleted, so the stream holds only
work not yet done.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from feedsvc import metrics
from feedsvc.model import Post, PostState
from feedsvc.records import Records
from feedsvc.timelines import Timelines
from trenchcoat import redisio
from trenchcoat.errors import Unavailable
from trenchcoat.jobqueue import JobQueue, Streams
from trenchcoat.redisio import failures

log = logging.getLogger(__name__)

STREAM = "feed:{fanout}"
DEAD = "feed:{fanout}:dead"
GROUP = "fanout"
SPREAD = "spread"
REMOVE = "remove"
STREAM_MAX = 1_000_000
"""Approximate cap of the job stream (the rows' unfinished duties are the real backlog)."""
DEAD_MAX = 100_000
"""Approximate cap of the dead-letter stream (the newest are kept)."""


@dataclass(frozen=True, slots=True)
class Job:
    media_id: int
    kind: str
    """``spread`` a live post, or ``remove`` a deleted one."""

    def fields(self) -> dict[str, str]:
        return {"media_id": str(self.media_id), "kind": self.kind}

    @classmethod
    def from_fields(cls, fields: dict[bytes, bytes]) -> Job:
        """The job an entry holds; ValueError when it holds none (a malformed entry)."""
        try:
            return cls(int(fields[b"media_id"]), fields[b"kind"].decode())
        except (KeyError, ValueError, UnicodeDecodeError) as exc:
            raise ValueError(f"not a fan-out job: {fields!r:.200} ({type(exc).__name__}: {exc})") from None


def job_for(post: Post) -> Job:
    return Job(post.media_id, SPREAD if post.state is PostState.LIVE else REMOVE)


STREAMS = Streams(stream=STREAM, dead=DEAD, group=GROUP, what="fan-out job", stream_max=STREAM_MAX,
                  dead_max=DEAD_MAX)


class FanoutQueue(JobQueue):
    """The fan-out job stream (``trenchcoat.jobqueue`` does the queueing)."""

    def __init__(self, redis: redisio.Client) -> None:
        super().__init__(redis, STREAMS)

    async def add(self, job: Job) -> None:
        await self.enqueue(job.fields())


class Fanout:
    """What a job does."""

    def __init__(self, records: Records, timelines: Timelines, *, batch_size: int) -> None:
        self.records = records
        self._records = records
        self._timelines = timelines
        self._batch = batch_size

    async def run(self, job: Job) -> None:
        if job.kind not in (SPREAD, REMOVE):
            raise ValueError(f"unknown fan-out job kind {job.kind!r}")
        post = await self._records.post(job.media_id)
        if post is None:
            log.warning("fan-out of %d: no such post (dropped)", job.media_id)
            return
        redis_run = await self._redis_run()
        if post.state is PostState.LIVE:
            if job.kind == SPREAD:
                await self._spread(post, redis_run)
        else:
            # A deleted post's removal, whatever the job was: a spread that ran part-way
            # before the delete may have written after the removal job had passed.
            await self._remove(post, redis_run)

    async def _redis_run(self) -> str:
        """The run id of Redis (of each primary of a cluster): it changes when Redis
        restarts or a replica takes over, when writes made before may be gone."""
        with failures("Redis's run id"):
            return await redisio.primaries_run(self._timelines.redis)

    async def _same_redis(self, redis_run: str, media_id: int) -> None:
        """Before a job records its work done: if Redis restarted meanwhile, what it wrote
        before the restart is gone, so the job fails and runs again, all of it."""
        if await self._redis_run() != redis_run:
            raise Unavailable(f"Redis restarted during the fan-out of {media_id}; it runs again")

    async def _spread(self, post: Post, redis_run: str) -> None:
        entry = post.entry
        if post.pushed:
            await self._each_follower_batch(post, lambda users: self._timelines.push(users, entry))
        else:
            await self._timelines.pull_add(entry)
        await self._timelines.push([post.author_id], entry)
        again = await self._records.post(post.media_id)
        if again is not None and again.state is PostState.DELETED:
            await self._remove(again, redis_run)  # deleted while it spread: what was written may postdate the removal
            return
        await self._same_redis(redis_run, post.media_id)
        if await self._records.finish_fanout(post.media_id, PostState.LIVE):
            metrics.FANOUT_LAG.observe(max(0.0, time.time() - post.created_at))

    async def _remove(self, post: Post, redis_run: str) -> None:
        entry = post.entry
        if post.pushed:  # a celebrity's post never reached its followers' timelines
            await self._each_follower_batch(post, lambda users: self._timelines.remove(users, entry))
        await self._timelines.pull_remove(entry)
        await self._timelines.remove([post.author_id], entry)
        await self._same_redis(redis_run, post.media_id)
        # The deletion mark stays (pruned after a day by the sweeper): a timeline rebuilt or
        # backfilled from a read that raced the delete can still not show the post.
        await self._records.finish_fanout(post.media_id, PostState.DELETED)

    async def _each_follower_batch(self, post: Post, write) -> None:
        after = -1
        while True:
            followers = await self._records.followers(post.author_id, after, self._batch)
            if not followers:
                return
            metrics.TIMELINE_WRITES.inc(await write(followers))
            after = followers[-1]
