"""trenchcoat/postgres.py: which database failures are the database's (retry) and which
the request's."""

from __future__ import annotations

import asyncpg
import pytest

from trenchcoat import postgres


@pytest.mark.parametrize("exc", [
    asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),
    asyncpg.exceptions.AdminShutdownError("terminating connection due to administrator command"),
    asyncpg.exceptions.TooManyConnectionsError("sorry, too many clients already"),
    asyncpg.exceptions.SerializationError("could not serialize access"),
    asyncpg.exceptions.DeadlockDetectedError("deadlock detected"),
    asyncpg.exceptions.QueryCanceledError("canceling statement due to statement timeout"),
    asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed"),
    asyncpg.InterfaceError("cannot perform operation: another operation is in progress"),
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
