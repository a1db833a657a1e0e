"""Memcache-style leases: on a miss exactly one caller per key gets the lease and reads
the Store; every other reader of the key during the lease period (default 10 s) gets that
read's answer instead of reading the Store itself: at most one lease, so one Store read,
per key per period.

Readers arriving while the holder reads wait for it (at most ``wait_s``). Readers
arriving after it finished are answered from the lease's result, kept until the period
ends; so that photos the cache does not admit (CDN traffic, read-only volumes) cannot pile
up there, finished results are held within ``linger_bytes`` (oldest dropped first; the
next reader of a dropped key simply gets a new lease). A NOT_FOUND answer is kept like
bytes; other failures end the lease at once, so the next reader tries again.

``void`` (a delete) ends a key's lease: a holder still reading cannot admit what it
reads, and no later reader is served the kept result.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

from cache.errors import LeaseWaitExpired
from trenchcoat.errors import NotFound
from trenchcoat.store_types import Blob


@dataclass
class Lease:
    key: Hashable
    token: int
    expires: float
    result: asyncio.Future[Blob] = field(repr=False)
    voided: bool = False
    size: int = 0


class LeaseTable:
    def __init__(self, period_s: float, wait_s: float, linger_bytes: int = 64 * 1024 * 1024) -> None:
        self.period_s = period_s
        self.wait_s = wait_s
        self.linger_bytes = linger_bytes
        self.lingering = 0
        self._leases: OrderedDict[Hashable, Lease] = OrderedDict()
        self._tokens = itertools.count(1)
        self.grants = 0
        self.waits = 0

    def acquire(self, key: Hashable) -> Lease | None:
        """The lease for ``key`` if the caller should read the Store; None when another
        reader holds it (then ``wait`` gives its answer)."""
        loop = asyncio.get_running_loop()
        self._expire(loop.time())
        if key in self._leases:
            return None
        lease = Lease(key, next(self._tokens), loop.time() + self.period_s, loop.create_future())
        self._leases[key] = lease
        self.grants += 1
        return lease

    async def wait(self, key: Hashable) -> tuple[Blob, bool]:
        """The lease's answer (the blob, or the Store's NOT_FOUND), waiting at most ``wait_s``,
        and whether the lease is still valid (not voided by a delete: may be admitted)."""
        held = self._leases.get(key)
        if held is None:
            raise LeaseWaitExpired("the lease ended before the wait began; retry")
        self.waits += 1
        if held.result.done():
            return held.result.result(), self.valid(held)
        remaining = min(self.wait_s, held.expires - asyncio.get_running_loop().time())
        try:
            data = await asyncio.wait_for(asyncio.shield(held.result), max(remaining, 0.0))
            return data, self.valid(held)
        except TimeoutError:
            raise LeaseWaitExpired(
                f"another reader has been fetching this photo for over {self.wait_s:g}s; retry"
            ) from None

    def valid(self, lease: Lease) -> bool:
        return self._leases.get(lease.key) is lease and not lease.voided

    def fill(self, lease: Lease, data: Blob) -> bool:
        """Hands ``data`` to the waiters and keeps it for later readers of the period;
        True if the lease is still valid (its result may be admitted)."""
        valid = self.valid(lease)
        if not lease.result.done():
            lease.result.set_result(data)
        if valid:
            lease.size = len(data.data)
            self.lingering += lease.size
            self._trim()
        return valid

    def fail(self, lease: Lease, error: BaseException) -> None:
        """Hands the holder's error to the waiters; a NOT_FOUND is kept for the period."""
        if not lease.result.done():
            lease.result.set_exception(error)
            lease.result.exception()  # retrieved: no "never retrieved" warning without waiters
        if not isinstance(error, NotFound) and self._leases.get(lease.key) is lease:
            del self._leases[lease.key]

    def void(self, key: Hashable) -> bool:
        """Ends the lease on ``key``; True if a Store read was still outstanding."""
        held = self._leases.pop(key, None)
        if held is None:
            return False
        self.lingering -= held.size
        held.voided = True
        return not held.result.done()

    def void_where(self, match: Callable[[Hashable], bool]) -> int:
        """Voids every lease whose key matches; returns how many had reads outstanding."""
        return sum(self.void(key) for key in [k for k in self._leases if match(k)])

    def _expire(self, now: float) -> None:
        while self._leases:
            key, lease = next(iter(self._leases.items()))
            if lease.expires > now:
                return
            del self._leases[key]
            self.lingering -= lease.size

    def _trim(self) -> None:
        """Drops the oldest finished results while more than ``linger_bytes`` are kept
        (walking only as far as it must: this runs on every fill)."""
        excess = self.lingering - self.linger_bytes
        if excess <= 0:
            return
        victims = []
        for key, lease in self._leases.items():
            if excess <= 0:
                break
            if lease.result.done() and lease.size:
                victims.append(key)
                excess -= lease.size
        for key in victims:
            self.lingering -= self._leases.pop(key).size
