"""Job queues on Redis Streams, and the one loop that runs their jobs: shared by the feed's
fan-out workers and the transformer's rendition workers.

A queue is a stream read by one consumer group, with a dead-letter stream beside it
(``Streams``). An entry is a job's fields (strings) plus what the queue adds once it has
failed: ``attempt`` (failed attempts that count toward ``max_attempts``), ``transient``
(transient failures, which do not), ``first_failed`` (when its first failed attempt ended,
Unix seconds: the retry budget runs from it, whichever worker is running the job by then),
``error`` (the last failure) and ``errors`` (the newest ``HISTORY`` failures, a JSON list,
newest last). A dead letter adds ``reason``, ``at`` and ``failures`` (every failed attempt,
the last included). Delivery is at least once, so a job must be idempotent.

- ``take``: first entries a dead worker left pending and idle past ``claim_idle_ms``
  (XAUTOCLAIM, scanning the pending list a stretch a call), then new ones (XREADGROUP).
- A running job's claim is refreshed (XCLAIM to itself) every third of ``claim_idle_s``,
  so a long job is never taken over while it runs.
- ``done`` acknowledges and deletes the entry (XACK + XDEL), so the stream holds only work
  not finished and the pending list does not grow.
- ``retry`` enqueues the job again with one more failure (counted or transient) and retires
  the entry; ``dead_letter`` moves it to the dead-letter stream with its reason and a
  timestamp.

``JobRunner`` is the worker loop: up to ``concurrency`` jobs at once. The handler says
what each failure is (``Failure``): a permanent one (bad input) goes straight to the dead
letters; a transient one (a dependency away, slow or overloaded) is retried after an
exponential backoff with full jitter, however often, until ``retry_budget_s`` after the
job's first failed attempt, and then dead-lettered as "retry budget exhausted"; any other
is retried likewise until ``max_attempts`` of them, and then dead-lettered as "attempts
exhausted". A malformed entry, or one handed out more than ``max_attempts`` times (its
workers kept dying), goes straight to the dead letters. A worker holds a failed job through
its backoff and re-enqueues it after, the failure recorded: a worker that dies during the
pause loses that one failure (the job is taken over after ``claim_idle_s`` and runs
again), but a first failure's time once recorded stays with the job, whoever runs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import logging
import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import Any, Protocol

import redis.exceptions

from trenchcoat import redisio
from trenchcoat.backoff import Backoff
from trenchcoat.errors import TrenchcoatError, Unavailable
from trenchcoat.redisio import failures

log = logging.getLogger(__name__)

BACKOFF_BASE_S = 0.2
BACKOFF_MAX_S = 30.0
DRAIN_S = 5.0
"""On shutdown, how long running jobs get to finish before they are cancelled (a
cancelled job stays pending and another worker takes it over)."""
ERROR_CHARS = 1000
"""Longest error kept for one attempt."""
HISTORY = 20
"""Most attempts' errors an entry carries (the newest)."""
HOLDING_SCAN = 10_000
"""Most entries ``holding`` reads from the head of the stream."""
HOLDING_PAGE = 1000
"""Entries ``holding`` reads in one round trip."""


RETRY = Backoff(base_s=BACKOFF_BASE_S, max_s=BACKOFF_MAX_S, jitter=1.0)
"""A failed job's pause before it runs again (after its n-th failure in a row, counted or
transient): exponential with full jitter, capped."""


@dataclass(frozen=True, slots=True)
class Streams:
    """Where one queue lives in Redis."""

    stream: str
    """The job stream."""
    dead: str
    """The dead-letter stream."""
    group: str
    """The consumer group the workers read the job stream through."""
    what: str
    """What a job is, for messages ("fan-out job")."""
    stream_max: int = 1_000_000
    """Approximate cap of the job stream (callers keep the durable record of duties)."""
    dead_max: int = 100_000
    """Approximate cap of the dead-letter stream (the newest are kept)."""


