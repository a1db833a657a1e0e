"""Dependencies that stop answering without going away: PostgreSQL, Redis, etcd or a peer
store frozen with SIGSTOP (a hung disk or a partition looks the same). Every RPC that
needs the frozen one answers within its deadline, UNAVAILABLE with a message naming it,
never INTERNAL and never a hang; what does not need it keeps working; and once it is
thawed (SIGCONT, always, in a finally) the cluster serves again.

Deadlines are shortened (``DEADLINE_S``); timing is checked only as "answered within the
deadlines involved plus ``MARGIN_S``", which a busy machine meets and a hang does not.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from tests import harness
from tests.cluster import (
    MediaCluster,
    eventually,
    feed_cluster,
    fresh_database,
    writable_volumes,
)
from trenchcoat.clients.feed import FeedClient
from trenchcoat.clients.media import Media, MediaClient
from trenchcoat.errors import TrenchcoatError

pytestmark = pytest.mark.integration

DEADLINE_S = 2.0
"""postgres.timeout_s, redis.timeout_s and etcd.timeout_s of these clusters."""
MARGIN_S = 10.0
"""Slack on top of the deadlines an answer involves: a loaded machine, not a hang."""
DEADLINES = {
    "TRENCHCOAT_POSTGRES__TIMEOUT_S": str(DEADLINE_S),
    "TRENCHCOAT_REDIS__TIMEOUT_S": str(DEADLINE_S),
    "TRENCHCOAT_ETCD__TIMEOUT_S": str(DEADLINE_S),
}
CLIENT_TIMEOUT_S = 60.0
"""The test clients' own deadline: past it a call is DEADLINE_EXCEEDED (a hang), which fails
the status check below rather than the whole test run."""


# --- checking answers --------------------------------------------------------------------


async def answers_unavailable(call: Awaitable[Any], *, naming: str, within_s: float) -> str:
    """Awaits ``call``, which must fail UNAVAILABLE with a message naming ``naming`` within
    ``within_s`` seconds; returns the message."""
    started = time.monotonic()
    try:
        result = await call
    except TrenchcoatError as exc:
        elapsed = time.monotonic() - started
        assert exc.status == "UNAVAILABLE", f"{exc.status} after {elapsed:.1f}s: {exc}"
        assert naming in str(exc), f"the message does not name {naming}: {exc}"
        assert elapsed <= within_s, f"answered after {elapsed:.1f}s (allowed {within_s:g}s): {exc}"
        return str(exc)
    raise AssertionError(f"expected UNAVAILABLE naming {naming}, got {result!r}")


async def answers(call: Awaitable[Any], *, within_s: float, unavailable_naming: str = "") -> Any:
    """Awaits ``call``, which must answer within ``within_s`` seconds: a result, or (when
    ``unavailable_naming`` is given) UNAVAILABLE naming it. Returns the result or the error."""
    started = time.monotonic()
    try:
        result: Any = await call
    except TrenchcoatError as exc:
        if not unavailable_naming:
            raise
        assert exc.status == "UNAVAILABLE" and unavailable_naming in str(exc), f"{exc.status}: {exc}"
        result = exc
    elapsed = time.monotonic() - started
    assert elapsed <= within_s, f"answered after {elapsed:.1f}s (allowed {within_s:g}s): {result!r}"
    return result


def succeeds(make: Callable[[], Awaitable[Any]]) -> Callable[[], Awaitable[bool]]:
    """For ``eventually``: a call that counts once it answers at all (False included)."""
    async def attempt() -> bool:
        await make()
        return True

    return attempt


async def http_get(cluster: MediaCluster, media: Media, *, via_cdn: bool = False) -> tuple[int, bytes]:
    """GET of ``media``'s photo URL from the cache it names."""
    headers = {"X-Trenchcoat-Via-CDN": "1"} if via_cdn else {}
    async with harness.https_session() as session, \
            session.get(cluster.gateway + "/" + media.url.split("/", 3)[3], headers=headers) as r:
        return r.status, await r.read()


def blob(i: int) -> bytes:
    return f"photo {i} ".encode() * 64


async def upload(media: MediaClient, i: int, owner: int = 7) -> Media:
    return await media.upload(blob(i), owner_id=owner, content_type="image/jpeg")


async def uploads_work(cluster: MediaCluster) -> bool:
    """True once an upload succeeds again (and reads back)."""
    async with cluster.clients() as c:
        media = await upload(c.media, 999)
        _, data = await c.media.read(media.media_id)
        return data == blob(999)


