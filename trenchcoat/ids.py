"""64-bit time-sortable ids: the media_id that the feed and the media pipeline share.

Layout, high bits first::

    | bits 63..23            | bits 22..10        | bits 9..0          |
    | ms since EPOCH_MS (41) | logical shard (13) | sequence (10)      |

Because the time is in the high bits, ``ORDER BY id`` is ``ORDER BY time`` and pagination
is ``id < cursor ORDER BY id DESC``: no time index anywhere. The shard is
``user_id % SHARD_COUNT``, so an id routes to its shard without a lookup. Each shard mints
up to 1024 ids per millisecond.

Where ids are minted: media_ids (which are also post ids) by PostgreSQL, in the same
INSERT as the upload's metadata row (``next_id(shard)`` in
``router/migrations/0002_next_id.sql``, this module's twin in PL/pgSQL: no coordinator,
one sequence per shard). ``IdGenerator`` below mints them where no database is at hand:
benchmarks and tests that need ids without PostgreSQL.

41 bits of milliseconds last about 69.7 years (until 2095). Ids whose top bit is set
(from about 2060, ms >= 2**40) do not fit a signed 64-bit integer: storage layers that
use PostgreSQL's ``bigint`` map them with ``to_signed``/``from_signed``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

#: 2026-01-01T00:00:00Z in ms since the Unix epoch.
EPOCH_MS = 1_767_225_600_000
MS_BITS = 41
SHARD_BITS = 13
SEQUENCE_BITS = 10
SHARD_COUNT = 1 << SHARD_BITS
MAX_MS = (1 << MS_BITS) - 1
MAX_SHARD = SHARD_COUNT - 1
MAX_SEQUENCE = (1 << SEQUENCE_BITS) - 1
SHARD_SHIFT = SEQUENCE_BITS
MS_SHIFT = SEQUENCE_BITS + SHARD_BITS
MAX_ID = (1 << 64) - 1
_SIGN_OFFSET = 1 << 63


def make_id(ms: int, shard: int, seq: int) -> int:
    """Packs ms since EPOCH_MS, a logical shard and a sequence into one id."""
    _check_range("ms", ms, MAX_MS)
    _check_range("shard", shard, MAX_SHARD)
    _check_range("seq", seq, MAX_SEQUENCE)
    return (ms << MS_SHIFT) | (shard << SHARD_SHIFT) | seq


def split_id(media_id: int) -> tuple[int, int, int]:
    """Unpacks an id into (ms since EPOCH_MS, shard, sequence)."""
    _check_range("id", media_id, MAX_ID)
    return (
        media_id >> MS_SHIFT,
        (media_id >> SHARD_SHIFT) & MAX_SHARD,
        media_id & MAX_SEQUENCE,
    )


def unix_ms(media_id: int) -> int:
    """The id's creation time in ms since the Unix epoch."""
    return split_id(media_id)[0] + EPOCH_MS


def shard_for_user(user_id: int) -> int:
    """The logical shard of a user's ids."""
    if not isinstance(user_id, int) or isinstance(user_id, bool) or user_id < 0:
        raise ValueError(f"user_id must be a non-negative integer, got {user_id!r}")
    return user_id % SHARD_COUNT


def to_signed(media_id: int) -> int:
    """Maps an unsigned id onto a signed 64-bit value (for PostgreSQL ``bigint``),
    preserving order: ``a < b`` iff ``to_signed(a) < to_signed(b)``."""
    _check_range("id", media_id, MAX_ID)
    return media_id - _SIGN_OFFSET


def from_signed(value: int) -> int:
    """Inverse of ``to_signed``."""
    if not isinstance(value, int) or not -_SIGN_OFFSET <= value < _SIGN_OFFSET:
        raise ValueError(f"signed id must be a 64-bit integer, got {value!r}")
    return value + _SIGN_OFFSET


def _check_range(name: str, value: int, maximum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if not 0 <= value <= maximum:
        raise ValueError(f"{name} must be in [0, {maximum}], got {value}")


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000 - EPOCH_MS


class IdGenerator:
    """Mints strictly increasing ids for one logical shard; safe across threads and tasks.

    Within one millisecond the sequence counts 0..1023; when it is used up, ``next_id``
    waits for the wall clock's next millisecond (at most 1 ms, under a lock held only for
    the arithmetic and that wait).

    When the wall clock steps back (NTP correction, VM migration), ids never go backwards:
    the generator keeps the last millisecond it used and carries on from there as a
    logical clock, moving to the next millisecond without waiting each time 1024 ids are
    used up, until the wall clock catches up. During such a step the time inside new ids
    runs ahead of the wall clock by at most the size of the step.

    ``clock`` returns ms since EPOCH_MS; tests pass a fake one.
    """

    def __init__(self, shard: int, *, clock: Callable[[], int] = _wall_ms) -> None:
        _check_range("shard", shard, MAX_SHARD)
        self._shard = shard
        self._clock = clock
        self._lock = threading.Lock()
        self._last_ms = -1
        self._seq = 0

    @property
    def shard(self) -> int:
        return self._shard

    def next_id(self) -> int:
        """Returns an id larger than every id this generator returned before."""
        with self._lock:
            now = self._clock()
            if now > self._last_ms:
                self._last_ms, self._seq = now, 0
            elif self._seq < MAX_SEQUENCE:
                self._seq += 1
            elif now < self._last_ms:
                # Clock stepped back and this logical ms is used up: run ahead.
                self._last_ms, self._seq = self._last_ms + 1, 0
            else:
                self._last_ms, self._seq = self._wait_past(self._last_ms), 0
            return make_id(self._last_ms, self._shard, self._seq)

    def _wait_past(self, ms: int) -> int:
        while (now := self._clock()) <= ms:
            if now < ms:  # the clock stepped back while we waited
                return ms + 1
            time.sleep(0.0001)
        return now
