"""Moving logical shards between PostgreSQL instances while the cluster serves
(``trenchcoat shards move A-B --to INSTANCE``), as Instagram moved its schemas: copy,
catch up, pause, flip the map, drop the old copy.

1. **Copy.** The source instance is told the shards are moving (``trenchcoat_shard_moves``):
   from then on every write to one of their rows logs the row's key in the write's own
   transaction (``trenchcoat_shard_write``). Once the transactions that began before have
   ended, every row of those shards is copied to the target, table by table (parents
   first), a page at a time; then the log is drained (each logged key's row read again
   and written, or deleted, on the target) until little is left.
2. **Pause.** The source stops holding the shards (``trenchcoat_held_shards``): a write
   to one of their rows is refused with UNAVAILABLE and a retry hint (the client retries;
   nothing is lost). The mover waits for the writes in progress to end (every writer takes
   its transaction id before it checks, so waiting for the transactions in progress is
   waiting for every writer that saw the shard held), drains the log to empty, carries the
   id sequences over, and tells the target it holds the shards.
3. **Flip.** The map's next version, with the shards on the target, goes to etcd; every
   process routing by the map takes it up within a second (``shards.MapFollower``) and
   writes resume there. The pause is from 2 to here.
4. **Drop.** Once every live process says it routes by the new version, the source's copy
   is deleted (rows whose other shard it still holds, such as the followee's side of a
   follow, stay).

What the mover has done is kept in etcd (``shards/move``): a mover killed at any point is
rerun with the same arguments to finish (a move not yet flipped starts its copy again), or
``--abort``-ed before the flip to roll back (the source holds the shards again, the
target's copy is deleted). Nothing is lost either way: until the flip the source holds
every acknowledged write, after it the target does.

A row whose table names two shards (a follow: the follower's, then the followee's) is on
every instance holding one of them, and its first shard is its truth: the mover copies it
when that first shard moves, or when the other moves to an instance not holding the first
(the target's own row is the truth otherwise).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import asyncpg

from trenchcoat import pgmigrate, postgres, shards
from trenchcoat.errors import FailedPrecondition, Unavailable
from trenchcoat.etcd import Etcd
from trenchcoat.pgmigrate import MOVER_SETTING, Instances, ShardedTable
from trenchcoat.shards import ShardMap

log = logging.getLogger(__name__)

MOVE_KEY = "shards/move"
"""Where the move under way is recorded (etcd, under the cluster's prefix)."""
PAGE = 2000
"""Rows copied, keys caught up or rows dropped per statement."""
CAUGHT_UP = PAGE // 4
"""A drain pass finding fewer logged keys than this ends the copy: the rest waits for the pause."""
MAX_DRAIN_PASSES = 50


class Progress(Protocol):
    """What the mover says as it goes (the CLI draws it as a progress bar)."""

    def stage(self, description: str, total: int | None = None) -> None: ...

    def advance(self, n: int = 1) -> None: ...


class LogProgress:
    def stage(self, description: str, total: int | None = None) -> None:
        log.info("shard move: %s%s", description, f" ({total:,})" if total is not None else "")

    def advance(self, n: int = 1) -> None:
        pass


@dataclass
class Move:
    """A move under way, as recorded in etcd. ``phase``: copying, paused (the source no
    longer takes the shards' writes), flipped (the map names the target)."""

    first: int
    last: int
    source: str
    target: str
    version: int
    """The map version that names the target."""
    phase: str = "copying"

    def __str__(self) -> str:
        return f"shards {_span(self.first, self.last)} from {self.source} to {self.target} ({self.phase})"


@dataclass
class Report:
    move: Move
    copied: int = 0
    """Rows copied in the first pass."""
    caught_up: int = 0
    """Logged keys brought in line afterwards (writes made during the copy)."""
    pause_s: float = 0.0
    """How long the shards' writes were refused: from the pause to the new map in etcd."""
    dropped: int = 0
    """Rows deleted from the source after every process took up the new map."""

    def lines(self) -> list[str]:
        m = self.move
        return [f"moved shards {_span(m.first, m.last)} from {m.source} to {m.target}: shard map v{m.version}",
                f"  {self.copied:,} rows copied, {self.caught_up:,} written meanwhile caught up, "
                f"writes paused {self.pause_s * 1000:.0f} ms, {self.dropped:,} rows dropped from {m.source}"]


def parse_span(text: str) -> tuple[int, int]:
    """'A-B' or 'A' -> (A, B), within the shards; ValueError saying what is wrong."""
    first_s, _, last_s = text.partition("-")
    try:
        first, last = int(first_s), int(last_s or first_s)
    except ValueError:
        raise ValueError(f"{text!r} is not a shard range: write FIRST-LAST (e.g. 0-511) or one shard") from None
    if not 0 <= first <= last < shards.SHARDS:
        raise ValueError(f"shard range {text!r} must be within 0-{shards.SHARDS - 1}, first <= last")
    return first, last


class Mover:
    """Moves shards between the ``instances`` (every instance the map names must be
    among them), recording its progress in etcd."""

    def __init__(self, etcd: Etcd, instances: Instances, *, timeout_s: float, seen_wait_s: float = 120.0,
                 progress: Progress | None = None) -> None:
        self._etcd = etcd
        self._instances = instances
        self._timeout = timeout_s
        self._seen_wait = seen_wait_s
        self._progress = progress or LogProgress()
        self.before_flip: Callable[[], Any] | None = None
        """Called (and awaited, if it returns an awaitable) while paused, just before the
        flip: for tests that kill the mover there."""

    # --- the verbs --------------------------------------------------------------------------

    async def move(self, first: int, last: int, to: str) -> Report:
        shard_map, _ = await self._map()
        move = await self._recorded()
        if move is None:
            move = self._plan(shard_map, first, last, to)
            if not await self._etcd.create(MOVE_KEY, asdict(move)):
                raise FailedPrecondition("another move was recorded meanwhile: see `trenchcoat shards`")
        elif (move.first, move.last, move.target) != (first, last, to):
            raise FailedPrecondition(
                f"an unfinished move is recorded: {move}. Run `trenchcoat shards move "
                f"{_span(move.first, move.last)} --to {move.target}` to finish it"
                + (", or `trenchcoat shards move --abort` to roll it back" if move.phase != "flipped" else ""))
        report = Report(move)
        if shard_map.version >= move.version and shard_map.instance_of(move.first) == move.target:
            move.phase = "flipped"  # flipped just before a mover stopped, unrecorded
        if move.phase == "copying":
            report.copied, report.caught_up = await self._copy(move, shard_map)
            move.phase = "paused"
            await self._record(move)
        if move.phase == "paused":
            report.caught_up += await self._pause_and_flip(move, report)
        await self._drop(move, report)
        return report

    async def abort(self) -> Move:
        """Rolls back the recorded move (before its flip): the source holds the shards
        again, nothing is logged for them any more, the target's copy is deleted."""
        move = await self._recorded()
        if move is None:
            raise FailedPrecondition("no move is recorded: nothing to abort")
        shard_map, _ = await self._map()
        if move.phase == "flipped" or shard_map.version >= move.version:
            raise FailedPrecondition(f"{move} has flipped the map: rerun it to finish it (moving the shards back is "
                                     "another move)")
        async with self._conn(move.source, "giving the source back its shards") as conn:
            await pgmigrate.set_held(conn, shard_map.held_by(move.source))
            await _stop_logging(conn, move)
        async with self._conn(move.target, "taking the shards back from the target") as conn:
            await pgmigrate.set_held(conn, shard_map.held_by(move.target))
        tables = await self._tables(move)
        await self._purge(move, shard_map, tables)
        record = await self._etcd.get(MOVE_KEY)
        if record is not None:
            await self._etcd.remove(MOVE_KEY, record.mod_revision)
        move.phase = "aborted"
        return move

    # --- the phases -------------------------------------------------------------------------

    def _plan(self, shard_map: ShardMap, first: int, last: int, to: str) -> Move:
        if to not in self._instances:
            raise FailedPrecondition(f"no DSN given reaches instance {to!r} (they reach "
                                     f"{', '.join(self._instances)}): add it to postgres.shard_dsns")
        sources = list(dict.fromkeys(shard_map.instance_of(s) for s in range(first, last + 1)))
        if len(sources) > 1:
            raise FailedPrecondition(f"shards {_span(first, last)} are on {len(sources)} instances "
                                     f"({', '.join(sources)}): move one instance's shards at a time")
        if sources[0] == to:
            raise FailedPrecondition(f"shards {_span(first, last)} are on {to} already")
        if sources[0] not in self._instances:
            raise FailedPrecondition(f"no DSN given reaches {sources[0]}, which holds shards {_span(first, last)}")
        return Move(first, last, sources[0], to, shard_map.version + 1)

    async def _copy(self, move: Move, shard_map: ShardMap) -> tuple[int, int]:
        async with self._conn(move.source, "logging the moving shards' writes") as conn:
            await conn.execute("INSERT INTO trenchcoat_shard_moves (first, last) VALUES ($1, $2)"
                               " ON CONFLICT (first) DO UPDATE SET last = EXCLUDED.last", move.first, move.last)
            await self._wait_for_writers(conn)  # every write from here on is logged, or seen by the copy
        tables = await self._tables(move)
        await self._purge(move, shard_map, tables)  # what an earlier, interrupted copy left
        copy = _Copy(self, move, shard_map, tables)
        copied = 0
        for table in tables:
            async with self._conn(move.source, f"counting {table.name}'s rows to move") as conn:
                total = await conn.fetchval(f"SELECT count(*) FROM {table.name} t WHERE {copy.eligible(table, 't')}")
            self._progress.stage(f"copying {table.name}", total)
            copied += await copy.table(table)
        await self._carry_sequences(move)  # made on the target now; set again while paused
        caught_up = 0
        for _ in range(MAX_DRAIN_PASSES):
            n = await copy.drain("catching up on writes made meanwhile")
            caught_up += n
            if n < CAUGHT_UP:
                break
        return copied, caught_up

    async def _pause_and_flip(self, move: Move, report: Report) -> int:
        shard_map, revision = await self._map()
        flipped = shard_map.moved(move.first, move.last, move.target)
        if flipped.version != move.version:
            raise FailedPrecondition(f"the shard map changed during {move} (v{shard_map.version}): abort it")
        tables = await self._tables(move)
        copy = _Copy(self, move, shard_map, tables)
        self._progress.stage(f"pausing writes to shards {_span(move.first, move.last)}")
        paused_at = time.monotonic()
        steps: list[tuple[str, float]] = []
        async with self._conn(move.source, "pausing the moving shards' writes") as conn:
            await pgmigrate.set_held(conn, flipped.held_by(move.source))
            steps.append(("source paused", time.monotonic()))
            await self._wait_for_writers(conn)
            steps.append(("writers ended", time.monotonic()))
        caught_up = 0
        while n := await copy.drain("catching up while paused"):
            caught_up += n
        steps.append((f"{caught_up} keys caught up", time.monotonic()))
        await self._carry_sequences(move)
        async with self._conn(move.target, "giving the target its shards") as conn:
            await pgmigrate.set_held(conn, flipped.held_by(move.target))
        steps.append(("target holds", time.monotonic()))
        if self.before_flip is not None:
            maybe = self.before_flip()
            if asyncio.iscoroutine(maybe):
                await maybe
        if not await self._etcd.swap(shards.MAP_KEY, flipped.to_record(), revision):
            raise FailedPrecondition(f"the shard map changed during {move}: abort it")
        report.pause_s = time.monotonic() - paused_at
        steps.append(("map flipped", paused_at + report.pause_s))
        move.phase = "flipped"
        await self._record(move)
        log.info("shard map v%d: %s (writes paused %.0f ms: %s)", flipped.version, "; ".join(flipped.rows()),
                 report.pause_s * 1000, ", ".join(f"{what} +{(at - paused_at) * 1000:.0f} ms" for what, at in steps))
        return caught_up

    async def _drop(self, move: Move, report: Report) -> None:
        async with self._conn(move.source, "ending the log of the moved shards' writes") as conn:
            await _stop_logging(conn, move)
        self._progress.stage(f"waiting for every process to take up shard map v{move.version}")
        deadline = time.monotonic() + self._seen_wait
        while behind := {p: v for p, v in (await shards.seen_versions(self._etcd)).items() if v < move.version}:
            if time.monotonic() > deadline:
                raise Unavailable(f"{len(behind)} processes still route by an older shard map after "
                                  f"{self._seen_wait:g}s ({', '.join(f'{p} at v{v}' for p, v in sorted(behind.items()))}"
                                  f"); the old copy on {move.source} stays until they do: rerun to finish")
            await asyncio.sleep(0.2)
        shard_map, _ = await self._map()
        tables = await self._tables(move)
        held = shard_map.held_by(move.source)
        self._progress.stage(f"dropping the old copy from {move.source}")
        for table in reversed(tables):  # children first (a parent's delete would cascade to them anyway)
            doomed = (f"({_any_in(table.shard_sql('t'), [(move.first, move.last)])})"
                      f" AND NOT ({_any_in(table.shard_sql('t'), held)})")
            report.dropped += await self._delete(move.source, table, doomed, f"dropping {table.name}'s moved rows")
        record = await self._etcd.get(MOVE_KEY)
        if record is not None:
            await self._etcd.remove(MOVE_KEY, record.mod_revision)

    # --- pieces -----------------------------------------------------------------------------

    async def _purge(self, move: Move, shard_map: ShardMap, tables: Sequence[ShardedTable]) -> None:
        """Deletes from the target what a copy of these shards would write there."""
        copy = _Copy(self, move, shard_map, tables)
        for table in reversed(tables):
            await self._delete(move.target, table, copy.eligible(table, "t"), f"clearing {table.name}'s partial copy")

    async def _delete(self, instance: str, table: ShardedTable, where: str, what: str) -> int:
        """Deletes the rows of ``table`` on ``instance`` that ``where`` (SQL over alias ``t``)
        selects, a page per transaction, as the mover (the guard lets it); how many."""
        deleted = 0
        while True:
            async with self._conn(instance, what) as conn, conn.transaction():
                await conn.execute(f"SET LOCAL {MOVER_SETTING} = 'on'")
                status = await conn.execute(f"DELETE FROM {table.name} WHERE ctid IN (SELECT ctid FROM "
                                            f"{table.name} t WHERE {where} LIMIT {PAGE})")
            n = int(status.split()[-1])
            deleted += n
            self._progress.advance(n)
            if n < PAGE:
                return deleted

    async def _carry_sequences(self, move: Move) -> None:
        """Each moved shard's id sequence continues on the target where it stood (ids stay
        unique however the two instances' clocks differ)."""
        async with self._conn(move.source, "reading the moved shards' id sequences") as conn:
            found = await conn.fetch("SELECT sequencename, last_value FROM pg_sequences"
                                     " WHERE sequencename LIKE 'media_id_seq_%' AND last_value IS NOT NULL")
        values = {int(r["sequencename"].rsplit("_", 1)[1]): int(r["last_value"]) for r in found}
        moved = {s: v for s, v in values.items() if move.first <= s <= move.last}
        if not moved:
            return
        async with self._conn(move.target, "continuing the moved shards' id sequences") as conn:
            await conn.execute(
                "SELECT setval(shard_sequence(x.shard), greatest(x.value, (SELECT coalesce(last_value, 0)"
                " FROM pg_sequences WHERE sequencename = 'media_id_seq_' || x.shard)))"
                " FROM unnest($1::integer[], $2::bigint[]) AS x(shard, value)", list(moved), list(moved.values()))

    async def _wait_for_writers(self, conn: asyncpg.Connection) -> None:
        """Waits until every transaction in progress now has ended."""
        snapshot = await conn.fetchval("SELECT pg_current_snapshot()::text")
        deadline = time.monotonic() + max(self._timeout, 30.0)
        while not await conn.fetchval("SELECT NOT EXISTS (SELECT 1 FROM pg_snapshot_xip($1::text::pg_snapshot) x"
                                      " WHERE pg_xact_status(x) = 'in progress')", snapshot):
            if time.monotonic() > deadline:
                raise Unavailable("transactions on the source did not end within "
                                  f"{max(self._timeout, 30.0):g}s (see pg_stat_activity): rerun the move")
            await asyncio.sleep(0.005)

    async def _tables(self, move: Move) -> list[ShardedTable]:
        async with self._conn(move.source, "listing the sharded tables") as conn:
            tables = await pgmigrate.sharded_tables(conn)
        async with self._conn(move.target, "listing the target's sharded tables") as conn:
            there = {t.name for t in await pgmigrate.sharded_tables(conn)}
        missing = [t.name for t in tables if t.name not in there]
        if missing:
            raise FailedPrecondition(f"{move.target} has no table {', '.join(missing)} yet: start the services "
                                     "with it in postgres.shard_dsns (they make their tables on every instance)")
        return tables

    async def _map(self) -> tuple[ShardMap, int]:
        record = await self._etcd.get(shards.MAP_KEY)
        if record is None:
            raise FailedPrecondition("no shard map: `trenchcoat shards init` makes it")
        return ShardMap.from_record(record.value), record.mod_revision

    async def _recorded(self) -> Move | None:
        return await recorded(self._etcd)

    async def _record(self, move: Move) -> None:
        record = await self._etcd.get(MOVE_KEY)
        if record is None or not await self._etcd.swap(MOVE_KEY, asdict(move), record.mod_revision):
            raise FailedPrecondition(f"the record of {move} changed under the mover: is another running?")

    def _conn(self, instance: str, what: str) -> contextlib.AbstractAsyncContextManager[Any]:
        pool, where = self._instances[instance]
        return postgres.connection(pool, f"{what} (on {instance} at {where})", self._timeout)


class _Copy:
    """Copies rows of a move's shards from its source to its target."""

    def __init__(self, mover: Mover, move: Move, shard_map: ShardMap, tables: Sequence[ShardedTable]) -> None:
        self._mover = mover
        self._move = move
        self._target_holds = shard_map.held_by(move.target)
        self._tables = {t.name: t for t in tables}
        self._columns: dict[str, list[str]] = {}

    def eligible(self, table: ShardedTable, alias: str) -> str:
        """SQL: the row is the move's to copy (see the module's note on rows of two shards)."""
        first, *others = table.shard_sql(alias)
        moving = [(self._move.first, self._move.last)]
        if not others:
            return _any_in([first], moving)
        return (f"({_any_in([first], moving)} OR ({_any_in(others, moving)}"
                f" AND NOT ({_any_in([first], self._target_holds)})))")

    async def table(self, table: ShardedTable) -> int:
        """Copies every row of the moving shards in ``table``, a page at a time, in key order."""
        keys = ", ".join(f"t.{c}" for c in table.key)
        after: str | None = None
        copied = 0
        while True:
            async with self._mover._conn(self._move.source, f"reading {table.name}'s rows to move") as conn:
                if after is None:
                    rows = await conn.fetch(f"SELECT to_jsonb(t) AS row FROM {table.name} t"
                                            f" WHERE {self.eligible(table, 't')} ORDER BY {keys} LIMIT {PAGE}")
                else:
                    rows = await conn.fetch(
                        f"SELECT to_jsonb(t) AS row FROM {table.name} t, jsonb_populate_record(NULL::{table.name},"
                        f" $1::jsonb) k WHERE {self.eligible(table, 't')} AND ({keys}) >"
                        f" ({', '.join(f'k.{c}' for c in table.key)}) ORDER BY {keys} LIMIT {PAGE}", after)
            if not rows:
                return copied
            found = [r["row"] for r in rows]
            await self._write(table, found, [])
            copied += len(found)
            self._mover._progress.advance(len(found))
            last = json.loads(found[-1])
            after = json.dumps({c: last[c] for c in table.key})

    async def drain(self, stage: str) -> int:
        """Brings the target in line for one page of logged keys (oldest first), then
        forgets them; the number of keys."""
        async with self._mover._conn(self._move.source, "reading the moving shards' write log") as conn:
            logged = await conn.fetch(f"SELECT seq, tbl, key FROM trenchcoat_shard_move_log ORDER BY seq LIMIT {PAGE}")
        if not logged:
            return 0
        self._mover._progress.stage(stage, None)
        by_table: dict[str, dict[str, None]] = {}
        for row in logged:
            by_table.setdefault(row["tbl"], {})[row["key"]] = None
        for name in self._tables:  # parents first
            if name in by_table:
                await self.keys(self._tables[name], list(by_table.pop(name)))
        if by_table:
            raise FailedPrecondition(f"writes logged for tables the source does not register: {', '.join(by_table)}")
        async with self._mover._conn(self._move.source, "forgetting caught-up writes") as conn:
            await conn.execute("DELETE FROM trenchcoat_shard_move_log WHERE seq = ANY($1::bigint[])",
                               [r["seq"] for r in logged])
        self._mover._progress.advance(len(logged))
        return len(logged)

    async def keys(self, table: ShardedTable, keys: list[str]) -> None:
        """Makes the target's rows of ``keys`` (JSON objects of key columns) the source's:
        written where the source has one, deleted where it has none."""
        join = " AND ".join(f"t.{c} = k.{c}" for c in table.key)
        key_object = ", ".join(f"'{c}', k.{c}" for c in table.key)
        async with self._mover._conn(self._move.source, f"reading {table.name}'s rows written meanwhile") as conn:
            rows = await conn.fetch(
                f"SELECT jsonb_build_object({key_object}) AS key,"
                f" CASE WHEN t.{table.key[0]} IS NULL THEN NULL ELSE to_jsonb(t) END AS row"
                f" FROM jsonb_populate_recordset(NULL::{table.name}, $1::jsonb) k LEFT JOIN {table.name} t ON {join}"
                f" WHERE {self.eligible(table, 'k')}", _array(keys))
        await self._write(table, [r["row"] for r in rows if r["row"] is not None],
                          [r["key"] for r in rows if r["row"] is None])

    async def _write(self, table: ShardedTable, rows: list[str], gone: list[str]) -> None:
        if table.parent is not None and rows:  # the rows they point at first
            parent = self._tables[table.parent]
            keys = {json.dumps({c: json.loads(row)[c] for c in parent.key}, sort_keys=True) for row in rows}
            await self.keys(parent, sorted(keys))
        columns = await self._columns_of(table)
        others = [c for c in columns if c not in table.key]
        on_conflict = (f"DO UPDATE SET ({', '.join(others)}) = ROW({', '.join(f'EXCLUDED.{c}' for c in others)})"
                       if others else "DO NOTHING")
        async with self._mover._conn(self._move.target, f"writing {table.name}'s moved rows") as conn, \
                conn.transaction():
            await conn.execute(f"SET LOCAL {MOVER_SETTING} = 'on'")
            if rows:
                await conn.execute(f"INSERT INTO {table.name} SELECT * FROM jsonb_populate_recordset("
                                   f"NULL::{table.name}, $1::jsonb) ON CONFLICT ({', '.join(table.key)}) {on_conflict}",
                                   _array(rows))
            if gone:
                await conn.execute(f"DELETE FROM {table.name} t USING jsonb_populate_recordset(NULL::{table.name},"
                                   f" $1::jsonb) k WHERE {' AND '.join(f't.{c} = k.{c}' for c in table.key)}",
                                   _array(gone))

    async def _columns_of(self, table: ShardedTable) -> list[str]:
        if table.name not in self._columns:
            async with self._mover._conn(self._move.target, f"reading {table.name}'s columns") as conn:
                self._columns[table.name] = [r["attname"] for r in await conn.fetch(
                    "SELECT attname FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0"
                    " AND NOT attisdropped ORDER BY attnum", table.name)]
        return self._columns[table.name]


async def _stop_logging(conn: asyncpg.Connection, move: Move) -> None:
    async with conn.transaction():
        await conn.execute("DELETE FROM trenchcoat_shard_moves WHERE first = $1", move.first)
        await conn.execute("DELETE FROM trenchcoat_shard_move_log")


def _any_in(exprs: Sequence[str], ranges: Sequence[tuple[int, int]]) -> str:
    """SQL: one of ``exprs`` is within one of ``ranges`` (false for none)."""
    terms = [f"{e} BETWEEN {int(a)} AND {int(b)}" for e in exprs for a, b in ranges]
    return " OR ".join(terms) if terms else "false"


def _array(items: Sequence[str]) -> str:
    return "[" + ",".join(items) + "]"


def _span(first: int, last: int) -> str:
    return f"{first}" if first == last else f"{first}-{last}"


async def recorded(etcd: Etcd) -> Move | None:
    """The move under way (or stopped unfinished), if any."""
    record = await etcd.get(MOVE_KEY)
    return Move(**record.value) if record is not None else None


@contextlib.asynccontextmanager
async def mover(etcd_endpoints: Sequence[str], cluster: str, dsns: Sequence[str], *, etcd_timeout_s: float,
                timeout_s: float, progress: Progress | None = None,
                seen_wait_s: float = 120.0) -> AsyncIterator[Mover]:
    """A mover over the instances ``dsns`` reach, for the operator's verb."""
    async with pgmigrate.reaching(dsns, timeout_s=timeout_s) as instances:
        etcd = Etcd(etcd_endpoints, cluster, timeout_s=etcd_timeout_s)
        try:
            yield Mover(etcd, instances, timeout_s=timeout_s, progress=progress, seen_wait_s=seen_wait_s)
        finally:
            await etcd.close()
