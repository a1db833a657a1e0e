"""Versioned PostgreSQL schemas: each service ships ``<package>/migrations/NNNN_name.sql``
and applies them at start, in order, each in its own transaction, under an advisory lock
so processes starting together apply each once, on every instance a service keeps rows in
(``Database``: one pool per instance, rows placed by the shard map). A table per service
records what is applied (services share one database, each owning its own tables). The whole run is
bounded by a deadline: a database that does not answer stops the service's start with
``Unavailable`` naming PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import zlib
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, Self

import asyncpg

from trenchcoat import postgres, shards
from trenchcoat.ids import shard_for_user, to_signed
from trenchcoat.shards import ShardMap, ShardMapError

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


INSTANCE_LOCK = zlib.crc32(b"trenchcoat_instance")

MOVER_SETTING = "trenchcoat.shard_mover"
"""A session setting the shard mover sets (``SET LOCAL ... = 'on'``) to write rows of
shards the instance does not hold: the copy it makes, and the old copy it drops."""

_INSTANCE_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS trenchcoat_instance (one boolean PRIMARY KEY DEFAULT true CHECK (one), id text NOT NULL,
    made_at timestamptz NOT NULL DEFAULT now(), managed boolean NOT NULL DEFAULT false);
CREATE TABLE IF NOT EXISTS trenchcoat_held_shards (first integer PRIMARY KEY, last integer NOT NULL,
    CHECK (0 <= first AND first <= last AND last <= 8191));
-- Shards being moved away (trenchcoat.shardmove): every write to one of their rows is logged
-- (trenchcoat_shard_move_log, the row's key) in the write's own transaction, for the mover
-- to bring its copy in line.
CREATE TABLE IF NOT EXISTS trenchcoat_shard_moves (first integer PRIMARY KEY, last integer NOT NULL,
    CHECK (0 <= first AND first <= last AND last <= 8191));
CREATE TABLE IF NOT EXISTS trenchcoat_shard_move_log (seq bigserial PRIMARY KEY, tbl text NOT NULL, key jsonb NOT NULL);
-- The tables holding rows by logical shard (Database.SHARDED), registered by each service's
-- migrate: what the mover copies. shards: SQL expressions of the row's shards over its key
-- columns, written with {{r}} where a column's table alias goes.
CREATE TABLE IF NOT EXISTS trenchcoat_sharded_tables (name text PRIMARY KEY, key text[] NOT NULL,
    shards text[] NOT NULL, parent text, position integer NOT NULL);
-- Called by every sharded table's trigger before a row is written: refuses a row none of
-- whose shards this instance holds (once a map manages it), and logs the key of a row of a
-- shard being moved away. It takes the transaction's id first, so that a mover which stops a
-- shard's writes and then waits for the transactions in progress to end waits for every
-- writer that saw the shard still held.
CREATE OR REPLACE FUNCTION trenchcoat_shard_write(tbl text, shards integer[], key jsonb) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM txid_current();
    IF current_setting('{MOVER_SETTING}', true) = 'on' THEN
        RETURN;
    END IF;
    IF EXISTS (SELECT 1 FROM trenchcoat_instance WHERE managed)
       AND NOT EXISTS (SELECT 1 FROM trenchcoat_held_shards h, unnest(shards) s WHERE s BETWEEN h.first AND h.last) THEN
        RAISE EXCEPTION 'shard % is not held by this instance (the shard map puts it on another, or it is being moved)',
            shards[1] USING ERRCODE = 'object_not_in_prerequisite_state', HINT = '{postgres.SHARD_GUARD_HINT}';
    END IF;
    IF EXISTS (SELECT 1 FROM trenchcoat_shard_moves m, unnest(shards) s WHERE s BETWEEN m.first AND m.last) THEN
        INSERT INTO trenchcoat_shard_move_log (tbl, key) VALUES (tbl, key);
    END IF;
END;
$$;
"""


async def instance_id(pool: asyncpg.Pool, *, timeout_s: float) -> str:
    """The instance's name in the shard map: an id made at random the first time anyone
    asks, and kept in the database (table ``trenchcoat_instance``), so the name stays the
    same when the instance moves to another host or port. Made with it: the table of the
    shards the map gives the instance (``hold``), which writes keep to, and what moving
    shards away needs (``trenchcoat.shardmove``)."""
    async with postgres.connection(pool, "reading the instance's id", timeout_s) as conn:
        if await conn.fetchval("SELECT to_regclass('trenchcoat_instance') IS NOT NULL"
                               " AND to_regclass('trenchcoat_sharded_tables') IS NOT NULL"):
            found = await conn.fetchval("SELECT id FROM trenchcoat_instance")
            if found is not None:
                return str(found)
        await conn.execute("SELECT pg_advisory_lock($1)", INSTANCE_LOCK)
        try:
            await conn.execute(_INSTANCE_SCHEMA)
            await conn.execute("INSERT INTO trenchcoat_instance (id) VALUES ('pg-' || left(md5(gen_random_uuid()::text),"
                               " 12)) ON CONFLICT (one) DO NOTHING")
            return str(await conn.fetchval("SELECT id FROM trenchcoat_instance"))
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", INSTANCE_LOCK)