@contextlib.asynccontextmanager
async def clients(cluster: MediaCluster):
    """The cluster's router and feed clients, patient enough that a hang shows as one."""
    async with cluster.clients() as c:
        assert cluster.router is not None
        media = MediaClient(c.pool, cluster.router.address, timeout_s=CLIENT_TIMEOUT_S)
        feed = FeedClient(c.pool, cluster.feed.address, timeout_s=CLIENT_TIMEOUT_S) if cluster.feed else None
        yield media, feed


# --- PostgreSQL --------------------------------------------------------------------------


async def test_postgresql_frozen_media_and_feed_calls_answer_unavailable_naming_it(
        service, etcd, redis_server, tmp_path):
    pg = harness.start_postgres()  # this test's own: it is frozen
    try:
        cluster = await feed_cluster(service, etcd, pg, redis_server.endpoint, tmp_path, fanout_workers=1,
                                     env=DEADLINES)
        async with clients(cluster) as (media, feed):
            assert feed is not None
            kept = [await upload(media, i) for i in range(3)]
            await feed.follow(2, 7)
            await feed.post(7, kept[0].media_id, "before the freeze")
            with pg.frozen():  # the postmaster and every backend
                # One deadline (the router's row, or the feed's own statement), plus the margin;
                # every call at once (each is checked on its own).
                within = DEADLINE_S + MARGIN_S
                message, *_ = await asyncio.gather(
                    answers_unavailable(upload(media, 10), naming="PostgreSQL", within_s=within),
                    answers_unavailable(media.stat(kept[0].media_id), naming="PostgreSQL", within_s=within),
                    answers_unavailable(media.batch_stat([m.media_id for m in kept]), naming="PostgreSQL",
                                        within_s=within),
                    answers_unavailable(media.read(kept[1].media_id), naming="PostgreSQL", within_s=within),
                    answers_unavailable(media.delete(kept[2].media_id, owner_id=kept[2].owner_id), naming="PostgreSQL", within_s=within),
                    # The feed: its own statements, or the router's Stat behind a post.
                    answers_unavailable(feed.post(7, kept[1].media_id, "frozen"), naming="PostgreSQL",
                                        within_s=within),
                    answers_unavailable(feed.follow(3, 7), naming="PostgreSQL", within_s=within),
                    answers_unavailable(feed.home(4), naming="PostgreSQL", within_s=within),  # never read: rebuilt
                    # A home feed Redis holds may still be served; if not, the answer names PostgreSQL.
                    answers(feed.home(2), within_s=within, unavailable_naming="PostgreSQL"))
                assert "retry" in message
            await eventually(lambda: uploads_work(cluster), timeout=60, what="an upload after PostgreSQL thawed")
            entry = await eventually(lambda: feed.post(7, kept[1].media_id, "after"), timeout=60,
                                     what="a post after PostgreSQL thawed")
            # (the follow tried while frozen may have committed once PostgreSQL went on: False then)
            await eventually(succeeds(lambda: feed.follow(3, 7)), timeout=60, what="a follow after the thaw")
            assert entry in (await feed.home(3)).entries
            _, data = await media.read(kept[2].media_id)  # the delete tried while frozen did not happen
            assert data == blob(2)
    finally:
        pg.stop()


# --- Redis -------------------------------------------------------------------------------


async def test_redis_frozen_feed_calls_answer_unavailable_naming_it(service, etcd, postgres, tmp_path):
    redis = harness.start_redis()  # this test's own: it is frozen
    try:
        cluster = await feed_cluster(service, etcd, postgres, redis.endpoint, tmp_path, fanout_workers=1,
                                     env=DEADLINES)
        async with clients(cluster) as (media, feed):
            assert feed is not None
            kept = [await upload(media, i) for i in range(2)]
            await feed.follow(2, 7)
            await feed.post(7, kept[0].media_id, "before the freeze")
            with redis.frozen():
                within = DEADLINE_S + MARGIN_S
                # A post is recorded in PostgreSQL; its fan-out is enqueued later by the sweeper
                # when Redis cannot take it now. Either way it answers in time.
                # (Each call is checked on its own; they run at once.)
                _, followed, *_ = await asyncio.gather(
                    answers(feed.post(7, kept[1].media_id, "frozen"), within_s=2 * DEADLINE_S + MARGIN_S,
                            unavailable_naming="Redis"),
                    # A follow commits in PostgreSQL with the intent of its Redis half: answered in
                    # time (its Redis steps each give up after the deadline), and finished later.
                    answers(feed.follow(3, 7), within_s=3 * DEADLINE_S + MARGIN_S),
                    answers_unavailable(feed.home(2), naming="Redis", within_s=within),
                    answers_unavailable(feed.home(2, hydrate=True), naming="Redis", within_s=within),
                    upload(media, 10))  # the media half does not use Redis
                assert followed is True
            # No retry: the intent sweeper backfills the follow once Redis answers again.

            async def both_posts_in_the_feed():
                return len((await feed.home(3)).entries) == 2

            await eventually(both_posts_in_the_feed, timeout=60, what="the feed whole after Redis thawed")
    finally:
        redis.stop()


