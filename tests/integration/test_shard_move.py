"""Moving logical shards between two PostgreSQL instances while they are written
(trenchcoat/shardmove.py): eight writers upload, post, follow and make f4 keys across the
moving shards and the others, retrying what is refused during the pause; every write they
were told succeeded reads back after, from the instance the new map names, and the old copy
is gone. A mover stopped at each phase and run again finishes; one aborted before its flip
leaves everything where it was."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import random
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

import asyncpg
import pytest

from f4.keystore.keys import Keys
from feedsvc.records import Records
from router.metadata import MediaState, MediaStore
from tests.cluster import eventually, fresh_database
from tests.integration.test_shards import hold, ids_of
from trenchcoat import ids, pgmigrate, shardmove, shards
from trenchcoat.errors import FailedPrecondition, Unavailable
from trenchcoat.etcd import Etcd
from trenchcoat.shards import ShardMap

pytestmark = pytest.mark.integration

TIMEOUT_S = 30.0
MOVED = (0, 1023)
"""Moved from the first instance (which holds 0-4095) to the second."""
T = TypeVar("T")


@dataclass
class Pair:
    dsns: list[str]
    names: list[str]
    etcd: Etcd
    media: MediaStore
    records: Records
    keys: Keys
    followers: list[shards.MapFollower] = field(default_factory=list)
    cluster: str = ""
    """The etcd prefix's cluster name."""

    def dsn_of(self, name: str) -> str:
        return self.dsns[self.names.index(name)]

    def mover(self, instances: pgmigrate.Instances, **kwargs) -> shardmove.Mover:
        return shardmove.Mover(self.etcd, instances, timeout_s=TIMEOUT_S, **kwargs)


@contextlib.asynccontextmanager
async def following(pair: Pair) -> AsyncIterator[None]:
    """Each database follows the stored map as a service process's does."""
    tasks = []
    for n, db in enumerate((pair.media, pair.records, pair.keys)):
        follower = shards.MapFollower(pair.etcd, db, f"test-{n}-{uuid.uuid4().hex[:6]}", interval_s=0.1)
        tasks += [asyncio.create_task(follower.run()), asyncio.create_task(follower.seen.run())]
        pair.followers.append(follower)
    try:
        yield
    finally:
        for follower in pair.followers:
            await follower.shutdown()
            await follower.seen.shutdown()
        await asyncio.gather(*tasks, return_exceptions=True)


@pytest.fixture
async def pair(postgres, etcd) -> AsyncIterator[Pair]:
    dsns = [await fresh_database(postgres.endpoint) for _ in range(2)]
    names = await ids_of(dsns)
    name = f"move-{uuid.uuid4().hex[:8]}"
    client = Etcd([etcd.endpoint], name, timeout_s=TIMEOUT_S)
    shard_map, _ = await shards.init(client, names)
    await hold(dsns, shard_map)
    dbs = []
    for cls in (MediaStore, Records, Keys):
        db = await cls.connect(dsns, timeout_s=TIMEOUT_S, shard_map=shard_map)
        await db.migrate()
        dbs.append(db)
    yield Pair(dsns, names, client, *dbs, cluster=name)  # type: ignore[arg-type, misc]
    for db in dbs:
        await db.close()
    await client.close()


async def retried(what: Callable[[], Awaitable[T]], pauses: list[float]) -> T:
    """``what()``, again while it is Unavailable (a paused shard); the longest wait is kept."""
    loop = asyncio.get_running_loop()
    began = None
    while True:
        try:
            result = await what()
        except Unavailable:
            began = began if began is not None else loop.time()
            await asyncio.sleep(0.02)
            continue
        if began is not None:
            pauses.append(loop.time() - began)
        return result


@dataclass
class Written:
    """What the writers were told succeeded."""

    media: dict[int, int] = field(default_factory=dict)  # media_id -> owner
    posts: set[int] = field(default_factory=set)
    keys: dict[int, bytes] = field(default_factory=dict)
    edges: set[tuple[int, int]] = field(default_factory=set)
    touched: set[tuple[int, int]] = field(default_factory=set)
    pauses: list[float] = field(default_factory=list)