@dataclass(frozen=True, slots=True)
class Delivery:
    """A stream entry as a worker received it (the handler parses its fields, so a
    malformed one is dead-lettered rather than crashing every worker that takes it)."""

    entry_id: bytes
    fields: dict[bytes, bytes]
    deliveries: int
    """How many times the stream has handed this entry out (1: the first time)."""

    @property
    def attempt(self) -> int:
        """Failed attempts before this delivery."""
        return self._count(b"attempt")

    @property
    def transient(self) -> int:
        """Transient failures before this delivery (not counted in ``attempt``)."""
        return self._count(b"transient")

    def _count(self, name: bytes) -> int:
        """A count the queue keeps in the entry (0 when absent or malformed)."""
        try:
            return int(self.fields.get(name, b"0"))
        except ValueError:
            return 0

    @property
    def failures(self) -> int:
        """Every failed attempt before this delivery, counted or transient."""
        return self.attempt + self.transient

    @property
    def first_failed(self) -> float | None:
        """When the job's first failed attempt ended (Unix seconds); None before any."""
        try:
            return float(self.fields[b"first_failed"])
        except (KeyError, ValueError):
            return None

    @property
    def errors(self) -> list[str]:
        """Every earlier attempt's error (the newest ``HISTORY``), oldest first."""
        return decode_errors(self.fields.get(b"errors", b""))

    def text(self) -> dict[str, str]:
        return {k.decode(errors="replace"): v.decode(errors="replace") for k, v in self.fields.items()}


def decode_errors(raw: bytes | str) -> list[str]:
    if not raw:
        return []
    try:
        value = json.loads(raw)
    except ValueError:
        return [raw.decode(errors="replace") if isinstance(raw, bytes) else raw]
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A dead-lettered job: its fields, why it died, and when."""

    entry_id: str
    fields: dict[str, str]
    reason: str
    at: float
    errors: list[str]
    """The newest ``HISTORY`` attempts' errors, oldest first."""
    failures: int
    """Every failed attempt, the last included (more than ``errors`` holds after a long
    outage)."""


