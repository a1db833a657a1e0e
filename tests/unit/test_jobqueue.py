"""trenchcoat/jobqueue.py against a real Redis of its own: a job taken, settled, retried,
dead-lettered and revived; a dead worker's job taken over; and which duties still have a
job in the stream (what a sweeper asks before it enqueues a duty again)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from trenchcoat.jobqueue import JobQueue, Streams

STREAMS = Streams(stream="t:jobs", dead="t:jobs-dead", group="workers", what="test job")


@pytest.fixture
async def queue(private_redis) -> AsyncIterator[JobQueue]:
    client = aioredis.Redis.from_url(private_redis.endpoint)
    q = JobQueue(client, STREAMS)
    await q.ensure_group()
    await q.ensure_group()  # again: the group exists, nothing to do
    yield q
    await client.aclose()


async def test_a_job_is_taken_once_and_done_leaves_nothing_behind(queue):
    await queue.enqueue({"media_id": "1"})
    [d] = await queue.take("w1", 10, block_ms=100, claim_idle_ms=60_000)
    assert d.fields[b"media_id"] == b"1" and d.deliveries == 1 and d.attempt == 0
    assert await queue.take("w2", 10, block_ms=100, claim_idle_ms=60_000) == []  # not handed out twice
    assert await queue.in_flight() == 1
    await queue.done(d.entry_id)
    assert await queue.depth() == (0, 0) and await queue.in_flight() == 0 and await queue.oldest_ms() is None


async def test_a_retry_carries_its_attempts_and_errors_and_a_dead_letter_its_reason(queue):
    await queue.enqueue({"media_id": "2"})
    [d] = await queue.take("w1", 1, block_ms=100, claim_idle_ms=60_000)
    await queue.retry(d, "first failure")
    [d] = await queue.take("w1", 1, block_ms=100, claim_idle_ms=60_000)
    assert d.attempt == 1 and d.errors == ["first failure"]
    await queue.dead_letter(d, "failed 2 times", "second failure")
    assert await queue.depth() == (0, 1)
    [letter] = await queue.dead_letters()
    assert letter.reason == "failed 2 times" and letter.errors == ["first failure", "second failure"]
    assert letter.fields["media_id"] == "2" and letter.at > 0
    assert await queue.dead_letter_by(lambda f: f.get("media_id") == "2") == letter
    assert await queue.dead_letter_by(lambda f: f.get("media_id") == "3") is None
    await queue.revive(letter)
    [d] = await queue.take("w1", 1, block_ms=100, claim_idle_ms=60_000)
    assert d.attempt == 0 and d.errors == ["first failure", "second failure"]  # attempts reset, history kept
    assert await queue.depth() == (1, 0)


async def idle_ms(queue: JobQueue, entry_id: bytes) -> int:
    [pending] = await queue.redis.xpending_range(STREAMS.stream, STREAMS.group, entry_id, entry_id, 1)
    return int(pending["time_since_delivered"])


async def test_a_kept_claim_is_fresh_and_an_idle_one_is_taken_over(queue):
    await queue.enqueue({"media_id": "4"})
    [first] = await queue.take("dead", 1, block_ms=100, claim_idle_ms=60_000)
    await asyncio.sleep(0.3)
    assert await idle_ms(queue, first.entry_id) >= 300
    kept_at = time.monotonic()
    await queue.keep_claim("dead", first.entry_id)  # still running: idle again from now
    assert await idle_ms(queue, first.entry_id) <= (time.monotonic() - kept_at) * 1000 + 1
    await asyncio.sleep(0.3)  # the worker died: no more refreshes
    [taken] = await queue.take("other", 1, block_ms=100, claim_idle_ms=200)
    assert taken.entry_id == first.entry_id and taken.deliveries == 2
    assert await queue.take("third", 1, block_ms=100, claim_idle_ms=60_000) == []  # now the other's


async def test_holding_tells_which_duties_have_a_job_waiting_or_running(queue):
    for media_id in range(10, 20):
        await queue.enqueue({"media_id": str(media_id)})
    [running] = await queue.take("w1", 1, block_ms=100, claim_idle_ms=60_000)  # 10: running
    asked = [str(m) for m in (10, 15, 19, 20, 21)]
    assert await queue.holding("media_id", asked) == {"10", "15", "19"}
    await queue.done(running.entry_id)
    assert await queue.holding("media_id", asked) == {"15", "19"}
    assert await queue.holding("media_id", []) == set()


async def test_holding_reads_the_stream_page_by_page_up_to_its_bound(queue):
    for media_id in range(2500):
        await queue.enqueue({"media_id": str(media_id)})
    assert await queue.holding("media_id", ["0", "1999", "2499"]) == {"0", "1999", "2499"}
    assert await queue.holding("media_id", ["0", "1999", "2499"], scan=1500) == {"0"}  # past the bound: unknown
