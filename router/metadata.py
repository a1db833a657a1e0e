"""Media metadata in PostgreSQL (asyncpg): the versioned schema and the rows.

Migrations are the files ``router/migrations/NNNN_name.sql``, applied in order, each in
its own transaction, under an advisory lock so routers starting together apply each
once; ``schema_migrations`` records what is applied. A row is written ``pending``
before any replica is touched (its primary key makes the minted media_id unique across
routers), becomes ``active`` once every replica holds the bytes, and is never served
while pending.
"""

from __future__ import annotations

import enum
import logging
import re
from dataclasses import dataclass
from datetime import datetime
from importlib import resources

import asyncpg

from trenchcoat.errors import Unavailable
from trenchcoat.ids import from_signed, to_signed

log = logging.getLogger(__name__)

_MIGRATION = re.compile(r"(\d{4})_([a-z0-9_]+)\.sql")
_LOCK_ID = 0x7472656E  # "tren": the advisory lock migrations run under


class MediaState(enum.IntEnum):
    PENDING = 0
    ACTIVE = 1
    DELETED = 2


@dataclass(frozen=True, slots=True)
class MediaRow:
    media_id: int
    owner_id: int
    logical_volume: int
    cookie: int
    size_bytes: int
    content_type: str
    state: MediaState
    created_at: datetime
    idempotency_key: str | None


class DuplicateId(Exception):
    """The minted media_id is taken (another router minted it in the same millisecond)."""


def migrations() -> list[tuple[int, str, str]]:
    """(version, name, sql) of every migration shipped, in order."""
    found = []
    for entry in resources.files("router.migrations").iterdir():
        match = _MIGRATION.fullmatch(entry.name)
        if match:
            found.append((int(match[1]), match[2], entry.read_text()))
    return sorted(found)


class MediaStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @classmethod
    async def connect(cls, dsn: str, *, min_size: int = 2, max_size: int = 16) -> MediaStore:
        try:
            pool = await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size, command_timeout=10)
        except (OSError, asyncpg.PostgresError) as exc:
            raise Unavailable(f"cannot reach PostgreSQL at {_redact(dsn)}: {exc}") from exc
        return cls(pool)

    async def close(self) -> None:
        await self._pool.close()

    async def migrate(self) -> list[int]:
        """Applies the migrations not yet applied; returns their versions."""
        applied: list[int] = []
        async with self._pool.acquire() as conn:
            await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_ID)
            try:
                await conn.execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations ("
                    " version integer PRIMARY KEY, name text NOT NULL,"
                    " applied_at timestamptz NOT NULL DEFAULT now())"
                )
                done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
                for version, name, sql in migrations():
                    if version in done:
                        continue
                    async with conn.transaction():
                        await conn.execute(sql)
                        await conn.execute("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                                           version, name)
                    log.info("applied migration %04d_%s", version, name)
                    applied.append(version)
            finally:
                await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_ID)
        return applied

    async def reserve(self, *, media_id: int, owner_id: int, logical_volume: int, cookie: int,
                      size_bytes: int, content_type: str, idempotency_key: str | None) -> MediaRow | None:
        """Writes a pending row. Returns None when it was written; the existing row when
        this owner already used ``idempotency_key``. Raises DuplicateId for a taken id."""
        try:
            await self._pool.execute(
                "INSERT INTO media (media_id, owner_id, logical_volume, cookie, size_bytes, content_type,"
                " state, idempotency_key) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                to_signed(media_id), owner_id, logical_volume, cookie, size_bytes, content_type,
                MediaState.PENDING, idempotency_key,
            )
        except asyncpg.UniqueViolationError as exc:
            if exc.constraint_name == "media_pkey":
                raise DuplicateId(media_id) from None
            existing = await self.by_idempotency_key(owner_id, idempotency_key or "")
            if existing is None:  # deleted between the two statements: try again
                raise DuplicateId(media_id) from None
            return existing
        return None

    async def activate(self, media_id: int, logical_volume: int) -> MediaRow:
        row = await self._pool.fetchrow(
            "UPDATE media SET state = $2, logical_volume = $3 WHERE media_id = $1 RETURNING *",
            to_signed(media_id), MediaState.ACTIVE, logical_volume,
        )
        assert row is not None, f"pending row {media_id} vanished"
        return _row(row)

    async def discard(self, media_id: int) -> None:
        """Drops a pending row whose upload failed."""
        await self._pool.execute("DELETE FROM media WHERE media_id = $1 AND state = $2",
                                 to_signed(media_id), MediaState.PENDING)

    async def mark_deleted(self, media_id: int) -> bool:
        """Turns an active row deleted; False if it was not active."""
        status = await self._pool.execute("UPDATE media SET state = $2 WHERE media_id = $1 AND state = $3",
                                          to_signed(media_id), MediaState.DELETED, MediaState.ACTIVE)
        return status.endswith(" 1")

    async def get(self, media_id: int) -> MediaRow | None:
        row = await self._pool.fetchrow("SELECT * FROM media WHERE media_id = $1", to_signed(media_id))
        return _row(row) if row else None

    async def get_many(self, media_ids: list[int]) -> dict[int, MediaRow]:
        rows = await self._pool.fetch("SELECT * FROM media WHERE media_id = ANY($1::bigint[])",
                                      [to_signed(m) for m in media_ids])
        return {r.media_id: r for r in map(_row, rows)}

    async def by_idempotency_key(self, owner_id: int, key: str) -> MediaRow | None:
        row = await self._pool.fetchrow("SELECT * FROM media WHERE owner_id = $1 AND idempotency_key = $2",
                                        owner_id, key)
        return _row(row) if row else None


def _row(r: asyncpg.Record) -> MediaRow:
    return MediaRow(
        media_id=from_signed(r["media_id"]), owner_id=r["owner_id"], logical_volume=r["logical_volume"],
        cookie=r["cookie"], size_bytes=r["size_bytes"], content_type=r["content_type"],
        state=MediaState(r["state"]), created_at=r["created_at"], idempotency_key=r["idempotency_key"],
    )


def _redact(dsn: str) -> str:
    return re.sub(r"//([^:@/]+):[^@/]*@", r"//\1:***@", dsn)