class JobQueue:
    def __init__(self, redis: redisio.Client, streams: Streams) -> None:
        self.redis = redis
        self.streams = streams
        self._claim_from = "0-0"
        """Where the next XAUTOCLAIM scan of the pending list starts (it scans a bounded
        stretch a call, so scans continue where the last one stopped)."""

    async def ensure_group(self) -> None:
        s = self.streams
        with failures(f"creating the {s.what} consumer group"):
            try:
                await self.redis.xgroup_create(s.stream, s.group, id="0", mkstream=True)
            except redis.exceptions.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    async def enqueue(self, fields: dict[str, str]) -> bytes:
        """Adds a job; returns its entry id."""
        s = self.streams
        with failures(f"enqueueing a {s.what}"):
            entry: Any = await self.redis.xadd(s.stream, dict[Any, Any](fields), maxlen=s.stream_max,
                                               approximate=True)
        return bytes(entry)

    async def take(self, consumer: str, count: int, *, block_ms: int, claim_idle_ms: int) -> list[Delivery]:
        """Up to ``count`` jobs for ``consumer``: first any a dead worker left idle past
        ``claim_idle_ms``, then new ones (waiting up to ``block_ms`` for one)."""
        try:
            with failures(f"taking {self.streams.what}s"):
                return await self._take(consumer, count, block_ms, claim_idle_ms)
        except Unavailable as exc:
            if "NOGROUP" not in str(exc):
                raise
            await self.ensure_group()  # Redis lost the stream (a restart): the owner's sweeper refills it
            self._claim_from = "0-0"
            return []

    async def _take(self, consumer: str, count: int, block_ms: int, claim_idle_ms: int) -> list[Delivery]:
        s = self.streams
        reply: Any = await self.redis.xautoclaim(s.stream, s.group, consumer, claim_idle_ms, self._claim_from,
                                                 count=count)
        self._claim_from = reply[0]  # "0-0" again once the whole pending list was scanned
        out = []
        for entry_id, fields in reply[1]:
            if fields is None:  # deleted meanwhile
                continue
            pending = await self.redis.xpending_range(s.stream, s.group, entry_id, entry_id, 1)
            deliveries = int(pending[0]["times_delivered"]) if pending else 1
            out.append(Delivery(entry_id, fields, deliveries))
        if len(out) >= count:
            return out
        replies: Any = await self.redis.xreadgroup(s.group, consumer, {s.stream: ">"}, count=count - len(out),
                                                   block=block_ms)
        for _, entries in replies or []:
            for entry_id, fields in entries:
                out.append(Delivery(entry_id, fields, 1))
        return out

    async def keep_claim(self, consumer: str, entry_id: bytes) -> None:
        """Resets the entry's idle time: a long job is not taken over while it runs."""
        s = self.streams
        with failures(f"refreshing a {s.what}'s claim"):
            await self.redis.xclaim(s.stream, s.group, consumer, 0, [entry_id], justid=True)

    async def done(self, entry_id: bytes) -> None:
        s = self.streams
        with failures(f"acknowledging a {s.what}"):
            pipe = self.redis.pipeline(transaction=True)
            pipe.xack(s.stream, s.group, entry_id)
            pipe.xdel(s.stream, entry_id)
            await pipe.execute()

    async def retry(self, delivery: Delivery, error: str, *, transient: bool = False,
                    failed_at: float | None = None) -> None:
        """Enqueues the job again with one more failure (``transient``: one that does not
        count toward ``max_attempts``), and retires this entry. ``failed_at`` (Unix seconds,
        now by default) becomes the job's first failure's time if it had none."""
        counter, so_far = (b"transient", delivery.transient) if transient else (b"attempt", delivery.attempt)
        fields: dict[Any, Any] = {**delivery.fields, counter: str(so_far + 1).encode(),
                                  b"error": error[:ERROR_CHARS].encode(), b"errors": _history(delivery, error)}
        if delivery.first_failed is None:
            fields[b"first_failed"] = f"{time.time() if failed_at is None else failed_at:.3f}".encode()
        await self._move(delivery, self.streams.stream, fields, "re-enqueueing")

    async def dead_letter(self, delivery: Delivery, reason: str, error: str = "") -> None:
        """Moves the job to the dead-letter stream with ``reason`` (and, when an attempt
        failed, its ``error`` added to its history and its failures)."""
        fields: dict[Any, Any] = {**delivery.fields, b"reason": reason[:ERROR_CHARS].encode(),
                                  b"at": f"{time.time():.3f}".encode(),
                                  b"failures": str(delivery.failures + (1 if error else 0)).encode()}
        if error:
            fields[b"errors"] = _history(delivery, error)
        await self._move(delivery, self.streams.dead, fields, "dead-lettering")
        log.error("%s %s dead-lettered: %s", self.streams.what, delivery.entry_id.decode(), reason)

    async def _move(self, delivery: Delivery, stream: str, fields: dict[Any, Any], doing: str) -> None:
        """Adds ``fields`` to ``stream`` and retires the delivered entry, in one transaction."""
        s = self.streams
        with failures(f"{doing} a {s.what}"):
            pipe = self.redis.pipeline(transaction=True)
            pipe.xadd(stream, fields, maxlen=s.dead_max if stream == s.dead else s.stream_max, approximate=True)
            pipe.xack(s.stream, s.group, delivery.entry_id)
            pipe.xdel(s.stream, delivery.entry_id)
            await pipe.execute()

    async def oldest_ms(self) -> int | None:
        """When the oldest entry still in the stream (waiting or running) was added, in Unix
        ms; None when the stream is empty. A duty that began well before it has no job in
        the stream; one that began just before it may be that very entry's (its job is added
        after the duty is recorded, by another machine's clock), so ``holding`` tells."""
        with failures(f"the {self.streams.what} queue's oldest entry"):
            first: Any = await self.redis.xrange(self.streams.stream, count=1)
        return int(first[0][0].split(b"-")[0]) if first else None

    async def holding(self, field: str, values: Collection[str], *, scan: int = HOLDING_SCAN) -> set[str]:
        """Which of ``values`` a job still in the stream (waiting or running) holds in
        ``field``: whether a duty has its job already. The stream is read from its oldest
        entry, at most ``scan`` entries (a duty whose job is missing began before the oldest
        entry, so its job, if any, is near the head)."""
        s = self.streams
        wanted, found = set(values), set[str]()
        start, read = "-", 0
        key = field.encode()
        with failures(f"reading the {s.what} queue"):
            while wanted - found and read < scan:
                entries: Any = await self.redis.xrange(s.stream, min=start, count=min(HOLDING_PAGE, scan - read))
                for _, fields in entries:
                    value = fields.get(key, b"").decode(errors="replace")
                    if value in wanted:
                        found.add(value)
                read += len(entries)
                if len(entries) < HOLDING_PAGE:
                    break
                start = "(" + entries[-1][0].decode()
        return found

    async def depth(self) -> tuple[int, int]:
        """(jobs waiting or running, dead letters)."""
        s = self.streams
        with failures(f"the {s.what} queue's depth"):
            pipe = self.redis.pipeline(transaction=False)
            pipe.xlen(s.stream)
            pipe.xlen(s.dead)
            queued, dead = await pipe.execute()
        return int(queued), int(dead)

    async def in_flight(self) -> int:
        """Jobs taken by a worker and not yet settled (the group's pending list)."""
        s = self.streams
        try:
            with failures(f"the {s.what} queue's pending list"):
                summary: Any = await self.redis.xpending(s.stream, s.group)
        except Unavailable as exc:
            if "NOGROUP" in str(exc):
                return 0
            raise
        return int(summary["pending"]) if summary else 0

    async def dead_letters(self, count: int = 100, *, newest_first: bool = True) -> list[DeadLetter]:
        s = self.streams
        with failures(f"reading {s.what} dead letters"):
            if newest_first:
                entries: Any = await self.redis.xrevrange(s.dead, count=count)
            else:
                entries = await self.redis.xrange(s.dead, count=count)
        return [_dead_letter(entry_id, fields) for entry_id, fields in entries]

    async def dead_letter_by(self, match: Callable[[dict[str, str]], bool]) -> DeadLetter | None:
        """The newest dead letter whose fields ``match``; None when none does."""
        s = self.streams
        last = "+"
        with failures(f"searching {s.what} dead letters"):
            while True:
                entries: Any = await self.redis.xrevrange(s.dead, max=last, count=500)
                for entry_id, fields in entries:
                    letter = _dead_letter(entry_id, fields)
                    if match(letter.fields):
                        return letter
                if len(entries) < 500:
                    return None
                last = "(" + entries[-1][0].decode()

    async def revive(self, letter: DeadLetter) -> bytes:
        """Puts a dead-lettered job back on the queue with its failures and retry budget
        reset (its history kept) and removes the dead letter, in one transaction; returns
        the new entry id."""
        s = self.streams
        fields: dict[Any, Any] = {k: v for k, v in letter.fields.items() if k not in _DEATH}
        fields["errors"] = json.dumps(letter.errors)
        with failures(f"retrying a dead-lettered {s.what}"):
            pipe = self.redis.pipeline(transaction=True)
            pipe.xadd(s.stream, fields, maxlen=s.stream_max, approximate=True)
            pipe.xdel(s.dead, letter.entry_id)
            entry, _ = await pipe.execute()
        return bytes(entry)