def owners(rng: random.Random) -> int:
    """Half in the moved shards, half elsewhere (on both instances)."""
    if rng.random() < 0.5:
        return rng.randint(MOVED[0], MOVED[1]) + 8192 * rng.randint(0, 3)
    return rng.randint(MOVED[1] + 1, 8191) + 8192 * rng.randint(0, 3)


async def write(pair: Pair, written: Written, writer: int, stop: asyncio.Event, seed: int = 0) -> None:
    rng = random.Random(writer * 1000 + seed)
    followers = [u for u in range(writer + 8, 9000, 8) if u % 8192 <= MOVED[1] + 200][:40]  # this writer's alone
    while not stop.is_set():
        owner = owners(rng)
        row, _ = await retried(functools.partial(
            pair.media.reserve, shard=ids.shard_for_user(owner), owner_id=owner, logical_volume=1,
            cookie=rng.getrandbits(32), size_bytes=10, content_type="image/jpeg", idempotency_key=None), written.pauses)
        await retried(functools.partial(pair.media.activate, row.media_id, 1), written.pauses)
        written.media[row.media_id] = owner
        await retried(functools.partial(pair.records.create_post, row.media_id, owner, "c", 1000), written.pauses)
        written.posts.add(row.media_id)
        written.keys[row.media_id] = await retried(functools.partial(pair.keys.create, row.media_id, 0),
                                                   written.pauses)
        follower, followee = rng.choice(followers), owners(rng)
        if follower != followee:
            edge = (follower, followee)
            if edge in written.edges:
                await retried(functools.partial(pair.records.unfollow, *edge, hold_s=60), written.pauses)
                written.edges.discard(edge)
            else:
                await retried(functools.partial(pair.records.follow, *edge, hold_s=60), written.pauses)
                written.edges.add(edge)
            written.touched.add(edge)


async def rows_by_shard(dsn: str, table: str, column: str, user: bool = False) -> dict[int, int]:
    conn = await asyncpg.connect(dsn)
    try:
        shard = f"{column} % 8192" if user else f"({column} >> 10) & 8191"
        return {r[0]: r[1] for r in await conn.fetch(f"SELECT {shard}, count(*) FROM {table} GROUP BY 1")}
    finally:
        await conn.close()


async def check_written(pair: Pair, written: Written, shard_map: ShardMap) -> None:
    """Every acknowledged write reads back, through the map, from where the map says."""
    assert written.media, "the writers wrote nothing"
    rows = await pair.media.get_many(list(written.media))
    assert set(rows) == set(written.media)
    assert all(r.state == MediaState.ACTIVE and r.owner_id == written.media[m] for m, r in rows.items())
    assert set(await pair.records.posts(list(written.posts))) == written.posts
    for media_id, key in written.keys.items():
        assert await pair.keys.get(media_id, 0) == key
    for edge in sorted(written.touched):
        assert await pair.records.settle_edge(*edge) == (edge in written.edges)
    users = {f for f, _ in written.touched} | {e for _, e in written.touched}
    for user in users:
        assert sorted(await pair.records.followees(user)) == sorted(e for f, e in written.edges if f == user)
        assert await pair.records.followers(user, 0, 1000) == sorted(f for f, e in written.edges if e == user)
    for name in pair.names:  # every row where its shard is, nowhere else
        for table, column, user in (("media", "media_id", False), ("feed_posts", "post_id", False),
                                    ("f4_keys", "needle_key", False), ("feed_authors", "user_id", True)):
            found = await rows_by_shard(pair.dsn_of(name), table, column, user)
            assert all(shard_map.instance_of(s) == name for s in found), (table, name)


