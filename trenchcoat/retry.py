"""Trying again until a deadline: the one mechanism for "this may work in a moment" (a
dependency still starting, a name not resolving yet, a volume not writable yet, a key
whose holder's lease has not lapsed yet). Each failure the caller names as passing is
retried after a backoff (``trenchcoat.backoff``) until ``wait_s`` has gone by; then its
last error is raised. Any other error is raised at once. A waiting that says what it
waits for logs each new reason once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from trenchcoat.backoff import Backoff
from trenchcoat.errors import Unavailable

log = logging.getLogger(__name__)
T = TypeVar("T")

PATIENT = Backoff(base_s=0.5, max_s=5.0)
"""Waiting for another process (a dependency starting): a try every few seconds at most."""


async def until(attempt: Callable[[], Awaitable[T]], wait_s: float, *, what: str = "",
                passing: tuple[type[BaseException], ...] = (Unavailable,), backoff: Backoff = PATIENT) -> T:
    """``attempt()`` until it answers, retrying the ``passing`` errors for up to ``wait_s``
    seconds, then raising the last of them. ``what`` names what is waited for in the log
    ("" logs nothing)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    failures, said = 0, ""
    while True:
        try:
            return await attempt()
        except passing as exc:
            left = deadline - loop.time()
            if left <= 0:
                raise
            failures += 1
            if what and str(exc) != said:
                log.warning("waiting up to %.0fs more for %s: %s", left, what, exc)
                said = str(exc)
            await asyncio.sleep(min(backoff.pause(failures), left))
