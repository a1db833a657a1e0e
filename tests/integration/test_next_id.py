"""Media ids minted inside PostgreSQL (router/migrations/0002_next_id.sql): they decode with
trenchcoat.ids to the right shard and time, never collide however many sessions mint for
one shard at once, sort like time, and survive the sign bit of bigint."""

from __future__ import annotations

import asyncio
import itertools
import time

import asyncpg
import pytest

from router.metadata import MediaStore
from tests.cluster import fresh_database
from trenchcoat import ids

pytestmark = pytest.mark.integration


@pytest.fixture
async def db(postgres):
    dsn = await fresh_database(postgres.endpoint)
    media = await MediaStore.connect(dsn, timeout_s=30.0)  # a busy machine: no deadline is under test here
    await media.migrate()
    await media.close()
    pool = await asyncpg.create_pool(dsn, min_size=2, max_size=8)
    yield pool
    await pool.close()


async def test_an_id_from_postgresql_decodes_to_its_shard_and_time(db):
    before = int(time.time() * 1000) - ids.EPOCH_MS
    signed = await db.fetchval("SELECT next_id(4242)")
    after = int(time.time() * 1000) - ids.EPOCH_MS
    ms, shard, _ = ids.split_id(ids.from_signed(signed))
    assert shard == 4242 and before - 5 <= ms <= after + 5  # the two clocks are the same machine's


@pytest.mark.parametrize("ms", [0, 1, (1 << 40) - 1, 1 << 40, (1 << 40) + 12345, ids.MAX_MS])
async def test_the_packing_matches_the_python_twin_across_the_sign_bit(db, ms):
    for shard, seq in ((0, 0), (8191, 1023), (77, 5)):
        signed = await db.fetchval("SELECT make_id($1, $2, $3)", ms, shard, seq)
        assert signed == ids.to_signed(ids.make_id(ms, shard, seq))


async def test_order_is_kept_across_the_sign_bit(db):
    rows = await db.fetch("SELECT make_id(x, 1, 0) AS id FROM unnest($1::bigint[]) AS x",
                          [(1 << 40) - 2, (1 << 40) - 1, 1 << 40, (1 << 40) + 1])
    assert [r["id"] for r in rows] == sorted(r["id"] for r in rows)


@pytest.mark.parametrize("args", [(-1, 0, 0), (ids.MAX_MS + 1, 0, 0), (0, 8192, 0), (0, 0, 1024)])
async def test_out_of_range_parts_are_refused(db, args):
    with pytest.raises(asyncpg.NumericValueOutOfRangeError):
        await db.fetchval("SELECT make_id($1, $2, $3)", *args)


async def test_sessions_minting_for_one_shard_at_once_never_collide(db):
    """Six sessions minting for one shard at once, one id a statement as uploads do. (The
    layout's limit is 1,024 ids per shard per millisecond; past it the media table's
    primary key refuses the duplicate and the router mints again.)"""
    async def mint(n: int) -> list[int]:
        async with db.acquire() as conn:
            return [await conn.fetchval("SELECT next_id(9)") for _ in range(n)]

    batches = await asyncio.gather(*(mint(500) for _ in range(6)))
    minted = [i for batch in batches for i in batch]
    assert len(set(minted)) == len(minted) == 3000
    assert {ids.split_id(ids.from_signed(i))[1] for i in minted} == {9}


async def test_order_by_id_is_order_by_time(db):
    """An id records time to the millisecond: of two ids minted in different milliseconds,
    the earlier is the smaller. (Within one millisecond the 10-bit sequence may wrap, so ids
    of the same millisecond are unique but not in minting order; nothing finer than a
    millisecond is promised, as in Instagram's scheme.)"""
    rows = await db.fetch("SELECT next_id(3) AS id, n FROM generate_series(1, 5000) AS n")
    minted = [(ids.split_id(ids.from_signed(r["id"]))[0], r["n"], r["id"]) for r in rows]
    assert len({m[2] for m in minted}) == len(minted)
    by_ms: dict[int, list[int]] = {}
    for ms, n, _ in minted:
        by_ms.setdefault(ms, []).append(n)
    spans = [(min(ns), max(ns)) for _, ns in sorted(by_ms.items())]
    assert len(spans) > 1, "all 5,000 ids in one millisecond: nothing to compare"
    assert all(earlier[1] < later[0] for earlier, later in itertools.pairwise(spans))
