"""The one shape of a service's background loop: an object with ``run()`` and
``shutdown()`` (the chassis's ``Worker``), where ``shutdown()`` returns once the loop has
finished, so a draining service never closes what a tick is still using."""

from __future__ import annotations

import asyncio
import logging

from trenchcoat.errors import TrenchcoatError

log = logging.getLogger(__name__)


class PeriodicWorker:
    """Calls ``tick()`` every ``interval_s`` until ``shutdown()``. A tick that fails with a
    typed error (a dependency away) is logged and the loop goes on; anything else is a bug
    and ends the loop, which stops the service (see ``ServiceHost``)."""

    def __init__(self, name: str, interval_s: float) -> None:
        self.name = name
        self.interval_s = interval_s
        self._stop = asyncio.Event()
        self._nudge = asyncio.Event()
        """Set to end the current wait early: by ``wake()`` (tick now) or ``shutdown()``."""
        self._finished = asyncio.Event()
        self._running = False

    async def tick(self) -> None:
        raise NotImplementedError

    def wake(self) -> None:
        """Runs the next tick now instead of at the end of the interval."""
        self._nudge.set()

    async def run(self) -> None:
        self._running = True
        try:
            while not self._stop.is_set():
                try:
                    await asyncio.wait_for(self._nudge.wait(), self.interval_s)
                except TimeoutError:
                    pass
                self._nudge.clear()
                if self._stop.is_set():
                    return
                try:
                    await self.tick()
                except TrenchcoatError as exc:
                    log.warning("%s: %s", self.name, exc)
        finally:
            self._finished.set()

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
