"""trenchcoat/jobqueue.py against a real Redis of its own: a job taken, settled, retried,
dead-lettered and revived; a dead worker's job taken over; which duties still have a job
in the stream (what a sweeper asks before it enqueues a duty again); and the runner's
retries: transient failures retried for a budget of time (kept in Redis, not in a worker),
other failures up to max_attempts, permanent ones not at all."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis

from trenchcoat.backoff import Backoff
from trenchcoat.errors import (
    DataLoss,
    DeadlineExceeded,
    Internal,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    Unavailable,
)
from trenchcoat.jobqueue import (
    ATTEMPTS_EXHAUSTED,
    RETRY_BUDGET_EXHAUSTED,
    Delivery,
    Failure,
    JobQueue,
    JobRunner,
    Streams,
)

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


async def test_a_transient_failure_is_carried_apart_from_attempts_with_the_first_failures_time(queue):
    await queue.enqueue({"media_id": "5"})
    [d] = await queue.take("w1", 1, block_ms=100, claim_idle_ms=60_000)
    assert (d.attempt, d.transient, d.failures, d.first_failed) == (0, 0, 0, None)
    await queue.retry(d, "router away", transient=True, failed_at=1000.0)
    [d] = await queue.take("w1", 1, block_ms=100, claim_idle_ms=60_000)
    await queue.retry(d, "bug", failed_at=1100.0)
    [d] = await queue.take("w1", 1, block_ms=100, claim_idle_ms=60_000)
    assert (d.attempt, d.transient, d.failures, d.first_failed) == (1, 1, 2, 1000.0)  # the first failure's time kept
    await queue.dead_letter(d, "gave up", "router away again")
    [letter] = await queue.dead_letters()
    assert letter.failures == 3 and letter.errors == ["router away", "bug", "router away again"]
    await queue.revive(letter)
    [d] = await queue.take("w1", 1, block_ms=100, claim_idle_ms=60_000)
    assert (d.attempt, d.transient, d.first_failed) == (0, 0, None)  # a fresh start: attempts and budget
    assert len(d.errors) == 3


# --- JobRunner: which failures count, and for how long transient ones are retried ---------

FAST = Backoff(base_s=0.001, max_s=0.01)
"""A backoff that lets a test fail a job many times over in well under a second."""
MAX_ATTEMPTS = 3
BUDGET_S = 600.0


class Clock:
    """Unix seconds that move only when a test moves them."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Jobs:
    """A handler whose jobs fail while its dependency is away (UNAVAILABLE), or with the
    errors queued in ``script`` first; the failures classed as a rendition job's are."""

    def __init__(self, script: list[Exception] | None = None, *, before_run: Callable[[], None] = lambda: None) -> None:
        self.script = list(script or [])
        self.away = False
        self.before_run = before_run
        self.runs = 0
        self.outcomes: list[str] = []
        self.dead_reasons: list[str] = []

    def kind(self, delivery: Delivery) -> str:
        return "test"

    async def run(self, delivery: Delivery) -> None:
        self.runs += 1
        self.before_run()
        if self.script:
            raise self.script.pop(0)
        if self.away:
            raise Unavailable("router 127.0.0.1:1: failed to connect to all addresses")

    def failure(self, exc: BaseException) -> Failure:
        if isinstance(exc, InvalidArgument):
            return Failure.PERMANENT
        return Failure.TRANSIENT if isinstance(exc, (Unavailable, ResourceExhausted)) else Failure.COUNTED

    async def dead(self, delivery: Delivery, reason: str) -> None:
        self.dead_reasons.append(reason)

    def outcome(self, kind: str, outcome: str) -> None:
        self.outcomes.append(outcome)


