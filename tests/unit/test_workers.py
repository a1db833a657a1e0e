"""trenchcoat/workers.py: a failed tick, typed or not, is logged, counted and retried
after a growing backoff, and the loop goes on; ``wake()`` and ``shutdown()`` end a
backoff at once. Intervals are milliseconds; nothing here asserts how long anything took
(the ``asyncio.timeout`` bounds only turn a hang into a failure)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import pytest
from prometheus_client import REGISTRY

from trenchcoat.backoff import Backoff
from trenchcoat.errors import Unavailable
from trenchcoat.workers import PeriodicWorker

HANG_S = 30.0
"""Longest a step may take before the test calls it a hang (a busy machine is far quicker)."""


class Scripted(PeriodicWorker):
    """Each tick pops the next outcome: None succeeds, an exception is raised. Records the
    pause that came before each tick, and stops asking for more when the script ends."""

    def __init__(self, script: list[BaseException | None], interval_s: float = 0.003, **kwargs: object) -> None:
        super().__init__("scripted", interval_s, **kwargs)  # type: ignore[arg-type]
        self.script = list(script)
        self.pauses: list[float] = []
        self.ticked = asyncio.Event()
        self.done = asyncio.Event()

    async def tick(self) -> None:
        self.pauses.append(self.pause_s)
        self.ticked.set()
        if not self.script:
            self.done.set()
            return
        outcome = self.script.pop(0)
        if outcome is not None:
            raise outcome


def failures(worker: str, error: str) -> float:
    return REGISTRY.get_sample_value("trenchcoat_worker_tick_failures_total", {"worker": worker, "error": error}) or 0.0


async def until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(HANG_S):
        while not condition():
            await asyncio.sleep(0.001)


def ticks(worker: str) -> float:
    return REGISTRY.get_sample_value("trenchcoat_worker_ticks_total", {"worker": worker}) or 0.0


async def test_a_tick_raising_an_untyped_error_is_retried_and_the_loop_goes_on(caplog):
    before = failures("Scripted", "ValueError")
    good_before = ticks("Scripted")
    worker = Scripted([ValueError("a bug one tick meets"), None, ValueError("again"), None])
    task = asyncio.create_task(worker.run())
    async with asyncio.timeout(HANG_S):
        await worker.done.wait()
    assert not task.done()  # still looping
    await worker.shutdown()
    await task  # ended by shutdown, without an error
    assert failures("Scripted", "ValueError") - before == 2
    assert ticks("Scripted") - good_before == 3  # the two that succeeded and the last (the script's end)
    errors = [r for r in caplog.records if r.name == "trenchcoat.workers" and r.levelno == logging.ERROR]
    assert len(errors) == 2 and all(r.exc_info and r.exc_info[0] is ValueError for r in errors)
    assert "scripted: a tick failed unexpectedly (1 failed in a row" in errors[0].getMessage()


async def test_a_typed_error_is_one_warning_line_and_counted(caplog):
    before = failures("Scripted", "Unavailable")
    worker = Scripted([Unavailable("PostgreSQL could not serve x now; retry")])
    task = asyncio.create_task(worker.run())
    async with asyncio.timeout(HANG_S):
        await worker.done.wait()
    await worker.shutdown()
    await task
    assert failures("Scripted", "Unavailable") - before == 1
    [warning] = [r for r in caplog.records if r.name == "trenchcoat.workers"]
    assert warning.levelno == logging.WARNING and warning.exc_info is None
    assert warning.getMessage().startswith("scripted: PostgreSQL could not serve x now; retry (1 failed in a row")


async def test_the_pause_grows_with_failures_in_a_row_up_to_the_cap_and_a_good_tick_resets_it():
    boom = RuntimeError("down")
    worker = Scripted([boom, boom, boom, boom, boom, None, boom, None], interval_s=0.003,
                      retry=Backoff(base_s=0.001, max_s=0.004, jitter=0))
    task = asyncio.create_task(worker.run())
    async with asyncio.timeout(HANG_S):
        await worker.done.wait()
    await worker.shutdown()
    await task
    # Before the first tick the interval; after each failure the backoff; after a good tick the interval.
    assert worker.pauses == [0.003, 0.001, 0.002, 0.004, 0.004, 0.004, 0.003, 0.001, 0.003]
    assert worker.failures == 0


async def test_the_default_backoff_starts_at_the_interval():
    worker = Scripted([], interval_s=2.0)
    assert (worker.retry.ceiling(1), worker.retry.ceiling(10)) == (2.0, 10.0)
    assert Scripted([], interval_s=60.0).retry.ceiling(5) == 60.0  # never more often than its interval


async def test_wake_and_shutdown_end_a_backoff_at_once():
    boom = RuntimeError("down")
    worker = Scripted([boom, boom, boom], interval_s=0.001, retry=Backoff(base_s=3600, max_s=3600))
    task = asyncio.create_task(worker.run())
    await until(lambda: worker.failures == 1)  # now waiting most of an hour
    assert worker.pause_s >= 1800
    worker.wake()
    await until(lambda: worker.failures == 2)  # the next tick ran on the wake
    async with asyncio.timeout(HANG_S):
        await worker.shutdown()  # and shutdown does not wait out the backoff either
        await task
    assert len(worker.pauses) == 2


async def test_a_cancelled_tick_still_ends_the_loop():
    worker = Scripted([asyncio.CancelledError()])
    with pytest.raises(asyncio.CancelledError):
        await worker.run()
