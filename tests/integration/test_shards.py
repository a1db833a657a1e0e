"""Media rows over two PostgreSQL instances by logical shard (trenchcoat/shards.py,
router/metadata.py): each row on the instance its id's shard says, ids minted by each for
its own shards only (so they never collide), reads of many ids one query per instance,
the sweeps over both; a map naming an instance nobody connects to, or an instance that is
down, answers errors naming the shard. Then the router as a process, routing by the map
the operator stored in etcd."""

from __future__ import annotations

import asyncio
import os
import random
import re
from typing import TypeVar

import asyncpg
import pytest

from router.metadata import MediaState, MediaStore, RenditionRow
from tests import harness
from tests.cluster import MediaCluster, eventually, fresh_database, writable_volumes
from trenchcoat import ids, pgmigrate, shardmove, shards
from trenchcoat.errors import Unavailable
from trenchcoat.etcd import Etcd
from trenchcoat.ops import admin, ports
from trenchcoat.shards import ShardMap, ShardMapError

pytestmark = pytest.mark.integration

TIMEOUT_S = 30.0  # a busy machine: no deadline is under test here


async def ids_of(dsns: list[str]) -> list[str]:
    """Each instance's id (its name in the map), in the order of ``dsns``."""
    async with pgmigrate.reaching(dsns, timeout_s=TIMEOUT_S) as instances:
        return list(instances)


DB = TypeVar("DB", bound=pgmigrate.Database)


async def hold(dsns: list[str], shard_map: ShardMap) -> None:
    """What the operator's ``trenchcoat shards init`` tells each instance: the shards it holds."""
    async with pgmigrate.reaching(dsns, timeout_s=TIMEOUT_S) as instances:
        await pgmigrate.hold(instances, shard_map, timeout_s=TIMEOUT_S)


async def over_two(cls: type[DB], postgres) -> tuple[list[str], ShardMap, DB]:
    """Two fresh databases standing in for two instances, each told its half of the even
    map: (their DSNs, the map, ``cls`` over both, migrated)."""
    dsns = [await fresh_database(postgres.endpoint) for _ in range(2)]
    shard_map = ShardMap.even(await ids_of(dsns))
    await hold(dsns, shard_map)
    db = await cls.connect(dsns, timeout_s=TIMEOUT_S, shard_map=shard_map)
    await db.migrate()
    return dsns, shard_map, db


@pytest.fixture
async def two(postgres):
    dsns, shard_map, store = await over_two(MediaStore, postgres)
    yield dsns, shard_map, store
    await store.close()


async def media_ids_on(dsn: str) -> set[int]:
    conn = await asyncpg.connect(dsn)
    try:
        return {ids.from_signed(r["media_id"]) for r in await conn.fetch("SELECT media_id FROM media")}
    finally:
        await conn.close()


async def reserve(store: MediaStore, owner: int) -> int:
    row, made = await store.reserve(shard=ids.shard_for_user(owner), owner_id=owner, logical_volume=1,
                                    cookie=7, size_bytes=10, content_type="image/jpeg", idempotency_key=None)
    assert made
    return row.media_id


async def test_each_row_lives_on_the_instance_its_shard_says_and_reads_ask_each_once(two):
    dsns, shard_map, store = two
    rng = random.Random(3)
    owners = [rng.randrange(1, 1 << 40) for _ in range(60)] + [4095, 4096, 8191, 8192]
    minted = {owner: await reserve(store, owner) for owner in owners}
    for media_id in minted.values():
        await store.activate(media_id, 1)
    placed = {name: await media_ids_on(dsn) for name, dsn in zip(shard_map.instances, dsns, strict=True)}
    assert set().union(*placed.values()) == set(minted.values())
    assert all(placed.values()), placed  # both instances hold some
    for owner, media_id in minted.items():
        assert ids.split_id(media_id)[1] == ids.shard_for_user(owner)  # minted for the owner's shard
        assert media_id in placed[shard_map.instance_of_user(owner)]  # ... by the instance holding it
    # Reads by id, one or many, find every row wherever it is; unknown ids are simply absent.
    stray = ids.make_id(5, 4100, 3)
    rows = await store.get_many([*minted.values(), stray])
    assert set(rows) == set(minted.values()) and all(r.state == MediaState.ACTIVE for r in rows.values())
    assert (await store.get(minted[owners[0]])).owner_id == owners[0]
    # Renditions and deletes stay with their media; the sweeps find them on both instances.
    for media_id in minted.values():
        recorded = await store.record_rendition(RenditionRow(media_id, 2, 1, 9, 5, "image/jpeg", 10, 10))
        assert recorded is not None and recorded[1]
    assert set(await store.renditions_of(list(minted.values()))) == set(minted.values())
    victims = [minted[4095], minted[4096]]  # one on each instance
    for media_id in victims:
        assert await store.mark_deleted(media_id) is not None
    claimed = await store.claim_deletes(100, 60.0)
    assert {e.media_id for e in claimed} == set(victims) and len(claimed) == 4  # original + rendition each
    assert await store.pending_deletes() == 4
    for entry in claimed:
        await store.finish_delete(entry)
    assert await store.pending_deletes() == 0