ID_SHARD = "(({column} >> 10) & 8191)::integer"
"""SQL for the logical shard of an id column (``trenchcoat.ids``: signed or not, the same bits)."""
USER_SHARD = "({column} % 8192)::integer"
"""SQL for the logical shard of a user id column (``ids.shard_for_user``)."""


@dataclass(frozen=True)
class ShardedTable:
    """A table whose rows live by logical shard: its key columns, and SQL expressions of
    the shards a row belongs to, over key columns, with ``{r}`` before each column (a row
    is on every instance holding one of them: a follow on both users' shards). ``parent``:
    the table a foreign key of this one points at (its key columns named the same here),
    whose row the mover copies first."""

    name: str
    key: tuple[str, ...]
    shards: tuple[str, ...]
    parent: str | None = None

    def shard_sql(self, alias: str = "") -> list[str]:
        return [expr.format(r=f"{alias}." if alias else "") for expr in self.shards]


async def install_guards(pool: asyncpg.Pool, tables: Sequence[ShardedTable], *, timeout_s: float) -> None:
    """Registers ``tables`` (``trenchcoat_sharded_tables``) and gives each the trigger that
    refuses rows of shards the instance does not hold and logs those being moved away
    (``trenchcoat_shard_write``). Idempotent."""
    async with postgres.connection(pool, "installing the shard guards", timeout_s) as conn:
        await conn.execute("SELECT pg_advisory_lock($1)", INSTANCE_LOCK)
        try:
            for table in tables:
                key = ", ".join(f"'{c}', r.{c}" for c in table.key)
                shards_of_row = ", ".join(table.shard_sql("r"))
                async with conn.transaction():
                    await conn.execute(f"""
CREATE OR REPLACE FUNCTION trenchcoat_guard_{table.name}() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE r {table.name};
BEGIN
    IF TG_OP = 'DELETE' THEN r := OLD; ELSE r := NEW; END IF;
    PERFORM trenchcoat_shard_write('{table.name}', ARRAY[{shards_of_row}]::integer[], jsonb_build_object({key}));
    IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
    RETURN NEW;
END;
$$;
CREATE OR REPLACE TRIGGER trenchcoat_shard_guard BEFORE INSERT OR UPDATE OR DELETE ON {table.name}
    FOR EACH ROW EXECUTE FUNCTION trenchcoat_guard_{table.name}();
""")
                    await conn.execute(
                        "INSERT INTO trenchcoat_sharded_tables (name, key, shards, parent, position)"
                        " VALUES ($1, $2, $3, $4, (SELECT count(*) FROM trenchcoat_sharded_tables))"
                        " ON CONFLICT (name) DO UPDATE SET key = EXCLUDED.key, shards = EXCLUDED.shards,"
                        " parent = EXCLUDED.parent",
                        table.name, list(table.key), list(table.shards), table.parent)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", INSTANCE_LOCK)


async def sharded_tables(conn: asyncpg.Connection) -> list[ShardedTable]:
    """The tables registered on an instance, in the order registered (parents first)."""
    rows = await conn.fetch("SELECT * FROM trenchcoat_sharded_tables ORDER BY position")
    return [ShardedTable(r["name"], tuple(r["key"]), tuple(r["shards"]), r["parent"]) for r in rows]


async def holds_rows(pool: asyncpg.Pool, *, timeout_s: float) -> bool:
    """Whether any of the services' tables on the instance has a row (any table but the
    shard bookkeeping and the migrations' records: also those of a version that did not
    register its sharded tables yet)."""
    async with postgres.connection(pool, "looking for rows", timeout_s) as conn:
        tables = await conn.fetch("SELECT table_name AS name FROM information_schema.tables"
                                  " WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
                                  " AND table_name NOT LIKE 'trenchcoat\\_%' AND table_name NOT LIKE '%schema_migrations'")
        for table in tables:
            if await conn.fetchval(f"SELECT EXISTS (SELECT 1 FROM {table['name']})"):
                return True
    return False


async def set_held(conn: Any, ranges: Iterable[tuple[int, int]]) -> None:
    """Replaces the shards an instance holds (within the caller's transaction, if any)."""
    async with conn.transaction():
        await conn.execute("LOCK TABLE trenchcoat_held_shards IN EXCLUSIVE MODE")
        await conn.execute("DELETE FROM trenchcoat_held_shards")
        await conn.executemany("INSERT INTO trenchcoat_held_shards (first, last) VALUES ($1, $2)", list(ranges))
        await conn.execute("UPDATE trenchcoat_instance SET managed = true")


