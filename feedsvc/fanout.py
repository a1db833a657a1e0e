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

Jobs live in the stream ``feed:fanout``, read by the group ``fanout``. A worker that dies
mid-job leaves it pending; another worker takes it over (XAUTOCLAIM) once it has been idle
``claim_idle_s`` (a running job refreshes its claim every third of that). A job that fails
is enqueued again, after a backoff, with its attempt count and error; one that has failed
``max_attempts`` times, or whose workers died that often, goes to ``feed:fanout-dead``
with its reason. Handled entries are acknowledged and deleted, so the stream holds only
work not yet done.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions

from feedsvc import metrics
from feedsvc.model import Post, PostState
from feedsvc.records import Records
from feedsvc.timelines import Timelines
from trenchcoat.errors import Unavailable
from trenchcoat.redisio import failures

log = logging.getLogger(__name__)

STREAM = "feed:fanout"
DEAD = "feed:fanout-dead"
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
    attempt: int = 0
    """Failed attempts so far."""
    error: str = ""
    """Why the last attempt failed."""

    def fields(self) -> dict[Any, Any]:
        return {"media_id": str(self.media_id), "kind": self.kind, "attempt": str(self.attempt),
                "error": self.error[:1000]}

    @classmethod
    def from_fields(cls, fields: dict[bytes, bytes]) -> Job:
        """The job an entry holds; ValueError when it holds none (a malformed entry)."""
        try:
            return cls(int(fields[b"media_id"]), fields[b"kind"].decode(), int(fields.get(b"attempt", b"0")),
                       fields.get(b"error", b"").decode())
        except (KeyError, ValueError, UnicodeDecodeError) as exc:
            raise ValueError(f"not a fan-out job: {fields!r:.200} ({type(exc).__name__}: {exc})") from None


def job_for(post: Post) -> Job:
    return Job(post.media_id, SPREAD if post.state is PostState.LIVE else REMOVE)


@dataclass(frozen=True, slots=True)
class Delivery:
    """A stream entry as a worker received it (parsed by the worker, so a malformed one is
    dead-lettered rather than crashing every worker that takes it over)."""

    entry_id: bytes
    fields: dict[bytes, bytes]
    deliveries: int
    """How many times the stream has handed this entry out (1: the first time)."""

    @property
    def job(self) -> Job:
        return Job.from_fields(self.fields)