async def test_ids_minted_by_two_instances_at_once_never_collide(two):
    """Each instance mints only for the shards the map gives it, and the shard is in the
    id: ids from two instances differ by construction, however fast both mint."""
    _, shard_map, store = two
    a_users = [u for u in range(1, 400) if shard_map.instance_of_user(u) == shard_map.instances[0]][:40]
    b_users = [u + 4096 for u in a_users]  # the same low bits, the other instance's shards
    minted = await asyncio.gather(*(reserve(store, u) for u in a_users * 5 + b_users * 5))
    assert len(set(minted)) == len(minted) == 400
    assert {shard_map.instance_of_id(m) for m in minted} == set(shard_map.instances)


async def test_an_instance_mints_only_for_the_shards_the_map_gives_it(two):
    """A router routing by a stale map (here: the two instances swapped) gets UNAVAILABLE
    naming the shard, and no row lands where its id's shard is not held."""
    dsns, shard_map, _ = two
    stale = ShardMap.even(list(reversed(shard_map.instances)), version=2)
    wrong = await MediaStore.connect(dsns, timeout_s=TIMEOUT_S, shard_map=stale)
    try:
        with pytest.raises(Unavailable, match=r"\(shard 7, on pg-\w+ at .*\): shard 7 is not held by this instance.*the shard map changed"):
            await reserve(wrong, 7)
        with pytest.raises(Unavailable, match=r"\(shard 5000, on pg-\w+"):
            await reserve(wrong, 5000)
    finally:
        await wrong.close()
    assert [await media_ids_on(d) for d in dsns] == [set(), set()]
    # An instance the map gives no shard mints for none (unlike one no map manages yet).
    await hold(dsns, ShardMap.even(shard_map.instances[:1], version=3))
    lone = await MediaStore.connect(dsns, timeout_s=TIMEOUT_S, shard_map=shard_map)
    try:
        assert await reserve(lone, 7)  # the first instance holds every shard now
        with pytest.raises(Unavailable, match=r"shard 5000 is not held by this instance"):
            await reserve(lone, 5000)
    finally:
        await lone.close()


async def test_a_map_naming_an_instance_without_a_dsn_or_two_instances_without_a_map_are_refused(postgres):
    dsn = await fresh_database(postgres.endpoint)
    [name] = await ids_of([dsn])
    with pytest.raises(ShardMapError, match=r"shards 4096-8191 on pg-elsewhere, an instance none of postgres\.dsn"
                                            r" and postgres\.shard_dsns reaches \(they reach pg-\w+ at 127\.0\.0\.1:"):
        await MediaStore.connect(dsn, timeout_s=TIMEOUT_S, shard_map=ShardMap.even([name, "pg-elsewhere"]))
    with pytest.raises(ShardMapError, match=r"127\.0\.0\.1:\d+/\w+ and 127\.0\.0\.1:\d+/\w+ are one instance"):
        await MediaStore.connect([dsn, dsn + "&application_name=again"], timeout_s=TIMEOUT_S)
    with pytest.raises(ShardMapError, match="2 PostgreSQL instances and no shard map"):
        MediaStore({"a": (object(), "here"), "b": (object(), "there")}, TIMEOUT_S)  # type: ignore[dict-item]


async def test_a_down_instance_answers_unavailable_naming_the_shard_while_the_other_serves(postgres):
    second = harness.start_postgres()  # a second real instance, stopped under the store
    try:
        dsns = [await fresh_database(postgres.endpoint), await fresh_database(second.endpoint)]
        names = await ids_of(dsns)
        store = await MediaStore.connect(dsns, timeout_s=10.0, shard_map=ShardMap.even(names))
        try:
            await store.migrate()
            kept = await reserve(store, 7)  # shard 7: the first instance
            second.stop()
            assert (await store.get(kept)) is not None
            with pytest.raises(Unavailable, match=rf"shard 4200, on {names[1]} at {re.escape(shards.address_of(dsns[1]))}"):
                await store.get(ids.make_id(5, 4200, 1))
            with pytest.raises(Unavailable, match=rf"shard {ids.shard_for_user(4200)}, on "):
                await reserve(store, 4200)  # never minted elsewhere: the owner's shard is on the stopped one
        finally:
            await store.close()
    finally:
        second.stop()