async def hold(instances: Instances, shard_map: ShardMap, *,
               timeout_s: float) -> None:
    """The operator's side of a map: each instance told the shards it holds (table
    ``trenchcoat_held_shards``, replaced whole), so that it takes rows for those only
    (``next_id`` and the tables' guards): a process routing by a stale map, or a wrong DSN,
    cannot put a row on an instance the map does not name for its shard. Only an instance
    no map has managed yet (one alone) takes rows of any shard; one the map gives none, of none."""
    for name, (pool, _) in instances.items():
        async with postgres.connection(pool, f"recording the shards {name} holds", timeout_s) as conn:
            await set_held(conn, shard_map.held_by(name))


Instances = Mapping[str, tuple[asyncpg.Pool, str]]
"""Instance id -> (its pool, where it is): what ``connect_instances`` makes."""


async def close_instances(instances: Instances) -> None:
    for pool, _ in instances.values():
        await pool.close()


@contextlib.asynccontextmanager
async def reaching(dsns: Sequence[str], *, timeout_s: float) -> AsyncIterator[Instances]:
    """A connection to each instance for the operator's short work (one each: naming them,
    telling them their shards, counting rows), closed after."""
    instances = await connect_instances(dsns, timeout_s=timeout_s, min_size=1, max_size=1)
    try:
        yield instances
    finally:
        await close_instances(instances)


async def connect_instances(dsns: str | Sequence[str], *, timeout_s: float, min_size: int = 2,
                            max_size: int = 16) -> dict[str, tuple[asyncpg.Pool, str]]:
    """A pool to each instance within a few deadlines (``trenchcoat.postgres.connect``), by
    its id (``instance_id``): id -> (pool, where it is, ``shards.address_of``). Unavailable
    when one cannot be reached; ShardMapError when two DSNs reach one instance."""
    out: dict[str, tuple[asyncpg.Pool, str]] = {}
    try:
        for dsn in [dsns] if isinstance(dsns, str) else dsns:
            pool = await postgres.connect(dsn, timeout_s=timeout_s, min_size=min_size, max_size=max_size)
            try:
                name = await instance_id(pool, timeout_s=postgres.CONNECT_DEADLINES * timeout_s)
            except BaseException:
                await pool.close()
                raise
            if name in out:
                await pool.close()
                raise ShardMapError(f"{shards.address_of(dsn)} and {out[name][1]} are one instance ({name}): "
                                    "name each PostgreSQL instance once")
            out[name] = (pool, shards.address_of(dsn))
    except BaseException:
        await close_instances(out)
        raise
    return out