class FanoutQueue:
    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis
        self._claim_from = "0-0"
        """Where the next XAUTOCLAIM scan of the pending list starts (it scans a bounded
        stretch a call, so scans continue where the last one stopped)."""

    async def ensure_group(self) -> None:
        with failures("creating the fan-out consumer group"):
            try:
                await self.redis.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
            except redis.exceptions.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    async def enqueue(self, job: Job) -> None:
        with failures("enqueueing a fan-out job"):
            await self.redis.xadd(STREAM, job.fields(), maxlen=STREAM_MAX, approximate=True)

    async def take(self, consumer: str, count: int, *, block_ms: int, claim_idle_ms: int) -> list[Delivery]:
        """Up to ``count`` jobs for ``consumer``: first any a dead worker left idle past
        ``claim_idle_ms``, then new ones (waiting up to ``block_ms`` for one)."""
        try:
            with failures("taking fan-out jobs"):
                return await self._take(consumer, count, block_ms, claim_idle_ms)
        except Unavailable as exc:
            if "NOGROUP" not in str(exc):
                raise
            await self.ensure_group()  # Redis lost the stream (a restart): the sweeper refills it
            self._claim_from = "0-0"
            return []

    async def _take(self, consumer: str, count: int, block_ms: int, claim_idle_ms: int) -> list[Delivery]:
        reply: Any = await self.redis.xautoclaim(STREAM, GROUP, consumer, claim_idle_ms, self._claim_from,
                                                 count=count)
        self._claim_from = reply[0]  # "0-0" again once the whole pending list was scanned
        out = []
        for entry_id, fields in reply[1]:
            if fields is None:  # deleted meanwhile
                continue
            pending = await self.redis.xpending_range(STREAM, GROUP, entry_id, entry_id, 1)
            deliveries = int(pending[0]["times_delivered"]) if pending else 1
            out.append(Delivery(entry_id, fields, deliveries))
        if len(out) >= count:
            return out
        replies: Any = await self.redis.xreadgroup(GROUP, consumer, {STREAM: ">"}, count=count - len(out),
                                                   block=block_ms)
        for _, entries in replies or []:
            for entry_id, fields in entries:
                out.append(Delivery(entry_id, fields, 1))
        return out

    async def keep_claim(self, consumer: str, entry_id: bytes) -> None:
        """Resets the entry's idle time: a long job is not taken over while it runs."""
        with failures("refreshing a fan-out claim"):
            await self.redis.xclaim(STREAM, GROUP, consumer, 0, [entry_id], justid=True)

    async def done(self, entry_id: bytes) -> None:
        with failures("acknowledging a fan-out job"):
            pipe = self.redis.pipeline(transaction=True)
            pipe.xack(STREAM, GROUP, entry_id)
            pipe.xdel(STREAM, entry_id)
            await pipe.execute()

    async def retry(self, delivery: Delivery, error: str) -> None:
        """Enqueues the job again with one more failed attempt, and retires this entry."""
        failed = delivery.job
        job = Job(failed.media_id, failed.kind, failed.attempt + 1, error)
        with failures("re-enqueueing a fan-out job"):
            pipe = self.redis.pipeline(transaction=True)
            pipe.xadd(STREAM, job.fields(), maxlen=STREAM_MAX, approximate=True)
            pipe.xack(STREAM, GROUP, delivery.entry_id)
            pipe.xdel(STREAM, delivery.entry_id)
            await pipe.execute()

    async def dead_letter(self, delivery: Delivery, reason: str) -> None:
        fields: dict[Any, Any] = {**delivery.fields, b"reason": reason[:1000].encode(),
                                  b"at": f"{time.time():.3f}".encode()}
        with failures("dead-lettering a fan-out job"):
            pipe = self.redis.pipeline(transaction=False)
            pipe.xadd(DEAD, fields, maxlen=DEAD_MAX, approximate=True)
            pipe.xack(STREAM, GROUP, delivery.entry_id)
            pipe.xdel(STREAM, delivery.entry_id)
            await pipe.execute()
        metrics.DEAD_LETTERS.inc()
        log.error("fan-out entry %s dead-lettered: %s", delivery.entry_id.decode(), reason)

    async def oldest_ms(self) -> int | None:
        """When the oldest entry still in the stream (waiting or running) was added, in Unix
        ms; None when the stream is empty. A post whose duty began before it has no job in
        the stream."""
        with failures("the fan-out queue's oldest entry"):
            first: Any = await self.redis.xrange(STREAM, count=1)
        return int(first[0][0].split(b"-")[0]) if first else None

    async def depth(self) -> tuple[int, int]:
        """(jobs waiting or running, dead letters)."""
        with failures("the fan-out queue's depth"):
            pipe = self.redis.pipeline(transaction=False)
            pipe.xlen(STREAM)
            pipe.xlen(DEAD)
            queued, dead = await pipe.execute()
        return int(queued), int(dead)

    async def dead_letters(self, count: int = 100) -> list[dict[str, str]]:
        with failures("reading dead letters"):
            entries: Any = await self.redis.xrevrange(DEAD, count=count)
        return [{k.decode(): v.decode() for k, v in fields.items()} | {"id": entry_id.decode()}
                for entry_id, fields in entries]


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
        """The Redis server's run id: it changes when Redis restarts."""
        with failures("Redis's run id"):
            info: Any = await self._timelines.redis.info("server")
        return str(info.get("run_id", ""))

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
