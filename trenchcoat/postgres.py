"""PostgreSQL for the services that keep their truth there: a connection for one piece of
work, bounded by a deadline, and every failure that says "the database, not the request"
turned into ``Unavailable`` naming PostgreSQL (so a client retries instead of seeing
INTERNAL, and a background loop carries on).

Transient, by SQLSTATE class: 08 connection exceptions, 40 transaction rollbacks
(serialization failures, deadlocks: the whole transaction may be retried), 53 insufficient
resources (too many connections, disk full), 57 operator intervention (shutting down,
starting up, query cancelled); plus the client's own connection and timeout errors.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import asyncpg

from trenchcoat.errors import Unavailable

TRANSIENT_SQLSTATE_CLASSES = ("08", "40", "53", "57")


def transient(exc: BaseException) -> bool:
    """Whether ``exc`` is the database's trouble rather than the request's."""
    if isinstance(exc, (OSError, TimeoutError, asyncpg.InterfaceError)):
        return True
    sqlstate = str(getattr(exc, "sqlstate", "") or "")
    return isinstance(exc, asyncpg.PostgresError) and sqlstate[:2] in TRANSIENT_SQLSTATE_CLASSES


@contextlib.asynccontextmanager
async def connection(pool: asyncpg.Pool, what: str, timeout_s: float) -> AsyncIterator[Any]:
    """A pooled connection for one piece of work that must finish within ``timeout_s``."""
    try:
        async with asyncio.timeout(timeout_s), pool.acquire() as conn:
            yield conn
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        if not transient(exc):
            raise
        raise Unavailable(f"PostgreSQL did not answer {what} within {timeout_s:g}s "
                          f"({type(exc).__name__}: {exc}); retry") from exc