_DEATH = ("reason", "at", "failures", "attempt", "transient", "first_failed", "error")
"""A dead letter's fields a revived job starts without: it starts afresh, its history kept."""


def _history(delivery: Delivery, error: str) -> bytes:
    errors = [*delivery.errors, error[:ERROR_CHARS]][-HISTORY:]
    return json.dumps(errors).encode()


def _dead_letter(entry_id: bytes, raw: dict[bytes, bytes]) -> DeadLetter:
    fields = {k.decode(errors="replace"): v.decode(errors="replace") for k, v in raw.items()}
    try:
        at = float(fields.get("at", "0"))
    except ValueError:
        at = 0.0
    errors = decode_errors(fields.get("errors", ""))
    try:
        failures = int(fields["failures"])
    except (KeyError, ValueError):  # dead-lettered before letters counted them
        failures = len(errors)
    return DeadLetter(entry_id.decode(), fields, fields.get("reason", ""), at, errors, failures)


class Failure(enum.Enum):
    """What a failed attempt says about the next ones, as a queue's handler judges it."""

    PERMANENT = "permanent"
    """Every attempt will fail the same way (bad input): dead-lettered at once."""
    TRANSIENT = "transient"
    """A dependency away, slow or overloaded: retried with backoff however often, without
    counting toward ``max_attempts``, until the runner's retry budget is spent."""
    COUNTED = "counted"
    """Anything else: retried with backoff until ``max_attempts`` of them."""


