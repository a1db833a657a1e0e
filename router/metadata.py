"""Media metadata in PostgreSQL (asyncpg): the versioned schema and the rows.

Migrations are the files ``router/migrations/NNNN_name.sql`` (applied by
``trenchcoat.pgmigrate``; ``schema_migrations`` records them). A row is written ``pending``
before any replica is touched (its primary key makes the minted media_id unique across
routers), becomes ``active`` once every replica holds the bytes, and is never served
while pending.

Rows live on the PostgreSQL instance holding their logical shard (``trenchcoat.shards``):
a media's row, its renditions and its journalled deletes on its id's shard (its owner's,
``user_id % 8192``, minted there by ``next_id``), so every statement about one media goes to
one instance and ``get_many``/``renditions_of`` ask each instance once, in parallel; the
sweeps ask every instance.

Every call is bounded by ``postgres.timeout_s`` (``trenchcoat.postgres``): a database that
cannot be reached or answers too slowly is ``Unavailable`` naming PostgreSQL and what was
being done, never a hang or INTERNAL.
"""

from __future__ import annotations

import contextlib
import enum
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from trenchcoat import pgmigrate
from trenchcoat.errors import Internal
from trenchcoat.ids import from_signed, shard_for_user, split_id, to_signed

log = logging.getLogger(__name__)



class MediaState(enum.IntEnum):
    PENDING = 0
    ACTIVE = 1
    DELETED = 2


class RenditionsState(enum.IntEnum):
    PENDING = 0
    DONE = 1
    FAILED = 2


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
    renditions_state: RenditionsState = RenditionsState.PENDING
    renditions_version: int = 0
    """The recipe version its renditions were finished under (0: not finished)."""
    renditions_error: str | None = None
    width: int = 0
    """The original's displayed size (orientation applied), once the transformer reported
    it (0: unknown)."""
    height: int = 0


@dataclass(frozen=True, slots=True)
class RenditionRow:
    """A rendition recorded durable: its own needle (volume, cookie) under the media_id."""

    media_id: int
    alternate_key: int
    logical_volume: int
    cookie: int
    size_bytes: int
    content_type: str
    width: int
    height: int


@dataclass(frozen=True, slots=True)
class PendingDelete:
    """A journalled delete: the needle to flag on every replica and drop from every cache."""

    media_id: int
    alternate_key: int
    logical_volume: int
    cookie: int
    attempts: int
    stray: bool = False
    """A dropped copy of a rendition, not a deleted media: only its replicas need the flag."""


class DuplicateId(Exception):
    """The minted media_id is taken (another router minted it in the same millisecond)."""


