"""The key store's truth: one 256-bit key per warm blob, in PostgreSQL, with the keys in
use kept in RAM so a warm read does not wait for the database.

**Deleting = discarding the key.** ``discard`` sets the row's key to NULL (the row stays,
so the blob is never given a key again) and drops it from RAM in the same step: every
later read of the blob is NOT_FOUND, and its ciphertext, wherever it lies (every block,
every parity byte, every geo-replica), is noise. No compaction is needed.

For the shred to hold, the key must not survive elsewhere: PostgreSQL keeps the old row
version until VACUUM reclaims it (autovacuum does; run ``VACUUM f4_keys`` to be sure),
and WAL archives and base backups keep it until they expire. Keep their retention to the
time a delete may take to be final, and never restore a key table from a backup taken
before a delete without discarding again the keys deleted since.

The cache holds at most ``cache_entries`` keys and tombstones (least recently used out
first); there is one key store per cell, so a discard is seen by every read at once.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping

import asyncpg

from f4.crypto import new_key
from f4.keystore import metrics
from f4.keystore.errors import KeyDiscarded, KeyNotFound
from trenchcoat import pgmigrate
from trenchcoat.ids import split_id, to_signed
from trenchcoat.shards import ShardMap

DISCARDED = b""
"""What the cache holds for a discarded key."""







class Keys(pgmigrate.Database):
    MIGRATIONS = "f4.keystore.migrations"
    MIGRATIONS_TABLE = "f4_keystore_schema_migrations"
    SHARDED = (
        pgmigrate.ShardedTable("f4_keys", ("needle_key", "alternate_key"),
                               (pgmigrate.ID_SHARD.format(column="{r}needle_key"),)),
        pgmigrate.ShardedTable("f4_deleted_media", ("needle_key",),
                               (pgmigrate.ID_SHARD.format(column="{r}needle_key"),)),
    )

    cache_entries = 1_000_000

    def __init__(self, instances: Mapping[str, tuple[asyncpg.Pool, str]], timeout_s: float,
                 shard_map: ShardMap | None = None) -> None:
        super().__init__(instances, timeout_s, shard_map)
        self._cache: OrderedDict[tuple[int, int], bytes] = OrderedDict()
        self._alts: dict[int, set[int]] = {}
        """Needle key -> the alternate keys cached for it (to forget them all on a delete)."""
        self._discards = 0
        """Discards so far: a key read from the database while one happened is read again,
        so a read racing a delete can never put the discarded key back in the cache."""

    def _remember(self, blob: tuple[int, int], value: bytes) -> None:
        self._cache[blob] = value
        self._cache.move_to_end(blob)
        self._alts.setdefault(blob[0], set()).add(blob[1])
        while len(self._cache) > self.cache_entries:
            self._forget(next(iter(self._cache)))

    def _forget(self, blob: tuple[int, int]) -> None:
        self._cache.pop(blob, None)
        alts = self._alts.get(blob[0])
        if alts is not None:
            alts.discard(blob[1])
            if not alts:
                del self._alts[blob[0]]

    async def create(self, key: int, alternate_key: int) -> bytes:
        """The blob's key, made now if it has none (idempotent). KeyDiscarded if it was deleted."""
        while True:
            discards = self._discards
            made = await self._create(key, alternate_key)
            if discards == self._discards:
                break
        blob = (key, alternate_key)
        if not made:
            self._remember(blob, DISCARDED)
            raise KeyDiscarded(f"the key of needle {key:#x}/{alternate_key} was discarded (the blob is deleted); "
                               "a deleted blob is not encrypted again")
        self._remember(blob, made)
        return made

    async def _create(self, key: int, alternate_key: int) -> bytes:
        new = False
        async with self._db_for(split_id(key)[1], "making a blob key") as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", to_signed(key))
            if await conn.fetchval("SELECT 1 FROM f4_deleted_media WHERE needle_key = $1", to_signed(key)):
                return b""
            made = await conn.fetchval(
                "INSERT INTO f4_keys (needle_key, alternate_key, blob_key) VALUES ($1, $2, $3)"
                " ON CONFLICT (needle_key, alternate_key) DO NOTHING RETURNING blob_key",
                to_signed(key), alternate_key, new_key())
            new = made is not None
            if made is None:
                made = await conn.fetchval(
                    "SELECT coalesce(blob_key, ''::bytea) FROM f4_keys WHERE needle_key = $1 AND alternate_key = $2",
                    to_signed(key), alternate_key)
        if new:
            metrics.KEYS_CREATED.inc()  # committed: the transaction above has ended without an error
        return bytes(made or b"")

    async def get(self, key: int, alternate_key: int) -> bytes:
        """The blob's key; KeyNotFound when it has none (never made, or discarded)."""
        blob = (key, alternate_key)
        value = self._cache.get(blob)
        while value is None:
            discards = self._discards
            async with self._db_for(split_id(key)[1], "reading a blob key") as conn:
                row = await conn.fetchrow(
                    "SELECT blob_key FROM f4_keys WHERE needle_key = $1 AND alternate_key = $2",
                    to_signed(key), alternate_key)
            if discards != self._discards:
                value = self._cache.get(blob)  # a discard ran meanwhile: what it left, or read again
                continue
            if row is None:
                raise KeyNotFound(f"needle {key:#x}/{alternate_key} has no warm key")
            value = bytes(row["blob_key"]) if row["blob_key"] is not None else DISCARDED
        self._remember(blob, value)
        if value == DISCARDED:
            raise KeyNotFound(f"needle {key:#x}/{alternate_key} was deleted (its key is discarded)")
        return value

    async def discard(self, key: int, alternate_key: int | None) -> int:
        """Discards the key of one rendition, or of every rendition (None: the media is
        deleted, and no key is ever made for it again, even for a blob not yet encoded);
        returns how many keys were live until now. Whatever happens to the statement (it may have
        committed even when its answer is lost), the cached keys are forgotten, so the
        next read asks the database."""
        try:
            async with self._db_for(split_id(key)[1], "discarding blob keys") as conn, conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1)", to_signed(key))
                if alternate_key is None:
                    await conn.execute("INSERT INTO f4_deleted_media (needle_key) VALUES ($1)"
                                       " ON CONFLICT (needle_key) DO NOTHING", to_signed(key))
                    rows = await conn.fetch(
                        "UPDATE f4_keys SET blob_key = NULL, discarded_at = now()"
                        " WHERE needle_key = $1 AND blob_key IS NOT NULL RETURNING alternate_key", to_signed(key))
                else:
                    rows = await conn.fetch(
                        "UPDATE f4_keys SET blob_key = NULL, discarded_at = now()"
                        " WHERE needle_key = $1 AND alternate_key = $2 AND blob_key IS NOT NULL"
                        " RETURNING alternate_key", to_signed(key), alternate_key)
        finally:
            self._discards += 1
            alts = set(self._alts.get(key, ())) if alternate_key is None else {alternate_key}
            for alt in alts:
                self._forget((key, alt))
        metrics.KEYS_DISCARDED.inc(len(rows))
        return len(rows)