async def test_shards_moved_under_eight_writers_keep_every_acknowledged_write(pair):
    written = Written()
    stop = asyncio.Event()
    async with following(pair), pgmigrate.reaching(pair.dsns, timeout_s=TIMEOUT_S) as instances:
        writers = [asyncio.create_task(write(pair, written, w, stop)) for w in range(8)]
        while len(written.media) < 150:  # rows of the moving shards for the copy to copy
            await asyncio.sleep(0.05)
        report = await pair.mover(instances, seen_wait_s=60).move(*MOVED, pair.names[1])
        moved_at = len(written.media)
        while len(written.media) < moved_at + 100:  # and writes go on, on the new map
            await asyncio.sleep(0.05)
        stop.set()
        await asyncio.gather(*writers)
    shard_map = await shards.stored(pair.etcd)
    assert shard_map is not None and shard_map.version == 2
    assert shard_map.held_by(pair.names[1]) == [(0, 1023), (4096, 8191)]
    assert report.copied > 0 and report.dropped > 0 and report.pause_s > 0
    assert report.move.phase == "flipped"
    await check_written(pair, written, shard_map)
    assert await pair.etcd.get(shardmove.MOVE_KEY) is None


class Killed(Exception):
    """The mover stopping where a test says (as if killed there)."""


class KillAt:
    """A progress that stops the mover when it reaches a stage starting with ``stage``."""

    def __init__(self, at: str) -> None:
        self.at = at
        self.reached = False

    def stage(self, description: str, total: int | None = None) -> None:
        if description.startswith(self.at) and not self.reached:
            self.reached = True
            raise Killed(description)

    def advance(self, n: int = 1) -> None:
        pass


async def fill(pair: Pair, written: Written, n: int) -> None:
    """``n`` more uploads (each with its post, key and a follow or unfollow) by one writer."""
    stop = asyncio.Event()
    task = asyncio.create_task(write(pair, written, 0, stop, seed=len(written.media)))
    target = len(written.media) + n
    async with asyncio.timeout(120):  # a shard never given back would keep refusing
        while len(written.media) < target:
            await asyncio.sleep(0.02)
    stop.set()
    await task


@pytest.mark.parametrize("stage", ["copying renditions", "catching up", "pausing", "waiting for every process",
                                   "dropping"])
async def test_a_mover_stopped_at_any_phase_finishes_when_run_again(pair, stage):
    async with following(pair), pgmigrate.reaching(pair.dsns, timeout_s=TIMEOUT_S) as instances:
        written = Written()
        await fill(pair, written, 40)
        stop = asyncio.Event()  # a writer all along: before, during and between the two runs
        writer = asyncio.create_task(write(pair, written, 1, stop))
        with pytest.raises(Killed):
            await pair.mover(instances, progress=KillAt(stage)).move(*MOVED, pair.names[1])
        with pytest.raises(FailedPrecondition, match="an unfinished move is recorded"):
            await pair.mover(instances).move(0, 99, pair.names[1])
        await pair.mover(instances, seen_wait_s=60).move(*MOVED, pair.names[1])
        stop.set()
        await writer
    shard_map = await shards.stored(pair.etcd)
    assert shard_map is not None and shard_map.instance_of(0) == pair.names[1]
    await check_written(pair, written, shard_map)


async def test_an_aborted_move_leaves_every_row_where_it_was(pair):
    async with following(pair), pgmigrate.reaching(pair.dsns, timeout_s=TIMEOUT_S) as instances:
        written = Written()
        await fill(pair, written, 40)
        with pytest.raises(Killed):
            await pair.mover(instances, progress=KillAt("pausing")).move(*MOVED, pair.names[1])
        stopped = await pair.etcd.get(shardmove.MOVE_KEY)
        assert stopped is not None and stopped.value["phase"] == "paused"  # the source stopped taking writes
        aborted = await pair.mover(instances).abort()
        assert aborted.phase == "aborted"
        await fill(pair, written, 10)  # the moving shards' writes taken again
    shard_map = await shards.stored(pair.etcd)
    assert shard_map is not None and shard_map.version == 1
    await check_written(pair, written, shard_map)  # nothing left on the second instance either


async def test_moves_that_cannot_be_are_refused_saying_why(pair):
    async with pgmigrate.reaching(pair.dsns, timeout_s=TIMEOUT_S) as instances:
        mover = pair.mover(instances)
        with pytest.raises(FailedPrecondition, match="are on 2 instances"):
            await mover.move(4000, 4200, pair.names[0])
        with pytest.raises(FailedPrecondition, match=r"are on .* already"):
            await mover.move(0, 10, pair.names[0])
        with pytest.raises(FailedPrecondition, match="no DSN given reaches instance 'pg-nowhere'"):
            await mover.move(0, 10, "pg-nowhere")
        with pytest.raises(FailedPrecondition, match="no move is recorded"):
            await mover.abort()
    with pytest.raises(ValueError, match="within 0-8191"):
        shardmove.parse_span("8000-9000")
    assert shardmove.parse_span("7") == (7, 7) and shardmove.parse_span("0-511") == (0, 511)