class Database:
    """What a service keeps in PostgreSQL, as a class to extend: a pool per instance, the
    versioned schema (``MIGRATIONS``, the package holding them, and ``MIGRATIONS_TABLE``, the
    table recording them) applied on each, and a connection for one piece of work within the
    deadline (``trenchcoat.postgres``). Subclasses add the service's statements: on the one
    instance (``_db``), on the instance holding a logical shard (``_db_for``), or on each
    (``_db_each``). Which instance holds which shard is the shard map's
    (``trenchcoat.shards``); with one instance, all of them."""

    MIGRATIONS: str
    MIGRATIONS_TABLE: str
    SHARDED: tuple[ShardedTable, ...] = ()
    """The service's tables holding rows by logical shard (parents first): each guarded on
    every instance, and what ``trenchcoat shards move`` copies."""

    def __init__(self, instances: Instances, timeout_s: float,
                 shard_map: ShardMap | None = None) -> None:
        """``instances``: id -> (pool, address) (``connect_instances``), the first the home
        of what is not sharded; ``shard_map``: None with one instance (every shard on it)."""
        if not instances:
            raise ValueError("no PostgreSQL instance")
        self._pools = {name: pool for name, (pool, _) in instances.items()}
        self._where = {name: f"{name} at {address}" for name, (_, address) in instances.items()}
        self._pool = next(iter(self._pools.values()))
        self._timeout = timeout_s
        if shard_map is None:
            if len(self._pools) > 1:
                raise ShardMapError(f"{len(self._pools)} PostgreSQL instances and no shard map saying which "
                                    "holds which shard (trenchcoat shards init)")
            shard_map = ShardMap.even(list(self._pools), version=0)  # older than any the operator stores
        shard_map.check(self._where)
        self.shard_map = shard_map
        self.on_refused: Callable[[], None] | None = None
        """Called when an instance refuses a row of a shard it does not hold (the map
        changed, or is changing): ``shards.MapFollower`` reads the map at once, and often
        for a while, so the work's retry goes where the new map says."""

    def route_by(self, shard_map: ShardMap) -> None:
        """Routes by ``shard_map`` from now on (a newer version the operator stored), or
        raises ShardMapError when it names an instance this process does not reach."""
        shard_map.check(self._where)
        self.shard_map = shard_map

    @classmethod
    async def connect(cls, dsns: str | Sequence[str], *, timeout_s: float, shard_map: ShardMap | None = None,
                      min_size: int = 2, max_size: int = 16) -> Self:
        """Connects to every instance within a few deadlines or raises Unavailable (or
        ShardMapError for a map naming an instance none of ``dsns`` reaches)."""
        instances = await connect_instances(dsns, timeout_s=timeout_s, min_size=min_size, max_size=max_size)
        try:
            return cls(instances, timeout_s, shard_map)
        except BaseException:
            await close_instances(instances)
            raise

    async def close(self) -> None:
        for pool in self._pools.values():
            await pool.close()

    async def migrate(self) -> list[int]:
        """Applies the migrations not yet applied, on every instance; returns their versions
        (those applied anywhere)."""
        applied: set[int] = set()
        for pool in self._pools.values():
            applied.update(await migrate(pool, self.MIGRATIONS, self.MIGRATIONS_TABLE,
                                         timeout_s=postgres.CONNECT_DEADLINES * self._timeout))
            await install_guards(pool, self.SHARDED, timeout_s=postgres.CONNECT_DEADLINES * self._timeout)
        return sorted(applied)

    def _db(self, what: str) -> contextlib.AbstractAsyncContextManager[Any]:
        """A connection to the first instance for one piece of work within the deadline
        (trenchcoat.postgres): for what is not sharded."""
        return postgres.connection(self._pool, what, self._timeout)

    def _db_for(self, shard: int, what: str) -> contextlib.AbstractAsyncContextManager[Any]:
        """A connection to the instance holding logical ``shard``; a failure names both."""
        instance = self.shard_map.instance_of(shard)
        return self._connection(instance, f"{what} (shard {shard}, on {self._where[instance]})")

    @contextlib.asynccontextmanager
    async def _connection(self, instance: str, what: str) -> AsyncIterator[Any]:
        try:
            async with postgres.connection(self._pools[instance], what, self._timeout) as conn:
                yield conn
        except postgres.ShardRefused:
            if self.on_refused is not None:
                self.on_refused()
            raise

    def _db_each(self, what: str) -> list[tuple[str, contextlib.AbstractAsyncContextManager[Any]]]:
        """A connection to each instance (instance name, connection), for work over all shards."""
        return [(name, self._db_instance(name, what)) for name in self._pools]

    async def _fetch_each(self, what: str, query: str, *args: Any) -> list[asyncpg.Record]:
        """``query`` on every instance at once, the rows of all (work over every shard)."""

        async def fetch(db: contextlib.AbstractAsyncContextManager[Any]) -> list[asyncpg.Record]:
            async with db as conn:
                return list(await conn.fetch(query, *args))

        found = await asyncio.gather(*(fetch(db) for _, db in self._db_each(what)))
        return [row for rows in found for row in rows]

    async def _fetch_ids(self, what: str, query: str, media_ids: Iterable[int]) -> list[asyncpg.Record]:
        """``query`` (``$1``: an array of signed ids) once on each instance holding any of
        ``media_ids``, with the ones it holds, all at once; the rows of all."""
        return await self._fetch_grouped(what, query, self.shard_map.group_ids(media_ids), to_signed)

    async def _fetch_users(self, what: str, query: str, users: Iterable[int], *args: Any) -> list[asyncpg.Record]:
        """``query`` (``$1``: an array of user ids, then ``args``) once on each instance
        holding any of ``users``' shards, with the ones it holds, all at once."""
        return await self._fetch_grouped(what, query, self.shard_map.group(users, shard_for_user), int, *args)

    async def _fetch_grouped(self, what: str, query: str, groups: Mapping[str, list[int]],
                             encode: Callable[[int], int], *args: Any) -> list[asyncpg.Record]:
        async def fetch(instance: str, some: list[int]) -> list[asyncpg.Record]:
            async with self._db_instance(instance, f"{what} ({len(some)} ids)") as conn:
                return list(await conn.fetch(query, [encode(k) for k in some], *args))

        found = await asyncio.gather(*(fetch(i, some) for i, some in groups.items()))
        return [row for rows in found for row in rows]

    def _db_instance(self, instance: str, what: str) -> contextlib.AbstractAsyncContextManager[Any]:
        """A connection to ``instance`` (a name the map gives)."""
        return self._connection(instance, f"{what} (on {self._where[instance]})")
