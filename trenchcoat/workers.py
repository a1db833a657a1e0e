"""The one shape of a service's background loop: an object with ``run()`` and
``shutdown()`` (the chassis's ``Worker``), where ``shutdown()`` returns once the loop has
finished, so a draining service never closes what a tick is still using.

A failed tick never ends the loop: a dependency away (PostgreSQL stopped, Redis
restarting) must not take the process down with it, and neither may a bug met by one
tick, which the next may not meet. Each failure is logged (a typed error as one warning
line, anything else with its traceback), counted, and the tick retried after a backoff
that grows with the failures in a row (``trenchcoat.backoff``), so a loop that runs every
few milliseconds does not hammer a database that is down, nor fill the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from prometheus_client import Counter

from trenchcoat.backoff import Backoff
from trenchcoat.errors import TrenchcoatError

log = logging.getLogger(__name__)

TICK_FAILURES = Counter(
    "trenchcoat_worker_tick_failures_total",
    "Ticks of a background worker that failed, by worker (class) and error (class); each is retried after a backoff.",
    ["worker", "error"],
)
TICKS = Counter(
    "trenchcoat_worker_ticks_total",
    "Ticks of a background worker that ran to the end, by worker (class): a loop that is alive and working.",
    ["worker"],
)
RETRY_MAX_S = 10.0
"""Longest pause after failed ticks (unless the interval is longer still): a worker whose
dependency is away tries again at least this often, so it is back at work within about
this long of the dependency's return."""


class PeriodicWorker:
    """Calls ``tick()`` every ``interval_s`` until ``shutdown()``. After a failed tick the
    next comes after ``retry``'s pause instead (by default from the interval, doubling, up
    to ``RETRY_MAX_S``); a good tick returns it to the interval."""

    def __init__(self, name: str, interval_s: float, *, retry: Backoff | None = None) -> None:
        self.name = name
        self.interval_s = interval_s
        self.retry = retry or Backoff(base_s=interval_s, max_s=max(interval_s, RETRY_MAX_S))
        self.failures = 0
        """Ticks failed in a row (0 after a good one)."""
        self.pause_s = interval_s
        """How long the loop waits before its next tick (or waited before this one)."""
        self._stop = asyncio.Event()
        self._nudge = asyncio.Event()
        """Set to end the current wait early: by ``wake()`` (tick now) or ``shutdown()``."""
        self._finished = asyncio.Event()
        self._running = False

    async def tick(self) -> None:
        raise NotImplementedError

    def wake(self) -> None:
        """Runs the next tick now instead of at the end of the interval (or the backoff)."""
        self._nudge.set()

    async def run(self) -> None:
        self._running = True
        try:
            while not self._stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._nudge.wait(), self.pause_s)
                self._nudge.clear()
                if self._stop.is_set():
                    return
                try:
                    await self.tick()
                except Exception as exc:  # noqa: BLE001 - logged (with its traceback), counted, retried
                    self._failed(exc)
                else:
                    TICKS.labels(type(self).__name__).inc()
                    self.failures = 0
                    self.pause_s = self.interval_s
        finally:
            self._finished.set()

    def _failed(self, exc: Exception) -> None:
        self.failures += 1
        self.pause_s = self.retry.pause(self.failures)
        TICK_FAILURES.labels(type(self).__name__, type(exc).__name__).inc()
        if isinstance(exc, TrenchcoatError):  # a dependency away, or a refusal: its message says it
            log.warning("%s: %s (%d failed in a row; next try in %.1fs)", self.name, exc, self.failures,
                        self.pause_s)
        else:
            log.error("%s: a tick failed unexpectedly (%d failed in a row; next try in %.1fs)", self.name,
                      self.failures, self.pause_s, exc_info=exc)

    async def shutdown(self) -> None:
        self._stop.set()
        self._nudge.set()
        if self._running:
            await self._finished.wait()


async def keep_pace(began: float, amount: float, per_s: float) -> None:
    """Throttles background work: sleeps until ``amount`` (bytes, say) done since
    ``began`` (the loop's clock) has taken at least ``amount / per_s`` seconds."""
    pause = amount / per_s - (asyncio.get_running_loop().time() - began)
    if pause > 0:
        await asyncio.sleep(pause)
