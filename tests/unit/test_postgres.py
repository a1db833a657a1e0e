"""trenchcoat/postgres.py: which database failures are the database's (retry) and which
the request's."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, cast

import asyncpg
import pytest

from trenchcoat import postgres
from trenchcoat.errors import Unavailable


@pytest.mark.parametrize("exc", [
    asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),
    asyncpg.exceptions.AdminShutdownError("terminating connection due to administrator command"),
    asyncpg.exceptions.TooManyConnectionsError("sorry, too many clients already"),
    asyncpg.exceptions.SerializationError("could not serialize access"),
    asyncpg.exceptions.DeadlockDetectedError("deadlock detected"),
    asyncpg.exceptions.QueryCanceledError("canceling statement due to statement timeout"),
    asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed"),
    asyncpg.InterfaceError("cannot perform operation: another operation is in progress"),
    asyncpg.exceptions.InternalClientError("cannot switch to state 12; another operation (2) is in progress"),
    asyncpg.exceptions.ProtocolError("unexpected message"),
    TimeoutError(), ConnectionRefusedError(),
])
def test_the_databases_trouble_is_transient(exc):
    assert postgres.transient(exc)


@pytest.mark.parametrize("exc", [
    asyncpg.exceptions.UniqueViolationError("duplicate key"),
    asyncpg.exceptions.UndefinedTableError("relation does not exist"),
    asyncpg.exceptions.CheckViolationError("violates check constraint"),
    ValueError("a bug"),
])
def test_the_requests_trouble_is_not(exc):
    assert not postgres.transient(exc)


class _Conn:
    def __init__(self) -> None:
        self.terminated = False

    def terminate(self) -> None:
        self.terminated = True


class _Pool:
    """Hands out one connection; records what came back."""

    def __init__(self) -> None:
        self.conn = _Conn()
        self.released: list[_Conn] = []

    async def acquire(self) -> _Conn:
        return self.conn

    async def release(self, conn: _Conn, timeout: float) -> None:
        self.released.append(conn)


def stand_in_connection(pool: _Pool, what: str) -> contextlib.AbstractAsyncContextManager[Any]:
    """``postgres.connection`` on a stand-in pool (it calls only acquire and release)."""
    return postgres.connection(cast(asyncpg.Pool, pool), what, 5.0)


async def test_a_connection_broken_mid_statement_is_unavailable_and_never_reused():
    """What asyncpg raised in the router's delete journal when PostgreSQL shut down under a
    statement: before, it escaped as a bug and stopped the router."""
    pool = _Pool()
    with pytest.raises(Unavailable, match="PostgreSQL could not serve claiming journalled deletes now"):
        async with stand_in_connection(pool, "claiming journalled deletes"):
            raise asyncpg.exceptions.InternalClientError("cannot switch to state 12; another operation (2) is in progress")
    assert pool.conn.terminated and pool.released == [pool.conn]


async def test_the_callers_own_error_passes_through_and_the_connection_is_kept():
    pool = _Pool()
    with pytest.raises(ValueError, match="a bug"):
        async with stand_in_connection(pool, "anything"):
            raise ValueError("a bug")
    assert not pool.conn.terminated and pool.released == [pool.conn]


class _BrokenPool(_Pool):
    """A pool whose connection asyncpg has detached, and whose release fails (a bug)."""

    async def acquire(self) -> _Conn:
        conn = self.conn

        def refuse() -> None:
            raise asyncpg.InterfaceError("cannot call Connection.terminate(): connection has been released back to the pool")

        conn.terminate = refuse  # type: ignore[method-assign]
        return conn

    async def release(self, conn: _Conn, timeout: float) -> None:
        raise RuntimeError("a bug in giving it back")


@pytest.mark.parametrize("raised, expected", [
    (asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed in the middle of operation"), Unavailable),
    (ValueError("the caller's own"), ValueError),
])
async def test_giving_a_connection_back_never_replaces_the_works_outcome(caplog, raised, expected):
    with pytest.raises(expected):
        async with stand_in_connection(_BrokenPool(), "anything"):
            raise raised
    assert "could not be returned to the pool" in caplog.text


@pytest.fixture
def dsn(postgres) -> str:
    """The session's private PostgreSQL (the fixture's name is this module's subject's)."""
    return postgres.endpoint


async def _lost_by_asyncpg(conn: Any) -> None:
    """Until asyncpg has seen the server hang up on ``conn``: it then detaches the pool's
    proxy from the connection, and the proxy refuses every call after."""
    async with asyncio.timeout(60):
        while True:
            try:
                if conn.is_closed():
                    return
            except asyncpg.InterfaceError:
                return
            await asyncio.sleep(0.01)


async def test_a_connection_cut_between_statements_is_unavailable_and_the_pool_serves_on(dsn):
    """The router's delete journal met this when PostgreSQL stopped under it: the server
    dropped the connection after one statement, asyncpg noticed and took the connection
    back, and the next statement failed. Before, the wrapper's own clean-up then raised
    InterfaceError ("cannot call Connection.terminate(): connection has been released back
    to the pool") in place of Unavailable, and that stopped the router."""
    pool = await postgres.connect(dsn, timeout_s=30.0, min_size=1, max_size=2)
    try:
        with pytest.raises(Unavailable) as info:
            async with postgres.connection(pool, "claiming journalled deletes", 30.0) as conn:
                pid = await conn.fetchval("SELECT pg_backend_pid()")
                other = await asyncpg.connect(dsn)
                try:
                    assert await other.fetchval("SELECT pg_terminate_backend($1)", pid)
                finally:
                    await other.close()
                await _lost_by_asyncpg(conn)
                await conn.fetchval("SELECT 1")
        assert type(info.value) is Unavailable
        assert "PostgreSQL could not serve claiming journalled deletes now" in str(info.value)
        for _ in range(3):  # the pool replaces what it lost
            async with postgres.connection(pool, "a check", 30.0) as conn:
                assert await conn.fetchval("SELECT 1") == 1
    finally:
        await pool.close()