async def test_the_router_routes_uploads_by_the_map_the_operator_stored(service, etcd, postgres, tmp_path):
    dsns = [await fresh_database(postgres.endpoint) for _ in range(2)]
    cluster = MediaCluster(service, tmp_path / "data", etcd.endpoint, postgres=dsns[0],
                           env={"TRENCHCOAT_POSTGRES__SHARD_DSNS": dsns[1]})
    client = Etcd([etcd.endpoint], cluster.config.cluster.name, timeout_s=TIMEOUT_S)
    try:
        # Two instances and no map: the router waits for one (start_wait_s), then says why.
        port = ports.free_port()
        refused = service("router-without-map", harness.python_module("router"), port=port,
                          metrics_port=ports.free_port(), env={**cluster.env, "TRENCHCOAT_ROUTER__PORT": str(port)},
                          wait=False)
        assert refused.process.popen is not None
        assert await asyncio.to_thread(refused.process.popen.wait, 60) == 2
        assert "no shard map for the 2 PostgreSQL instances" in refused.process.log_tail(50)
        shard_map, made = await shards.init(client, await ids_of(dsns))
        await hold(dsns, shard_map)
        assert made and (await shards.init(client, list(reversed(shard_map.instances))))[0] == shard_map  # kept
    finally:
        await client.close()
    cluster.start_all(router=True)
    await eventually(lambda: writable_volumes(cluster, 2), what="2 writable volumes")
    owners = [3, 4099, 8195, 12_000, 77, 5000]
    async with cluster.clients() as c:
        uploaded = {o: await c.media.upload(os.urandom(500 + o % 100), owner_id=o, content_type="image/jpeg")
                    for o in owners}
        stats = await c.media.batch_stat([m.media_id for m in uploaded.values()])
        assert [s.outcome for s in stats] == ["found"] * len(owners)
        assert {s.media_id for s in stats} == {m.media_id for m in uploaded.values()}
    placed = dict(zip(await ids_of(dsns), [await media_ids_on(d) for d in dsns], strict=True))
    for owner, media in uploaded.items():
        assert media.media_id in placed[shard_map.instance_of_user(owner)]


async def held_on(dsn: str) -> list[tuple[int, int]]:
    conn = await asyncpg.connect(dsn)
    try:
        return [(r[0], r[1]) for r in await conn.fetch("SELECT first, last FROM trenchcoat_held_shards ORDER BY 1")]
    finally:
        await conn.close()


async def test_the_operators_first_map_keeps_rows_where_they_are_and_leaves_a_move_alone(postgres, etcd):
    """`shards init` (and `up`, and the k8s Job) on instances whose first already holds rows
    (a cluster grown from one instance) puts every shard there; on empty ones, splits them
    evenly. Run again during a move, it does not tell the instances their shards (the mover
    does: the source's pause and the target's take-over are the mover's to say)."""
    grown = [await fresh_database(postgres.endpoint) for _ in range(2)]
    alone = await MediaStore.connect(grown[0], timeout_s=TIMEOUT_S)
    try:
        await alone.migrate()
        await reserve(alone, 5000)  # a row of the one instance the cluster had
    finally:
        await alone.close()
    client = Etcd([etcd.endpoint], f"init-{os.urandom(4).hex()}", timeout_s=TIMEOUT_S)
    fresh_client = Etcd([etcd.endpoint], f"init-{os.urandom(4).hex()}", timeout_s=TIMEOUT_S)
    empty = [await fresh_database(postgres.endpoint) for _ in range(2)]
    try:
        async with pgmigrate.reaching(grown, timeout_s=TIMEOUT_S) as instances:
            shard_map, made = await admin.make_shard_map(client, instances, timeout_s=TIMEOUT_S)
            assert made and shard_map.rows() == [f"0-8191 -> {next(iter(instances))}"]
        async with pgmigrate.reaching(empty, timeout_s=TIMEOUT_S) as instances:
            shard_map, made = await admin.make_shard_map(fresh_client, instances, timeout_s=TIMEOUT_S)
            assert made and shard_map == ShardMap.even(list(instances))
            assert [await held_on(d) for d in empty] == [[(0, 4095)], [(4096, 8191)]]
            async with next(iter(instances.values()))[0].acquire() as conn:
                await pgmigrate.set_held(conn, [(0, 1023)])  # a move's pause, say
            assert await fresh_client.create(shardmove.MOVE_KEY, {"first": 1024, "last": 4095, "source": "a",
                                                                  "target": "b", "version": 2, "phase": "paused"})
            await admin.make_shard_map(fresh_client, instances, timeout_s=TIMEOUT_S)
            assert await held_on(empty[0]) == [(0, 1023)]  # left to the mover
            record = await fresh_client.get(shardmove.MOVE_KEY)
            assert record is not None and await fresh_client.remove(shardmove.MOVE_KEY, record.mod_revision)
            await admin.make_shard_map(fresh_client, instances, timeout_s=TIMEOUT_S)
            assert await held_on(empty[0]) == [(0, 4095)]  # no move: told again
    finally:
        await client.close()
        await fresh_client.close()