ATTEMPTS_EXHAUSTED = "attempts exhausted"
"""How the reason of a job dead-lettered after ``max_attempts`` counted failures begins."""
RETRY_BUDGET_EXHAUSTED = "retry budget exhausted"
"""How the reason of a job dead-lettered after failing transiently past the retry budget
begins."""


class JobHandler(Protocol):
    """What a queue's jobs do, for ``JobRunner``."""

    def kind(self, delivery: Delivery) -> str:
        """The job's kind, for metrics and messages; raises ValueError when the entry holds
        no job this handler can run (a malformed entry: dead-lettered at once)."""
        ...

    async def run(self, delivery: Delivery) -> None:
        """Does the job (idempotently: it may run again, even at once elsewhere)."""
        ...

    def failure(self, exc: BaseException) -> Failure:
        """What an attempt failing with ``exc`` says about the next ones."""
        ...

    async def dead(self, delivery: Delivery, reason: str) -> None:
        """Called after the job was dead-lettered (to record it on the duty, say)."""
        ...

    def outcome(self, kind: str, outcome: str) -> None:
        """Counts a handled job: outcome ``ok``, ``retried`` or ``dead``."""
        ...


class JobRunner:
    """The worker loop over one queue: an owner with ``run()`` and ``shutdown()``."""

    def __init__(self, queue: JobQueue, handler: JobHandler, *, consumer: str, concurrency: int,
                 max_attempts: int, claim_idle_s: float, retry_budget_s: float | None = None,
                 backoff: Backoff = RETRY, clock: Callable[[], float] = time.time) -> None:
        """``retry_budget_s``: how long after a job's first failed attempt its transient
        failures are still retried (None: they count toward ``max_attempts`` like any
        other). ``clock``: Unix seconds, the budget's clock (kept with the job, so it is
        wall time: every worker reads the same)."""
        self._queue = queue
        self._handler = handler
        self.consumer = consumer
        self._concurrency = concurrency
        self._max_attempts = max_attempts
        self._claim_idle_s = claim_idle_s
        self._retry_budget_s = retry_budget_s
        self._backoff = backoff
        self._clock = clock
        self._stop = asyncio.Event()
        self._running: set[asyncio.Task[None]] = set()

    @property
    def busy(self) -> int:
        """Jobs running in this worker now."""
        return len(self._running)

    async def run(self) -> None:
        await self._ensure_group()
        claim_idle_ms = int(self._claim_idle_s * 1000)
        what = self._queue.streams.what
        try:
            while not self._stop.is_set():
                free = self._concurrency - len(self._running)
                if free <= 0:
                    await asyncio.wait(self._running, return_when=asyncio.FIRST_COMPLETED)
                    continue
                try:
                    deliveries = await self._queue.take(self.consumer, free, block_ms=500, claim_idle_ms=claim_idle_ms)
                except TrenchcoatError as exc:
                    log.warning("cannot take %ss: %s", what, exc)
                    await self._pause(1.0)
                    continue
                for delivery in deliveries:
                    task = asyncio.create_task(self._handle(delivery), name=f"{what}:{delivery.entry_id.decode()}")
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

    async def _ensure_group(self) -> None:
        while not self._stop.is_set():
            try:
                await self._queue.ensure_group()
                return
            except TrenchcoatError as exc:  # Redis not up yet: the worker waits for it
                log.warning("cannot create the %s group yet: %s", self._queue.streams.what, exc)
                await self._pause(1.0)

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)

    async def _handle(self, delivery: Delivery) -> None:
        handler = self._handler
        try:
            kind = handler.kind(delivery)
        except ValueError as exc:  # a malformed entry: no worker could ever run it
            handler.outcome("?", "dead")
            await self._settle(delivery, self._queue.dead_letter(delivery, str(exc)))
            return
        if delivery.deliveries > self._max_attempts:
            await self._dead(delivery, kind, f"taken over {delivery.deliveries - 1} times from workers that stopped "
                                             f"mid-job; last error: {_last(delivery) or 'none'}")
            return
        # The claim is kept fresh until the entry is settled (through a retry's backoff
        # too), so no other worker takes over a job this one still holds.
        keeper = asyncio.create_task(self._keep_claim(delivery), name=f"claim:{delivery.entry_id.decode()}")
        try:
            try:
                await handler.run(delivery)
            except Exception as exc:
                if not isinstance(exc, TrenchcoatError):
                    log.exception("%s %s (%s) failed", self._queue.streams.what, delivery.entry_id.decode(), kind)
                await self._failed(delivery, kind, exc)
                return
            handler.outcome(kind, "ok")
            await self._settle(delivery, self._queue.done(delivery.entry_id))
        finally:
            keeper.cancel()

    async def _failed(self, delivery: Delivery, kind: str, exc: Exception) -> None:
        """Retries or dead-letters a job whose attempt failed with ``exc``."""
        why = str(exc) if isinstance(exc, TrenchcoatError) else f"{type(exc).__name__}: {exc}"
        failure = self._handler.failure(exc)
        if failure is Failure.PERMANENT:
            await self._dead(delivery, kind, f"cannot succeed: {why}", why)
            return
        now = self._clock()
        failures = delivery.failures + 1
        budget = self._retry_budget_s if failure is Failure.TRANSIENT else None  # None: this failure counts
        if budget is not None:
            first = delivery.first_failed if delivery.first_failed is not None else now
            if now - first >= budget:
                await self._dead(delivery, kind, f"{RETRY_BUDGET_EXHAUSTED}: failing for {now - first:.0f} s since its "
                                                 f"first failed attempt, past the {budget:g} s budget ({failures} "
                                                 f"failed attempts); last: {why}", why)
                return
        elif delivery.attempt + 1 >= self._max_attempts:
            await self._dead(delivery, kind, f"{ATTEMPTS_EXHAUSTED}: failed {delivery.attempt + 1} times; last: {why}",
                             why)
            return
        self._handler.outcome(kind, "retried")
        # Held (its claim kept fresh) through the pause, re-enqueued after it; a shutdown
        # cuts the pause short, so the failure and its time are kept.
        await self._pause(self._backoff.pause(failures))
        await self._settle(delivery, self._queue.retry(delivery, why, transient=budget is not None, failed_at=now))

    async def _dead(self, delivery: Delivery, kind: str, reason: str, error: str = "") -> None:
        self._handler.outcome(kind, "dead")
        await self._settle(delivery, self._queue.dead_letter(delivery, reason, error))
        await self._settle(delivery, self._handler.dead(delivery, reason))

    async def _settle(self, delivery: Delivery, step: Awaitable[None]) -> None:
        """Acknowledging, re-enqueueing or dead-lettering a job; if Redis (or the duty's
        record) is away the entry stays pending and is taken over (and run again: jobs are
        idempotent) later."""
        try:
            await step
        except TrenchcoatError as exc:
            log.warning("%s %s: could not settle it (it will run again): %s",
                        self._queue.streams.what, delivery.entry_id.decode(), exc)

    async def _keep_claim(self, delivery: Delivery) -> None:
        while True:
            await asyncio.sleep(self._claim_idle_s / 3)
            try:
                await self._queue.keep_claim(self.consumer, delivery.entry_id)
            except TrenchcoatError as exc:
                log.warning("cannot refresh the claim on %s %s: %s", self._queue.streams.what,
                            delivery.entry_id.decode(), exc)


def _last(delivery: Delivery) -> str:
    return delivery.fields.get(b"error", b"").decode(errors="replace")