# --- etcd --------------------------------------------------------------------------------


async def test_etcd_frozen_directory_calls_answer_unavailable_naming_it_and_uploads_go_on(
        service, postgres, tmp_path):
    etcd = harness.start_etcd()  # this test's own: it is frozen
    try:
        cluster = MediaCluster(service, tmp_path / "data", etcd.endpoint,
                               postgres=await fresh_database(postgres.endpoint), env=dict(DEADLINES))
        cluster.start_all(directories=1, stores=3, router=True)
        await eventually(lambda: writable_volumes(cluster, 2), what="2 writable volumes")
        async with cluster.clients() as c, clients(cluster) as (media, _):
            volume = (await c.directory.list_volumes())[0]
            with etcd.frozen():
                # Each directory waits one etcd deadline before the client asks the next.
                within = len(cluster.directories) * DEADLINE_S + MARGIN_S
                await asyncio.gather(
                    answers_unavailable(c.directory.mark_read_only(volume.id, "test", repair=False),
                                        naming="etcd", within_s=within),
                    # "No such volume" is etcd's word only: without it, UNAVAILABLE, not NOT_FOUND.
                    answers_unavailable(c.directory.locate(10_000), naming="etcd", within_s=within))
                # What the directories' copies of the map answer keeps working, and so do uploads.
                assert await answers(c.directory.list_volumes(), within_s=MARGIN_S)
                for i in range(5):
                    stored = await answers(upload(media, i), within_s=MARGIN_S)
                    _, data = await media.read(stored.media_id)
                    assert data == blob(i)
                    # The photo URL too: the cache serves it from its map, etcd unasked.
                    assert await answers(http_get(cluster, stored), within_s=MARGIN_S) == (200, blob(i))
            await eventually(lambda: uploads_work(cluster), timeout=120, what="uploads after etcd thawed")
            await eventually(succeeds(lambda: c.directory.mark_read_only(volume.id, "test", repair=False)),
                             timeout=60, what="a directory change after etcd thawed")
    finally:
        etcd.stop()


# --- a peer store ------------------------------------------------------------------------


async def test_a_frozen_store_delays_uploads_reads_and_deletes_by_at_most_its_deadline(
        service, etcd, postgres, tmp_path):
    replica_timeout_s = 3.0  # tests/cluster.py's router.replica_timeout_s
    cluster = MediaCluster(service, tmp_path / "data", etcd.endpoint,
                           postgres=await fresh_database(postgres.endpoint), env=dict(DEADLINES))
    cluster.start_all(directories=1, stores=6, router=True)  # six: volumes without the frozen one exist
    await eventually(lambda: writable_volumes(cluster, 2), what="2 writable volumes")
    async with clients(cluster) as (media, _):
        kept = [await upload(media, i) for i in range(13)]
        victim = cluster.stores[1]
        assert victim is not None
        with victim.frozen():
            # Every call below is checked on its own deadline; they run at once.
            # An upload whose volume includes the frozen store gives that volume up after one
            # replica deadline and succeeds on another (or, when no other is writable yet, says
            # UNAVAILABLE: the volume it could not store on, or that none is writable).
            uploads = [answers(upload(media, i), within_s=3 * replica_timeout_s + MARGIN_S,
                               unavailable_naming="volume") for i in range(20, 24)]
            # Reads go to another replica after the cache's store deadline (cache.store_timeout_s, 3 s).
            reads = [answers(media.read(m.media_id), within_s=3.0 + MARGIN_S) for m in kept[:6]]
            # So do photo URL reads (first reads, as from the CDN: never admitted, so the
            # cache reads a store every time).
            url_reads = [answers(http_get(cluster, m, via_cdn=True), within_s=3.0 + MARGIN_S) for m in kept[:12]]
            # A delete flags every replica it can reach within the deadline, and succeeds.
            delete = answers(media.delete(kept[12].media_id, owner_id=kept[12].owner_id), within_s=replica_timeout_s + MARGIN_S)
            answered = await asyncio.gather(*uploads, *reads, *url_reads, delete)
            read_back = answered[len(uploads):len(uploads) + len(reads)]
            assert [data for _, data in read_back] == [blob(i) for i in range(6)]
            assert answered[len(uploads) + len(reads):-1] == [(200, blob(i)) for i in range(12)]
            assert answered[-1] is True
        await eventually(lambda: uploads_work(cluster), timeout=60, what="uploads after the store thawed")
