"""No outage of a dependency ends a process that uses it. PostgreSQL with every client
connection cut (statements waiting on a lock, then connections idle in the pools), then
frozen, then stopped until its users' background loops have met it and started again;
Redis stopped until every user has met it and started again, empty. Afterwards every
process that uses it still runs and serves again: an upload reads back, its renditions
are made, a post reaches a follower's home feed, the f4 key store makes keys.

Only what other tests leave out is here: connections cut, the key store in any
PostgreSQL outage, and the transformer in a Redis outage. PostgreSQL restarted again and
again under the router, feed and fan-out is ``test_postgres_restarts.py``; every
dependency frozen under the RPCs that need it ``test_frozen_dependencies.py``; reads and
the router with PostgreSQL stopped ``test_reads_without_postgres.py``; Redis restarted
mid-fan-out ``test_feed_faults.py``; etcd stopped until the directories and stores have
met it ``test_media_cluster.py``; services started before their dependencies
``test_start_order.py``.

Each test has its own PostgreSQL or Redis (it stops it) and a small cluster whose
processes start together.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests import harness
from tests.cluster import (
    MediaCluster,
    eventually,
    fanned_out,
    flushed,
    fresh_database,
    metric,
    writable_volumes,
)
from tests.integration.test_renditions import finished, photo
from trenchcoat.clients.f4 import KeyStoreClient
from trenchcoat.clients.media import Media
from trenchcoat.errors import TrenchcoatError
from trenchcoat.ops import ports

pytestmark = pytest.mark.integration

PG_DEADLINE_S = 8.0
"""postgres.timeout_s: a statement waiting on the test's lock must still be waiting when
the statements of the other processes have joined it (on a loaded machine)."""
DEADLINE_S = 2.0
"""redis.timeout_s and etcd.timeout_s."""
ENV = {
    "TRENCHCOAT_POSTGRES__TIMEOUT_S": str(PG_DEADLINE_S),
    "TRENCHCOAT_REDIS__TIMEOUT_S": str(DEADLINE_S),
    "TRENCHCOAT_ETCD__TIMEOUT_S": str(DEADLINE_S),
    "TRENCHCOAT_FEED__CELEBRITY_THRESHOLD": "1000000",  # every author is pushed by the fan-out workers
    "TRENCHCOAT_FEED__SWEEP_INTERVAL_S": "0.5",
    "TRENCHCOAT_FEED__SWEEP_AFTER_S": "2",
}
KEY = 1 << 40
"""Media ids whose warm keys the tests ask the key store for (KEY + n)."""


class StartTogether:
    """Starts a cluster's processes without waiting for each (they do not need each other
    to start), then waits for all: ``MediaCluster(StartTogether(service), ...)``."""

    def __init__(self, service: Callable[..., harness.ServiceProcess]) -> None:
        self._service = service
        self.started: list[harness.ServiceProcess] = []

    def __call__(self, name: str, argv: list[str], **kwargs: Any) -> harness.ServiceProcess:
        kwargs["wait"] = False
        proc = self._service(name, argv, **kwargs)
        self.started.append(proc)
        return proc

    def ready(self, timeout: float = 120.0) -> None:
        for proc in self.started:
            proc.process.wait_ready(timeout)


async def small_cluster(service: Callable[..., harness.ServiceProcess], tmp_path: Path, *, etcd: str, postgres: str,
                        redis: str, renditions: bool, keystore: bool) -> tuple[MediaCluster, dict[str, harness.ServiceProcess]]:
    """A directory, three stores (one per rack), a cache, a router, the feed and a fan-out
    worker, and a transformer (``renditions``) or an f4 key store (``keystore``), started
    together on a fresh database and an empty Redis. Returns the cluster and its processes
    that use PostgreSQL or Redis, by name."""
    await flushed(redis)
    starter = StartTogether(service)
    cluster = MediaCluster(starter, tmp_path / "data", etcd, postgres=await fresh_database(postgres),
                           redis=redis, env={**ENV, "TRENCHCOAT_ROUTER__RENDITIONS": str(renditions).lower(),
                                             "TRENCHCOAT_ROUTER__RENDITIONS_SWEEP_AFTER_S": "2",
                                             "TRENCHCOAT_ROUTER__RENDITIONS_SWEEP_INTERVAL_S": "0.5"})
    if renditions:
        cluster.transformer_ports = [(ports.free_port(), ports.free_port())]
    cluster.start_all(directories=1, stores=3, router=True)
    cluster.start_feed()
    cluster.start_fanout()
    assert cluster.router is not None and cluster.feed is not None and cluster.fanout[0] is not None
    users = {"router": cluster.router, "feed": cluster.feed, "fan-out worker": cluster.fanout[0]}
    if renditions:
        users["transformer"] = cluster.start_transformer()
    if keystore:
        port, metrics_port = ports.free_port(), ports.free_port()
        users["f4 key store"] = starter(
            "f4-keystore", harness.python_module("f4.keystore"), port=port, metrics_port=metrics_port,
            env={**cluster.env, "TRENCHCOAT_F4_KEYSTORE__PORT": str(port),
                 "TRENCHCOAT_F4_KEYSTORE__METRICS_PORT": str(metrics_port),
                 "TRENCHCOAT_F4_KEYSTORE__DRAIN_NOTICE_S": "0", "TRENCHCOAT_F4_KEYSTORE__GRACE_PERIOD_S": "1"})
    starter.ready()
    await eventually(lambda: writable_volumes(cluster, 2), timeout=60, what="2 writable volumes")
    return cluster, users


# --- what the tests check --------------------------------------------------------------


def all_serving(users: dict[str, harness.ServiceProcess], when: str) -> None:
    """Every process runs and reports SERVING: none ended, and none lost a background
    worker (that turns it NOT_SERVING)."""
    for name, proc in users.items():
        assert proc.process.running() and proc.health() == "SERVING", \
            f"the {name} is {proc.health()} {when}:\n{proc.process.log_tail(40)}"


def unavailable_naming(answer: object, dependency: str) -> bool:
    return isinstance(answer, TrenchcoatError) and answer.status == "UNAVAILABLE" and dependency in str(answer)


async def answers_unavailable(call: Awaitable[Any], *, naming: str) -> None:
    """``call`` fails UNAVAILABLE naming ``naming`` (a hang would be the test client's
    DEADLINE_EXCEEDED instead)."""
    try:
        result = await call
    except TrenchcoatError as exc:
        assert unavailable_naming(exc, naming), f"{exc.status}: {exc}"
        return
    raise AssertionError(f"expected UNAVAILABLE naming {naming}, got {result!r}")


@contextlib.contextmanager
def stopped(dependency: harness.Dependency) -> Iterator[None]:
    """The dependency stopped (its data kept) for the block, and started again after it."""
    dependency.process.stop()
    try:
        yield
    finally:
        dependency.process.start()
        dependency.process.wait_ready(60)


async def serving_again(cluster: MediaCluster, *, author: int, follower: int, seed: int,
                        keys: KeyStoreClient | None = None) -> Media:
    """An upload reads back, a post of it is fanned out to ``follower``'s home feed, and
    (given ``keys``) the key store makes a key and gives it back. Returns the upload."""
    data = photo(400, 300, seed=seed)
    async with cluster.clients() as c:
        async def uploaded():
            return await c.media.upload(data, owner_id=author, content_type="image/jpeg")

        media = await eventually(uploaded, timeout=60, what="an upload")
        assert (await c.media.read(media.media_id))[1] == data
        entry = await eventually(lambda: c.feed.post(author, media.media_id, f"after {seed}"), timeout=60,
                                 what="a post")
        await eventually(lambda: fanned_out(cluster, entry), timeout=60, what="the post's fan-out")
        assert entry in (await c.feed.home(follower)).entries
    if keys is not None:
        made = await eventually(lambda: keys.create_key(KEY + seed, 0), timeout=60, what="a key made")
        assert await keys.get_key(KEY + seed, 0) == made
    return media


# --- PostgreSQL ------------------------------------------------------------------------


def local_ports(pid: int) -> set[int]:
    """Local ports of the TCP sockets process ``pid`` holds (its descriptors' socket inodes,
    looked up in the kernel's TCP tables)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):  # closed meanwhile
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith("socket:["):
                inodes.add(target[len("socket:["):-1])
    ports = set()
    for table in ("tcp", "tcp6"):
        with open(f"/proc/{pid}/net/{table}") as f:
            for line in list(f)[1:]:
                fields = line.split()
                if fields[9] in inodes:
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


CLIENT_BACKENDS = ("SELECT pid, client_port, wait_event_type FROM pg_stat_activity"
                   " WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()")


async def cut_mid_statement(dsn: str, users: dict[str, harness.ServiceProcess],
                            calls: dict[str, Awaitable[Any]]) -> dict[str, object]:
    """Holds every table of the database locked, makes ``calls`` (each to the process of
    that name), and once a statement of each of those processes waits on the locks,
    terminates every client backend of the server (statements in flight, and connections
    idle in every pool); then releases the locks. Returns each call's answer (its result
    or its error)."""
    holder, killer = await asyncpg.connect(dsn), await asyncpg.connect(dsn)
    tasks: dict[str, asyncio.Future[Any]] = {}
    try:
        tables = [r[0] for r in await holder.fetch(
            "SELECT format('%I.%I', schemaname, tablename) FROM pg_tables WHERE schemaname = 'public'")]
        async with holder.transaction():
            await holder.execute(f"LOCK TABLE {', '.join(tables)} IN ACCESS EXCLUSIVE MODE")
            tasks = {name: asyncio.ensure_future(call) for name, call in calls.items()}
            holder_pid = await holder.fetchval("SELECT pg_backend_pid()")

            async def each_one_waiting() -> bool:
                waiting = {r["client_port"] for r in await killer.fetch(CLIENT_BACKENDS) if r["wait_event_type"] == "Lock"}
                return all(local_ports(users[name].process.pid or 0) & waiting for name in calls)

            await eventually(each_one_waiting, timeout=PG_DEADLINE_S,
                             what=f"a statement of each of {', '.join(calls)} waiting on the locks")
            cut = await killer.fetchval(
                f"SELECT count(pg_terminate_backend(pid)) FROM ({CLIENT_BACKENDS}) b WHERE pid <> $1", holder_pid)
            assert cut >= len(calls)
    finally:
        for task in tasks.values():
            if not task.done():
                await asyncio.wait([task], timeout=60)
        await holder.close()
        await killer.close()
    return {name: task.exception() or task.result() for name, task in tasks.items()}


async def test_postgresql_connections_cut_frozen_stopped_and_started_end_no_process(service, etcd, redis_server,
                                                                                    tmp_path):
    pg = harness.start_postgres()  # this test's own: it is frozen and stopped
    try:
        cluster, users = await small_cluster(service, tmp_path, etcd=etcd.endpoint, postgres=pg.endpoint,
                                             redis=redis_server.endpoint, renditions=False, keystore=True)
        router, feed = users["router"], users["feed"]
        async with cluster.clients() as c:
            keys = KeyStoreClient(c.pool, users["f4 key store"].address, timeout_s=60)
            await c.feed.follow(2, 1)
            kept = await c.media.upload(photo(400, 300, seed=1), owner_id=1, content_type="image/jpeg")

            # Cut mid-statement: a Stat (the router's row), a follow (the feed's edge) and a key
            # (the key store's row) each wait on the lock when their connections go.
            answers = await cut_mid_statement(cluster.postgres, users, {
                "router": c.media.stat(kept.media_id),
                "feed": c.feed.follow(3, 1),
                "f4 key store": keys.create_key(KEY, 0),
            })
            for name, answer in answers.items():  # done, or UNAVAILABLE: never an error of another kind
                assert not isinstance(answer, BaseException) or unavailable_naming(answer, "PostgreSQL"), \
                    f"the {name} answered {answer!r}"
            # Cut between statements: every pool's idle connections gone before their next use.
            conn = await asyncpg.connect(cluster.postgres)
            try:
                await conn.fetchval(f"SELECT count(pg_terminate_backend(pid)) FROM ({CLIENT_BACKENDS}) b")
            finally:
                await conn.close()
            all_serving(users, "when its PostgreSQL connections were cut")
            await serving_again(cluster, author=1, follower=2, seed=2, keys=keys)

            # Frozen: the key store answers UNAVAILABLE (the others: test_frozen_dependencies.py).
            with pg.frozen():
                await answers_unavailable(keys.create_key(KEY + 3, 0), naming="PostgreSQL")
            all_serving(users, "while PostgreSQL was frozen")

            # Stopped until the background loops of the router and the feed have met it.
            journal = await metric(router, "trenchcoat_worker_tick_failures_total", worker="DeleteJournal")
            sweeper = await metric(feed, "trenchcoat_worker_tick_failures_total", worker="Sweeper")
            with stopped(pg):
                await answers_unavailable(keys.create_key(KEY + 4, 0), naming="PostgreSQL")

                async def both_loops_failed() -> bool:
                    return (await metric(router, "trenchcoat_worker_tick_failures_total", worker="DeleteJournal")
                            > journal and await metric(feed, "trenchcoat_worker_tick_failures_total",
                                                       worker="Sweeper") > sweeper)

                await eventually(both_loops_failed, timeout=60, what="the delete journal and the sweeper meeting it")
                all_serving(users, "while PostgreSQL was stopped")
            all_serving(users, "when PostgreSQL started again")
            await serving_again(cluster, author=1, follower=2, seed=5, keys=keys)
    finally:
        pg.stop()


# --- Redis -----------------------------------------------------------------------------


async def test_redis_stopped_until_every_user_met_it_then_started_empty_ends_no_process(service, etcd, postgres,
                                                                                        tmp_path):
    redis = harness.start_redis()  # this test's own: it is stopped
    try:
        cluster, users = await small_cluster(service, tmp_path, etcd=etcd.endpoint, postgres=postgres.endpoint,
                                             redis=redis.endpoint, renditions=True, keystore=False)
        router, feed = users["router"], users["feed"]
        async with cluster.clients() as c:
            await c.feed.follow(12, 11)
            logs = {name: proc.log_size() for name, proc in users.items()}
            enqueues = await metric(router, "trenchcoat_router_rendition_jobs_enqueued_total", outcome="failed")
            sweeps = await metric(feed, "trenchcoat_worker_tick_failures_total", worker="Sweeper")
            with stopped(redis):
                # The media half needs no Redis; a post is recorded and its fan-out left to the sweeper.
                media = await c.media.upload(photo(400, 300, seed=11), owner_id=11, content_type="image/jpeg")
                entry = await c.feed.post(11, media.media_id, "while Redis is away")

                async def every_user_met_it() -> bool:
                    return (await metric(router, "trenchcoat_router_rendition_jobs_enqueued_total",
                                         outcome="failed") > enqueues
                            and await metric(feed, "trenchcoat_worker_tick_failures_total", worker="Sweeper") > sweeps
                            and all("cannot take" in users[name].logged_since(logs[name])
                                    for name in ("fan-out worker", "transformer")))

                await eventually(every_user_met_it, timeout=60, what="each of them meeting Redis gone")
                all_serving(users, "while Redis was stopped")
            all_serving(users, "when Redis started again")
            # What was lost with Redis is made good by the sweeps: the renditions, the fan-out.
            done = await eventually(lambda: finished(c, media.media_id), timeout=90, what="the renditions made")
            assert done.renditions_state == "done"
            await eventually(lambda: fanned_out(cluster, entry), timeout=60, what="the post's fan-out")
            assert entry in (await c.feed.home(12)).entries
            fresh = await serving_again(cluster, author=11, follower=12, seed=13)
            done = await eventually(lambda: finished(c, fresh.media_id), timeout=90, what="a new upload's renditions")
            assert done.renditions_state == "done"
    finally:
        redis.stop()
