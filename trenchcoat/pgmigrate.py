"""Versioned PostgreSQL schemas: each service ships ``<package>/migrations/NNNN_name.sql``
and applies them at start, in order, each in its own transaction, under an advisory lock
so processes starting together apply each once. A table per service records what is
applied (services share one database, each owning its own tables). The whole run is
bounded by a deadline: a database that does not answer stops the service's start with
``Unavailable`` naming PostgreSQL.
"""

from __future__ import annotations

import contextlib
import logging
import re
import zlib
from importlib import resources
from typing import Any, Self

import asyncpg

from trenchcoat import postgres

log = logging.getLogger(__name__)

_MIGRATION = re.compile(r"(\d{4})_([a-z0-9_]+)\.sql")


def migrations(package: str) -> list[tuple[int, str, str]]:
    """(version, name, sql) of every migration ``package`` ships, in order."""
    found = []
    for entry in resources.files(package).iterdir():
        match = _MIGRATION.fullmatch(entry.name)
        if match:
            found.append((int(match[1]), match[2], entry.read_text()))
    return sorted(found)


async def migrate(pool: asyncpg.Pool, package: str, table: str, *, timeout_s: float) -> list[int]:
    """Applies ``package``'s migrations not yet recorded in ``table`` within ``timeout_s``;
    returns their versions."""
    lock = zlib.crc32(table.encode())  # one advisory lock per migrations table
    applied: list[int] = []
    async with postgres.connection(pool, f"the schema migrations of {package}", timeout_s) as conn:
        await conn.execute("SELECT pg_advisory_lock($1)", lock)
        try:
            await conn.execute(
                f"CREATE TABLE IF NOT EXISTS {table} ("
                " version integer PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {r["version"] for r in await conn.fetch(f"SELECT version FROM {table}")}
            for version, name, sql in migrations(package):
                if version in done:
                    continue
                async with conn.transaction():
                    await conn.execute(sql)
                    await conn.execute(f"INSERT INTO {table} (version, name) VALUES ($1, $2)", version, name)
                log.info("applied migration %s %04d_%s", package, version, name)
                applied.append(version)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", lock)
    return applied


class Database:
    """What a service keeps in PostgreSQL, as a class to extend: the pool, the versioned
    schema (``MIGRATIONS``, the package holding them, and ``MIGRATIONS_TABLE``, the table
    recording them), and a connection for one piece of work within the deadline
    (``trenchcoat.postgres``). Subclasses add the service's statements."""

    MIGRATIONS: str
    MIGRATIONS_TABLE: str

    def __init__(self, pool: asyncpg.Pool, timeout_s: float) -> None:
        self._pool = pool
        self._timeout = timeout_s

    @classmethod
    async def connect(cls, dsn: str, *, timeout_s: float, min_size: int = 2, max_size: int = 16) -> Self:
        """Connects within a few deadlines (``trenchcoat.postgres.connect``) or raises Unavailable."""
        return cls(await postgres.connect(dsn, timeout_s=timeout_s, min_size=min_size, max_size=max_size),
                   timeout_s)

    async def close(self) -> None:
        await self._pool.close()

    async def migrate(self) -> list[int]:
        """Applies the migrations not yet applied; returns their versions."""
        return await migrate(self._pool, self.MIGRATIONS, self.MIGRATIONS_TABLE,
                             timeout_s=postgres.CONNECT_DEADLINES * self._timeout)

    def _db(self, what: str) -> contextlib.AbstractAsyncContextManager[Any]:
        """A connection for one piece of work within the deadline (trenchcoat.postgres)."""
        return postgres.connection(self._pool, what, self._timeout)