class MediaStore(pgmigrate.Database):
    MIGRATIONS = "router.migrations"
    MIGRATIONS_TABLE = "schema_migrations"
    SHARDED = (
        pgmigrate.ShardedTable("media", ("media_id",), (pgmigrate.ID_SHARD.format(column="{r}media_id"),)),
        pgmigrate.ShardedTable("renditions", ("media_id", "alternate_key"),
                               (pgmigrate.ID_SHARD.format(column="{r}media_id"),), parent="media"),
        pgmigrate.ShardedTable("delete_journal", ("media_id", "alternate_key", "logical_volume", "cookie"),
                               (pgmigrate.ID_SHARD.format(column="{r}media_id"),)),
    )

    async def reserve(self, *, shard: int, owner_id: int, logical_volume: int, cookie: int,
                      size_bytes: int, content_type: str, idempotency_key: str | None) -> tuple[MediaRow, bool]:
        """Writes a pending row whose media_id PostgreSQL mints in the same statement
        (``next_id(shard)``, migration 0002): (the row, True); or, when this owner already
        used ``idempotency_key``, (that row, False). Raises DuplicateId when the id was taken
        (a shard minting over 1,024 ids in one millisecond)."""
        try:
            async with self._db_for(shard, "reserving the upload's row") as conn:
                row = await conn.fetchrow(
                    "INSERT INTO media (media_id, owner_id, logical_volume, cookie, size_bytes, content_type,"
                    " state, idempotency_key) VALUES (next_id($1), $2, $3, $4, $5, $6, $7, $8) RETURNING *",
                    shard, owner_id, logical_volume, cookie, size_bytes, content_type,
                    MediaState.PENDING, idempotency_key,
                )
        except asyncpg.UniqueViolationError as exc:
            if exc.constraint_name == "media_pkey":
                raise DuplicateId(f"a media_id of shard {shard} was minted twice") from None
            existing = await self.by_idempotency_key(owner_id, idempotency_key or "")
            if existing is None:  # deleted between the two statements: try again
                raise DuplicateId(f"idempotency key {idempotency_key!r} vanished meanwhile") from None
            return existing, False
        if row is None:
            raise Internal("INSERT ... RETURNING answered no row")
        return _row(row), True

    async def activate(self, media_id: int, logical_volume: int) -> MediaRow:
        async with self._for_id(media_id, "activating the upload's row") as conn:
            row = await conn.fetchrow(
                "UPDATE media SET state = $2, logical_volume = $3 WHERE media_id = $1 RETURNING *",
                to_signed(media_id), MediaState.ACTIVE, logical_volume,
            )
        if row is None:
            raise Internal(f"the pending row of {media_id} vanished before its upload finished")
        return _row(row)

    async def discard(self, media_id: int) -> None:
        """Drops a pending row whose upload failed."""
        async with self._for_id(media_id, "dropping a failed upload's row") as conn:
            await conn.execute("DELETE FROM media WHERE media_id = $1 AND state = $2",
                               to_signed(media_id), MediaState.PENDING)

    async def mark_deleted(self, media_id: int) -> list[PendingDelete] | None:
        """Turns an active row deleted and journals the delete of its needle and of every
        rendition's, in one transaction; returns the journal entries, or None if the row
        was not active."""
        async with self._for_id(media_id, "marking the media deleted") as conn, conn.transaction():
            row = await conn.fetchrow(
                "UPDATE media SET state = $2 WHERE media_id = $1 AND state = $3 RETURNING logical_volume, cookie",
                to_signed(media_id), MediaState.DELETED, MediaState.ACTIVE)
            if row is None:
                return None
            # The UPDATE holds the row's lock: a rendition being recorded (which reads the
            # row FOR SHARE) either committed before, and is journalled here, or finds the
            # media deleted and journals its own needle.
            entries = await conn.fetch(
                "INSERT INTO delete_journal (media_id, alternate_key, logical_volume, cookie)"
                " SELECT $1::bigint, 0::bigint, $2::integer, $3::bigint UNION ALL"
                " SELECT media_id, alternate_key, logical_volume, cookie FROM renditions WHERE media_id = $1"
                " ON CONFLICT (media_id, alternate_key, logical_volume, cookie) DO UPDATE SET next_attempt_at = now()"
                " RETURNING *",
                to_signed(media_id), row["logical_volume"], row["cookie"])
        return [_pending(e) for e in sorted(entries, key=lambda e: e["alternate_key"])]

    async def journal_stray(self, media_id: int, alternate_key: int, logical_volume: int,
                            cookie: int) -> PendingDelete:
        """Journals the delete of a stray needle: a rendition's copy that was not recorded
        (one recorded before it, or its media deleted meanwhile)."""
        async with self._for_id(media_id, "journalling a stray needle's delete") as conn:
            entry = await conn.fetchrow(
                "INSERT INTO delete_journal (media_id, alternate_key, logical_volume, cookie, stray)"
                " VALUES ($1, $2, $3, $4, true)"
                " ON CONFLICT (media_id, alternate_key, logical_volume, cookie) DO UPDATE SET next_attempt_at = now()"
                " RETURNING *", to_signed(media_id), alternate_key, logical_volume, cookie)
        assert entry is not None  # an upsert always returns its row
        return _pending(entry)

    async def claim_deletes(self, limit: int, hold_s: float) -> list[PendingDelete]:
        """Up to ``limit`` journalled deletes that are due on each instance, each held from
        other routers for ``hold_s`` (its next attempt is pushed that far out; a router that
        dies while holding one leaves it to be claimed again then)."""
        rows = await self._fetch_each(
            "claiming journalled deletes",
            "UPDATE delete_journal SET attempts = attempts + 1, next_attempt_at = now() + make_interval(secs => $2)"
            " WHERE (media_id, alternate_key, logical_volume, cookie) IN"
            " (SELECT media_id, alternate_key, logical_volume, cookie FROM delete_journal"
            "   WHERE next_attempt_at <= now() ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED)"
            " RETURNING *", limit, hold_s)
        return [_pending(r) for r in rows]

    async def finish_delete(self, entry: PendingDelete) -> None:
        """The delete is carried out everywhere: the entry goes."""
        async with self._for_id(entry.media_id, "finishing a journalled delete") as conn:
            await conn.execute("DELETE FROM delete_journal WHERE media_id = $1 AND alternate_key = $2"
                               " AND logical_volume = $3 AND cookie = $4",
                               to_signed(entry.media_id), entry.alternate_key, entry.logical_volume, entry.cookie)

    async def delay_delete(self, entry: PendingDelete, why: str, retry_in_s: float) -> None:
        """Not carried out everywhere yet: try again in ``retry_in_s``."""
        async with self._for_id(entry.media_id, "postponing a journalled delete") as conn:
            await conn.execute(
                "UPDATE delete_journal SET last_error = $3, next_attempt_at = now() + make_interval(secs => $4)"
                " WHERE media_id = $1 AND alternate_key = $2 AND logical_volume = $5 AND cookie = $6",
                to_signed(entry.media_id), entry.alternate_key, why[:1000], retry_in_s, entry.logical_volume,
                entry.cookie)

    async def pending_deletes(self) -> int:
        rows = await self._fetch_each("counting journalled deletes", "SELECT count(*) AS n FROM delete_journal")
        return sum(int(r["n"]) for r in rows)

    async def get(self, media_id: int) -> MediaRow | None:
        async with self._for_id(media_id, "reading the media's row") as conn:
            row = await conn.fetchrow("SELECT * FROM media WHERE media_id = $1", to_signed(media_id))
        return _row(row) if row else None

    async def get_many(self, media_ids: list[int]) -> dict[int, MediaRow]:
        """The rows of ``media_ids``: one query per instance holding any, in parallel."""
        rows = await self._fetch_ids("reading media rows", "SELECT * FROM media WHERE media_id = ANY($1::bigint[])",
                                     media_ids)
        return {r.media_id: r for r in map(_row, rows)}

    async def by_idempotency_key(self, owner_id: int, key: str) -> MediaRow | None:
        async with self._db_for(shard_for_user(owner_id), "looking up the upload's idempotency key") as conn:
            row = await conn.fetchrow("SELECT * FROM media WHERE owner_id = $1 AND idempotency_key = $2",
                                      owner_id, key)
        return _row(row) if row else None


    async def record_rendition(self, rendition: RenditionRow) -> tuple[RenditionRow, bool] | None:
        """Records a rendition whose needle every replica holds: (it, True); or (the one
        recorded before under its alternate key, False); None when the media is not active
        (the caller then journals its needle's delete)."""
        async with self._for_id(rendition.media_id, "recording a rendition") as conn, conn.transaction():
            # FOR SHARE: a delete of the media waits for this transaction, and then journals
            # the rendition with the rest (``mark_deleted``).
            active = await conn.fetchval("SELECT 1 FROM media WHERE media_id = $1 AND state = $2 FOR SHARE",
                                         to_signed(rendition.media_id), MediaState.ACTIVE)
            if active is None:
                return None
            row = await conn.fetchrow(
                "INSERT INTO renditions (media_id, alternate_key, logical_volume, cookie, size_bytes, content_type,"
                " width, height) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
                " ON CONFLICT (media_id, alternate_key) DO NOTHING RETURNING *",
                to_signed(rendition.media_id), rendition.alternate_key, rendition.logical_volume, rendition.cookie,
                rendition.size_bytes, rendition.content_type, rendition.width, rendition.height)
            if row is not None:
                return _rendition(row), True
            row = await conn.fetchrow("SELECT * FROM renditions WHERE media_id = $1 AND alternate_key = $2",
                                      to_signed(rendition.media_id), rendition.alternate_key)
        if row is None:
            raise Internal(f"rendition {rendition.alternate_key} of {rendition.media_id} conflicted but is not there")
        return _rendition(row), False

    async def rendition(self, media_id: int, alternate_key: int) -> RenditionRow | None:
        async with self._for_id(media_id, "reading a rendition's row") as conn:
            row = await conn.fetchrow("SELECT * FROM renditions WHERE media_id = $1 AND alternate_key = $2",
                                      to_signed(media_id), alternate_key)
        return _rendition(row) if row else None

    async def renditions_of(self, media_ids: list[int]) -> dict[int, list[RenditionRow]]:
        """Every recorded rendition of each media, by alternate key: one query per instance
        holding any, in parallel."""
        rows = await self._fetch_ids("reading renditions", "SELECT * FROM renditions WHERE media_id = ANY($1::bigint[])"
                                     " ORDER BY media_id, alternate_key", media_ids)
        out: dict[int, list[RenditionRow]] = {}
        for r in map(_rendition, rows):
            out.setdefault(r.media_id, []).append(r)
        return out

    async def finish_renditions(self, media_id: int, version: int, failure: str, *, width: int = 0,
                                height: int = 0) -> bool:
        """Records the media's renditions finished under recipe ``version`` (``failure``
        empty) or failed for good, and the original's displayed size when given (both
        non-zero); False when the media is not active."""
        state = RenditionsState.FAILED if failure else RenditionsState.DONE
        sized = width > 0 and height > 0
        async with self._for_id(media_id, "recording renditions finished") as conn:
            status = await conn.execute(
                "UPDATE media SET renditions_state = $2, renditions_version = $3, renditions_error = $4,"
                " width = CASE WHEN $6 THEN $7 ELSE width END, height = CASE WHEN $6 THEN $8 ELSE height END"
                " WHERE media_id = $1 AND state = $5",
                to_signed(media_id), state, version, failure[:1000] or None, MediaState.ACTIVE, sized, width, height)
        return status.endswith(" 1")

    async def renditions_due(self, after_s: float, limit: int) -> list[MediaRow]:
        """Up to ``limit`` active uploads on each instance at least ``after_s`` old whose
        renditions are not finished and were not swept in the last ``after_s``; each is
        marked swept now, so other routers sweeping at once pass over it."""
        rows = await self._fetch_each(
            "finding unfinished renditions",
            "UPDATE media SET renditions_swept_at = now() WHERE media_id IN ("
            "  SELECT media_id FROM media WHERE state = $1 AND renditions_state = $2"
            "  AND created_at < now() - make_interval(secs => $3)"
            "  AND (renditions_swept_at IS NULL OR renditions_swept_at < now() - make_interval(secs => $3))"
            "  ORDER BY created_at LIMIT $4 FOR UPDATE SKIP LOCKED) RETURNING *",
            MediaState.ACTIVE, RenditionsState.PENDING, after_s, limit)
        return [_row(r) for r in rows]

    def _for_id(self, media_id: int, what: str) -> contextlib.AbstractAsyncContextManager[Any]:
        """A connection to the instance holding ``media_id``'s row (its id's shard)."""
        return self._db_for(split_id(media_id)[1], what)


def _rendition(r: asyncpg.Record) -> RenditionRow:
    return RenditionRow(media_id=from_signed(r["media_id"]), alternate_key=r["alternate_key"],
                        logical_volume=r["logical_volume"], cookie=r["cookie"], size_bytes=r["size_bytes"],
                        content_type=r["content_type"], width=r["width"], height=r["height"])


def _row(r: asyncpg.Record) -> MediaRow:
    return MediaRow(
        media_id=from_signed(r["media_id"]), owner_id=r["owner_id"], logical_volume=r["logical_volume"],
        cookie=r["cookie"], size_bytes=r["size_bytes"], content_type=r["content_type"],
        state=MediaState(r["state"]), created_at=r["created_at"], idempotency_key=r["idempotency_key"],
        renditions_state=RenditionsState(r["renditions_state"]), renditions_version=r["renditions_version"],
        renditions_error=r["renditions_error"], width=r["width"], height=r["height"],
    )


def _pending(r: asyncpg.Record) -> PendingDelete:
    return PendingDelete(media_id=from_signed(r["media_id"]), alternate_key=r["alternate_key"],
                         logical_volume=r["logical_volume"], cookie=r["cookie"], attempts=r["attempts"],
                         stray=r["stray"])
