"""PostgreSQL for the services that keep their truth there: a pool connected within a
deadline, a connection for one piece of work bounded by a deadline (``postgres.timeout_s``),
and every failure that says "the database, not the request" turned into ``Unavailable``
naming PostgreSQL (so a client retries instead of seeing INTERNAL, and a background loop
carries on).

A piece of work's deadline covers waiting for a pooled connection and every statement
run on it. A connection whose work was cut short by the deadline (or broke) is closed,
not returned to the pool: asyncpg would otherwise first wait for the server to
acknowledge a cancel request, which a stalled server never does. Giving a connection back
never raises an error of its own (asyncpg may have taken a broken one back already), so
the work's own outcome is what the caller sees.

Transient, by SQLSTATE class: 08 connection exceptions, 40 transaction rollbacks
(serialization failures, deadlocks: the whole transaction may be retried), 53 insufficient
resources (too many connections, disk full), 57 operator intervention (shutting down,
starting up, query cancelled); plus the client's own connection and timeout errors, and
asyncpg's internal client errors, which it raises when a connection broke in the middle of
a protocol exchange (e.g. "cannot switch to state 12; another operation (2) is in
progress" from a statement on a connection the server had just dropped at shutdown).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import asyncpg

from trenchcoat.errors import Unavailable
from trenchcoat.redact import redact

log = logging.getLogger(__name__)

TRANSIENT_SQLSTATE_CLASSES = ("08", "40", "53", "57")

CONNECTION_TROUBLE: tuple[type[BaseException], ...] = (
    OSError, TimeoutError, asyncpg.InterfaceError, asyncpg.exceptions.InternalClientError)
"""Errors of the client side of a connection (never of the request): the connection is
not reused and the work is Unavailable."""

ANY_DATABASE_ERROR: tuple[type[BaseException], ...] = (*CONNECTION_TROUBLE, asyncpg.PostgresError)

SHARD_GUARD_HINT = "trenchcoat shards"
"""The HINT of the error an instance raises for a write to a row of a shard it does not
hold (``trenchcoat.pgmigrate``): the map changed, or the shard is being moved; the work
is Unavailable, to be retried once the process has the new map."""


class ShardRefused(Unavailable):
    """An instance refused a row of a shard it does not hold (``SHARD_GUARD_HINT``)."""


CONNECT_DEADLINES = 3
"""Connecting a pool at start (its first connections) may take this many times the
deadline of one piece of work."""


def transient(exc: BaseException) -> bool:
    """Whether ``exc`` is the database's trouble rather than the request's."""
    if isinstance(exc, CONNECTION_TROUBLE):
        return True
    sqlstate = str(getattr(exc, "sqlstate", "") or "")
    return isinstance(exc, asyncpg.PostgresError) and sqlstate[:2] in TRANSIENT_SQLSTATE_CLASSES


async def connect(dsn: str, *, timeout_s: float, min_size: int = 2, max_size: int = 16) -> asyncpg.Pool:
    """A connection pool whose statements time out after ``timeout_s`` (a backstop: work
    goes through ``connection``), connected within ``CONNECT_DEADLINES * timeout_s`` or
    Unavailable naming the server."""
    budget = CONNECT_DEADLINES * timeout_s
    try:
        return await asyncio.wait_for(
            asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size, command_timeout=timeout_s,
                                timeout=budget, reset=_keep_session),
            budget)
    except ANY_DATABASE_ERROR as exc:
        raise Unavailable(f"cannot reach PostgreSQL at {redact(dsn)} within {budget:g}s ({_detail(exc)}); "
                          "is it up, and is postgres.dsn right?") from exc


RELEASE_MIN_S = 0.5
"""Least time returning a healthy connection to the pool is given (a transaction left
open is rolled back there, a round trip), even when the work used up its deadline."""


async def _keep_session(conn: asyncpg.Connection) -> None:
    """How a pool readies a connection returned to it: as it is. asyncpg's default sends
    ``RESET ALL; UNLISTEN *; CLOSE ALL; SELECT pg_advisory_unlock_all()`` on every release,
    a round trip that doubled the cost of each piece of work (an upload's two statements
    took four; bench/README.md). Nothing here changes session state: no SET, LISTEN or
    cursor outlives its work, the migrations' advisory lock is released by them (or the
    connection closed when that fails), a connection cut short is closed, and asyncpg
    still rolls back a transaction left open before calling this."""


@contextlib.asynccontextmanager
async def connection(pool: asyncpg.Pool, what: str, timeout_s: float) -> AsyncIterator[Any]:
    """A pooled connection for one piece of work (``what``, as in "PostgreSQL did not
    answer <what>") that must finish within ``timeout_s``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    try:
        async with asyncio.timeout_at(deadline):
            conn = await pool.acquire()
    except ANY_DATABASE_ERROR as exc:
        raise _unavailable(what, timeout_s, exc) from exc
    cut_short = True  # until the work ends in a way that leaves the connection idle
    try:
        async with asyncio.timeout_at(deadline):
            yield conn
        cut_short = False
    except asyncpg.PostgresError as exc:
        cut_short = False  # the server answered
        if transient(exc):
            raise _unavailable(what, timeout_s, exc) from exc
        if getattr(exc, "hint", None) == SHARD_GUARD_HINT:
            raise ShardRefused(f"PostgreSQL refused {what}: {exc.args[0] if exc.args else exc}; the shard map "
                              "changed or the shard is being moved: retry in a moment") from None
        raise
    except CONNECTION_TROUBLE as exc:
        raise _unavailable(what, timeout_s, exc) from exc
    except Exception:
        cut_short = False  # the caller's own error, raised between statements
        raise
    finally:
        # Giving the connection back never raises: an error of its own here would replace
        # the work's outcome (Unavailable, or the caller's error) with one nobody expects.
        if cut_short:  # the deadline, a broken connection or a cancelled caller: never reuse it
            _terminate(conn)
        await _release(pool, conn, max(deadline - loop.time(), RELEASE_MIN_S))


def _terminate(conn: Any) -> None:
    """Closes a pooled connection at once, unless asyncpg has taken it back already: when
    it sees the server hang up (PostgreSQL stopped, the backend terminated) it closes the
    connection, returns it to the pool and detaches the proxy the work holds, which then
    refuses every call with InterfaceError, ``terminate()`` included."""
    try:
        conn.terminate()
    except asyncpg.InterfaceError as exc:
        log.debug("a PostgreSQL connection was closed by asyncpg already (%s)", exc)


async def _release(pool: asyncpg.Pool, conn: Any, timeout_s: float) -> None:
    """Returns a connection to the pool; one that cannot be reset in time is closed by
    asyncpg, and the work it did stands. Never raises (but for cancellation)."""
    try:
        await pool.release(conn, timeout=timeout_s)
    except ANY_DATABASE_ERROR as exc:
        log.warning("a PostgreSQL connection could not be reset for reuse and was closed (%s: %s)",
                    type(exc).__name__, exc)
    except Exception:
        # Not the database's trouble: a bug in giving it back (asyncpg's or ours). It is
        # said with its traceback, and the connection closed rather than reused.
        log.exception("a PostgreSQL connection could not be returned to the pool; closing it")
        _terminate(conn)


def _unavailable(what: str, timeout_s: float, exc: BaseException) -> Unavailable:
    if isinstance(exc, TimeoutError):
        return Unavailable(f"PostgreSQL did not answer {what} within {timeout_s:g}s ({_detail(exc)}); retry")
    return Unavailable(f"PostgreSQL could not serve {what} now ({_detail(exc)}); retry")


def _detail(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