async def until(check: Callable[[], Awaitable[Any]], what: str, timeout: float = 60.0) -> Any:
    """Polls ``check`` until it returns something truthy; fails naming ``what`` after a bound
    generous enough for a starved machine."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := await check():
            return result
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@contextlib.asynccontextmanager
async def running(queue: JobQueue, jobs: Jobs, *, consumer: str = "w1", clock: Clock | None = None,
                  claim_idle_s: float = 30.0) -> AsyncIterator[JobRunner]:
    runner = JobRunner(queue, jobs, consumer=consumer, concurrency=2, max_attempts=MAX_ATTEMPTS,
                       claim_idle_s=claim_idle_s, retry_budget_s=BUDGET_S, backoff=FAST,
                       clock=clock or Clock())
    task = asyncio.create_task(runner.run(), name=f"runner {consumer}")
    try:
        yield runner
    finally:
        await runner.shutdown()
        await task


async def settled(queue: JobQueue) -> bool:
    """Nothing left in the job stream, nor held by a worker."""
    queued, _ = await queue.depth()
    return queued == 0 and await queue.in_flight() == 0


async def test_many_fast_transient_failures_within_the_budget_are_retried_until_the_dependency_returns(queue):
    jobs = Jobs()
    jobs.away = True
    await queue.enqueue({"media_id": "6"})
    async with running(queue, jobs):
        # Far more failures than max_attempts, each at once (as over mutual TLS): still retrying.
        async def failed_often() -> bool:
            return jobs.runs > 5 * MAX_ATTEMPTS

        await until(failed_often, "the job failing again and again")
        assert jobs.dead_reasons == [] and await queue.depth() == (1, 0)
        jobs.away = False  # the dependency is back
        await until(lambda: settled(queue), "the job done")
    assert jobs.outcomes[-1] == "ok" and set(jobs.outcomes[:-1]) == {"retried"}
    assert jobs.dead_reasons == [] and await queue.depth() == (0, 0)


async def test_transient_failures_past_the_budget_dead_letter_the_job_as_the_budget_exhausted(queue):
    clock = Clock()
    jobs = Jobs([Unavailable("router away"), DeadlineExceeded("router slow"), ResourceExhausted("router busy")] * 5,
                before_run=lambda: setattr(clock, "now", clock.now + 100))  # each attempt ends 100 s later
    await queue.enqueue({"media_id": "7"})
    async with running(queue, jobs, clock=clock):
        [letter] = await until(queue.dead_letters, "the job dead-lettered")
    # Failures at 100, 200, ... 700 s: the seventh is 600 s after the first, the budget.
    assert jobs.runs == 7 and letter.failures == 7 and len(letter.errors) == 7
    assert letter.reason.startswith(f"{RETRY_BUDGET_EXHAUSTED}: failing for 600 s since its first failed attempt, "
                                    f"past the 600 s budget (7 failed attempts); last: router away")
    assert jobs.dead_reasons == [letter.reason] and jobs.outcomes == ["retried"] * 6 + ["dead"]
    assert letter.fields.get("attempt", "0") == "0" and letter.fields["transient"] == "6"  # none counted


async def test_the_budget_runs_from_the_first_failure_kept_in_redis_across_a_worker_that_died(queue):
    clock = Clock()
    await queue.enqueue({"media_id": "8"})
    # A worker failed the job once (transiently), took it again and died mid-job.
    [d] = await queue.take("died", 1, block_ms=100, claim_idle_ms=60_000)
    await queue.retry(d, "router away", transient=True, failed_at=clock.now)
    [d] = await queue.take("died", 1, block_ms=100, claim_idle_ms=60_000)
    clock.now += BUDGET_S  # meanwhile the router stayed away
    jobs = Jobs()
    jobs.away = True
    # (claim_idle_s past the 500 ms a take waits for new entries, so the survivor does not
    # take over the job from itself before its claim is first refreshed)
    async with running(queue, jobs, consumer="survivor", clock=clock, claim_idle_s=2):
        [letter] = await until(queue.dead_letters, "the job taken over and dead-lettered")
    assert jobs.runs == 1  # the survivor's one failure spent the budget the dead worker began
    assert letter.reason.startswith(f"{RETRY_BUDGET_EXHAUSTED}: failing for 600 s since its first failed attempt")
    assert letter.failures == 2


async def test_other_failures_dead_letter_the_job_after_max_attempts_and_transient_ones_do_not_count(queue):
    jobs = Jobs([Unavailable("away"), DataLoss("checksum mismatch"), ResourceExhausted("busy"),
                 NotFound("the original is gone"), DeadlineExceeded("slow"), Internal("a bug"),
                 Internal("never reached")])
    await queue.enqueue({"media_id": "9"})
    async with running(queue, jobs):
        [letter] = await until(queue.dead_letters, "the job dead-lettered")
    assert letter.reason == f"{ATTEMPTS_EXHAUSTED}: failed {MAX_ATTEMPTS} times; last: a bug"
    assert jobs.runs == 6 and letter.failures == 6 and jobs.dead_reasons == [letter.reason]
    assert jobs.outcomes == ["retried"] * 5 + ["dead"]


async def test_a_permanent_failure_dead_letters_the_job_at_once(queue):
    jobs = Jobs([InvalidArgument("the source image cannot be decoded")])
    await queue.enqueue({"media_id": "10"})
    async with running(queue, jobs):
        [letter] = await until(queue.dead_letters, "the job dead-lettered")
    assert letter.reason == "cannot succeed: the source image cannot be decoded"
    assert jobs.runs == 1 and letter.failures == 1 and jobs.outcomes == ["dead"]