def mover_env(pair: Pair) -> dict[str, str]:
    """The operator's environment for this pair: its etcd prefix and instances, the suite's
    identities (inherited)."""
    return {**os.environ, "TRENCHCOAT_ETCD__ENDPOINTS": ",".join(pair.etcd.endpoints),
            "TRENCHCOAT_CLUSTER__NAME": pair.cluster, "TRENCHCOAT_POSTGRES__DSN": pair.dsns[0],
            "TRENCHCOAT_POSTGRES__SHARD_DSNS": pair.dsns[1]}


def start_mover(pair: Pair, *args: str) -> subprocess.Popen[str]:
    """`trenchcoat shards move ...` as the operator runs it, a process of its own."""
    return subprocess.Popen([sys.executable, "-m", "trenchcoat", "shards", "move", *args], env=mover_env(pair),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


async def run_mover(pair: Pair, *args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "trenchcoat", "shards", "move", *args],
                                   env=mover_env(pair), capture_output=True, text=True, timeout=300, check=False)


async def recorded_phase(pair: Pair) -> str | None:
    move = await shardmove.recorded(pair.etcd)
    return move.phase if move is not None else None


@pytest.mark.parametrize("phase", ["copying", "paused"])
async def test_a_mover_killed_9_is_finished_by_running_it_again(pair, phase):
    """The mover, a process of its own, kill -9ed where it waits for the source's writes in
    progress to end (a transaction held open here: at the start of the copy, or in the
    pause): run again, it finishes, and every write reads back. While it is stopped in the
    pause, the moved shards' writes are refused (UNAVAILABLE, with a retry hint), never lost."""
    async with following(pair):
        written = Written()
        await fill(pair, written, 30)
        if phase == "paused":  # a first run stopped just before the pause: the copy done
            with pytest.raises(Killed):
                async with pgmigrate.reaching(pair.dsns, timeout_s=TIMEOUT_S) as instances:
                    await pair.mover(instances, progress=KillAt("pausing")).move(*MOVED, pair.names[1])
        source = await asyncpg.connect(pair.dsns[0])
        try:
            writer = source.transaction()
            await writer.start()
            await source.fetchval("SELECT txid_current()")  # a write in progress the mover waits for
            proc = start_mover(pair, f"{MOVED[0]}-{MOVED[1]}", "--to", pair.names[1])
            await eventually(lambda: recorded_phase(pair), what="the move recorded")
            if phase == "paused":
                async def refused() -> bool:  # the pause under way: the moved shards refuse writes
                    try:
                        await pair.media.reserve(shard=5, owner_id=5, logical_volume=1, cookie=1, size_bytes=1,
                                                 content_type="image/jpeg", idempotency_key=None)
                    except Unavailable as exc:
                        assert "retry" in str(exc)
                        return True
                    return False

                await eventually(refused, what="the moved shards refusing writes")
            else:
                await asyncio.sleep(1.0)  # (nothing to wait on but the mover's wait itself)
            proc.send_signal(signal.SIGKILL)
            await asyncio.to_thread(proc.communicate, timeout=30)
            assert await recorded_phase(pair) == phase
            await writer.rollback()
        finally:
            await source.close()
        finished = await run_mover(pair, f"{MOVED[0]}-{MOVED[1]}", "--to", pair.names[1])
        assert finished.returncode == 0, finished.stdout + finished.stderr
        assert f"moved shards {MOVED[0]}-{MOVED[1]} from {pair.names[0]} to {pair.names[1]}" in finished.stdout
        await fill(pair, written, 10)
    shard_map = await shards.stored(pair.etcd)
    assert shard_map is not None and shard_map.instance_of(0) == pair.names[1]
    assert await recorded_phase(pair) is None
    await check_written(pair, written, shard_map)
