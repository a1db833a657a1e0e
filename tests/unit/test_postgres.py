"""trenchcoat/postgres.py: which database failures are the database's (retry) and which
the request's."""

from __future__ import annotations

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


async def test_a_connection_broken_mid_statement_is_unavailable_and_never_reused():
    """What asyncpg raised in the router's delete journal when PostgreSQL shut down under a
    statement: before, it escaped as a bug and stopped the router."""
    pool = _Pool()
    with pytest.raises(Unavailable, match="PostgreSQL could not serve claiming journalled deletes now"):
        async with postgres.connection(pool, "claiming journalled deletes", 5.0):
            raise asyncpg.exceptions.InternalClientError("cannot switch to state 12; another operation (2) is in progress")
    assert pool.conn.terminated and pool.released == [pool.conn]


async def test_the_callers_own_error_passes_through_and_the_connection_is_kept():
    pool = _Pool()
    with pytest.raises(ValueError, match="a bug"):
        async with postgres.connection(pool, "anything", 5.0):
            raise ValueError("a bug")
    assert not pool.conn.terminated and pool.released == [pool.conn]
