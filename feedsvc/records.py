"""The feed's truth in PostgreSQL (asyncpg): posts, follows, and per-author counts
(schema in ``feedsvc/migrations/``). Post ids are media_ids, stored through
``trenchcoat.ids.to_signed`` so the bigint order is the id order.

Rows live on the PostgreSQL instance holding their logical shard (``trenchcoat.shards``): a
post, and its author's counts, on the author's shard (a post's id is its media's, minted on
the owner's shard, and only the owner posts it); a follow edge on the follower's shard (the
truth: whom I follow) and on the followee's (whom they are followed by, which fan-out pages
through, and their count), the second written by the edge's follow-up (``settle_edge``,
driven by the intent recorded with the first) unless both are one instance; an intent on
the shard of its follower or post. A home feed asks the user's shard for whom they follow,
then each instance once for those authors' newest posts.

Every call is bounded by ``postgres.timeout_s``; a database that cannot be reached or
answers too slowly is ``Unavailable`` naming PostgreSQL.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from feedsvc.model import Entry, Intent, IntentKind, Post, PostState
from trenchcoat import pgmigrate
from trenchcoat.errors import Unavailable
from trenchcoat.ids import from_signed, shard_for_user, split_id, to_signed

log = logging.getLogger(__name__)

_MAX_SIGNED = (1 << 63) - 1


@dataclass(frozen=True, slots=True)
class PostChange:
    """What writing or deleting a post did."""

    post: Post
    changed: bool
    """False: nothing changed (the same post again; a post already deleted)."""
    pull_author_changed: bool = False
    """The author's first pull post appeared, or its last one went: users' cached sets of
    followed pull authors are stale."""
    intent: Intent | None = None
    """The follow-up recorded with a delete (None when nothing changed)."""


def _bound(cursor: int) -> int:
    """The signed bound for ``post_id < cursor`` (cursor 0: from the newest)."""
    return to_signed(cursor) if cursor else _MAX_SIGNED


class Records(pgmigrate.Database):
    MIGRATIONS = "feedsvc.migrations"
    MIGRATIONS_TABLE = "feed_schema_migrations"
    SHARDED = (
        pgmigrate.ShardedTable("feed_posts", ("post_id",), (pgmigrate.ID_SHARD.format(column="{r}post_id"),)),
        # An edge is on both users' shards: the follower's side is the truth, the followee's
        # is brought in line with it (settle_edge); each side's transaction also writes a row
        # of its one user (an intent, a follower count), which the guard holds to that shard.
        pgmigrate.ShardedTable("feed_follows", ("followee_id", "follower_id"),
                               (pgmigrate.USER_SHARD.format(column="{r}follower_id"),
                                pgmigrate.USER_SHARD.format(column="{r}followee_id"))),
        pgmigrate.ShardedTable("feed_authors", ("user_id",), (pgmigrate.USER_SHARD.format(column="{r}user_id"),)),
        pgmigrate.ShardedTable("feed_intents", ("kind", "a", "b"), (
            f"(CASE WHEN {{r}}kind = {int(IntentKind.FOLLOW)} THEN {pgmigrate.USER_SHARD.format(column='{r}a')}"
            f" ELSE {pgmigrate.ID_SHARD.format(column='{r}a')} END)",)),
    )

    # --- posts ------------------------------------------------------------------------

    async def create_post(self, media_id: int, author_id: int, caption: str, celebrity_threshold: int) -> PostChange:
        """Records a post; whether it is fanned out on write is decided now, from the
        author's follower count. Idempotent per media_id."""
        async with self._for_user(author_id, "a post") as conn, conn.transaction():
            await conn.execute("INSERT INTO feed_authors (user_id) VALUES ($1) ON CONFLICT DO NOTHING", author_id)
            followers = await conn.fetchval("SELECT followers FROM feed_authors WHERE user_id = $1 FOR UPDATE",
                                            author_id)
            pushed = followers < celebrity_threshold
            row = await conn.fetchrow(
                "INSERT INTO feed_posts (post_id, author_id, caption, pushed, state) VALUES ($1, $2, $3, $4, 1)"
                " ON CONFLICT (post_id) DO NOTHING RETURNING *", to_signed(media_id), author_id, caption, pushed)
            if row is None:
                existing = await conn.fetchrow("SELECT * FROM feed_posts WHERE post_id = $1", to_signed(media_id))
                if existing is None:
                    raise Unavailable(f"post {media_id} neither inserted nor found; retry")
                return PostChange(_post(existing), changed=False)
            became = False
            if not pushed:
                became = await conn.fetchval(
                    "UPDATE feed_authors SET pull_posts = pull_posts + 1 WHERE user_id = $1 RETURNING pull_posts",
                    author_id) == 1
            return PostChange(_post(row), changed=True, pull_author_changed=became)

    async def delete_post(self, media_id: int, *, hold_s: float) -> PostChange | None:
        """Marks the post deleted (its removal from feeds becomes the pending fan-out duty)
        and records the intent of its follow-up, due in ``hold_s`` unless finished first;
        None when there is no such post."""
        async with self._for_id(media_id, "a delete") as conn, conn.transaction():
            row = await conn.fetchrow(
                "UPDATE feed_posts SET state = 2, fanout_due_at = now(), fanned_out_at = NULL, fanout_dead_at = NULL"
                " WHERE post_id = $1 AND state = 1 RETURNING *", to_signed(media_id))
            if row is None:
                existing = await conn.fetchrow("SELECT * FROM feed_posts WHERE post_id = $1", to_signed(media_id))
                return None if existing is None else PostChange(_post(existing), changed=False)
            ended = False
            if not row["pushed"]:
                ended = await conn.fetchval(
                    "UPDATE feed_authors SET pull_posts = pull_posts - 1 WHERE user_id = $1 RETURNING pull_posts",
                    row["author_id"]) == 0
            intent = await _record_intent(conn, IntentKind.DELETE, media_id, 0, hold_s)
            return PostChange(_post(row), changed=True, pull_author_changed=ended, intent=intent)

    async def post(self, media_id: int) -> Post | None:
        async with self._for_id(media_id, "a post") as conn:
            row = await conn.fetchrow("SELECT * FROM feed_posts WHERE post_id = $1", to_signed(media_id))
        return _post(row) if row else None

    async def posts(self, media_ids: Sequence[int]) -> dict[int, Post]:
        rows = await self._fetch_ids("posts", "SELECT * FROM feed_posts WHERE post_id = ANY($1::bigint[])", media_ids)
        return {p.media_id: p for p in map(_post, rows)}

    async def finish_fanout(self, media_id: int, state: PostState) -> bool:
        """Records that the post's fan-out duty for ``state`` is done (False: the post has
        changed state since, and that duty is still pending)."""
        async with self._for_id(media_id, "a fan-out's end") as conn:
            status = await conn.execute(
                "UPDATE feed_posts SET fanned_out_at = now() WHERE post_id = $1 AND state = $2"
                " AND fanned_out_at IS NULL", to_signed(media_id), int(state))
        return status.endswith(" 1")

    async def unfinished_fanouts(self, older_than_s: float, before_unix_ms: int | None,
                                 limit: int = 1000) -> list[Post]:
        """Posts whose fan-out duty began over ``older_than_s`` ago, and before
        ``before_unix_ms`` (when given: the oldest job still queued, so none of these has a
        job waiting), has not finished and was not dead-lettered; their clock restarts (so
        a sweep does not enqueue them again at once)."""
        rows = await self._fetch_each(
            "unfinished fan-outs",
            "UPDATE feed_posts SET fanout_due_at = now() WHERE post_id IN ("
            " SELECT post_id FROM feed_posts WHERE fanned_out_at IS NULL AND fanout_dead_at IS NULL"
            " AND fanout_due_at < now() - make_interval(secs => $1)"
            " AND ($3::bigint IS NULL OR fanout_due_at < to_timestamp($3::bigint / 1000.0))"
            " ORDER BY fanout_due_at LIMIT $2 FOR UPDATE SKIP LOCKED) RETURNING *",
            older_than_s, limit, before_unix_ms)
        return [_post(r) for r in rows]

    async def redis_changed(self, run: str, lag_s: float) -> int:
        """Compares ``run`` (the Redis now, ``redisio.primaries_run``) with the one last seen;
        when it changed, the fan-outs and the follow-ups (a follow's backfill, an unfollow's
        cleanup, a deletion's marks) finished since ``lag_s`` before it was last seen the
        same are made unfinished again, on every instance, so the sweepers do them again
        (their writes may have been lost with what a failed primary had not passed on).
        Returns how many. Idempotent, and safe from several feed processes at once."""
        async with self._db("the Redis last seen") as conn:
            last = await conn.fetchrow("SELECT run, seen_at FROM feed_redis_runs")
            if last is None or last["run"] == run:
                await conn.execute("INSERT INTO feed_redis_runs (run) VALUES ($1) ON CONFLICT (one)"
                                   " DO UPDATE SET seen_at = now() WHERE feed_redis_runs.run = $1", run)
                return 0
        rows = await self._fetch_each(
            "fan-outs to run again after Redis changed",
            "UPDATE feed_posts SET fanned_out_at = NULL, fanout_due_at = now() - interval '1 day'"
            " WHERE fanned_out_at >= $1::timestamptz - make_interval(secs => $2) RETURNING post_id",
            last["seen_at"], lag_s)
        rows += await self._fetch_each(
            "follow-ups to do again after Redis changed",
            "UPDATE feed_intents SET finished_at = NULL, due_at = now(), attempts = 0"
            " WHERE finished_at >= $1::timestamptz - make_interval(secs => $2) RETURNING kind",
            last["seen_at"], lag_s)
        async with self._db("the Redis last seen") as conn:
            await conn.execute("UPDATE feed_redis_runs SET run = $1, seen_at = now() WHERE run = $2", run, last["run"])
        return len(rows)

    async def fanout_failed(self, media_id: int) -> None:
        """Records that the post's fan-out was dead-lettered (an operator's to look at)."""
        async with self._for_id(media_id, "a dead-lettered fan-out") as conn:
            await conn.execute("UPDATE feed_posts SET fanout_dead_at = now() WHERE post_id = $1"
                               " AND fanned_out_at IS NULL", to_signed(media_id))

    async def deleted_among(self, media_ids: Sequence[int]) -> set[int]:
        """Which of these posts are deleted (a write to Redis that raced a delete re-checks)."""
        if not media_ids:
            return set()
        rows = await self._fetch_ids("deleted posts", "SELECT post_id FROM feed_posts WHERE post_id = ANY($1::bigint[])"
                                     " AND state = 2", media_ids)
        return {from_signed(r["post_id"]) for r in rows}

    # --- follows ----------------------------------------------------------------------

    async def follow(self, follower_id: int, followee_id: int, *, hold_s: float) -> Intent | None:
        """Records the edge on the follower's shard and, when it is new, the intent of its
        follow-up (due in ``hold_s`` unless finished first), which it returns; None when it
        existed. The edge's copy on the followee's shard (who follows them, their count) is
        part of the follow-up (``settle_edge``) unless both shards are on one instance."""
        async with self._for_user(follower_id, "a follow") as conn, conn.transaction():
            created = await conn.fetchval(
                "INSERT INTO feed_follows (follower_id, followee_id) VALUES ($1, $2) ON CONFLICT DO NOTHING"
                " RETURNING true", follower_id, followee_id)
            if not created:
                return None
            if self._together(follower_id, followee_id):  # one row is both sides: count it now
                await _count_follower(conn, followee_id, +1)
            return await _record_intent(conn, IntentKind.FOLLOW, follower_id, followee_id, hold_s)

    async def unfollow(self, follower_id: int, followee_id: int, *, hold_s: float) -> Intent | None:
        """Removes the edge from the follower's shard and records the intent of its follow-up
        (as ``follow``); None when there was no edge."""
        async with self._for_user(follower_id, "an unfollow") as conn, conn.transaction():
            removed = await conn.fetchval(
                "DELETE FROM feed_follows WHERE follower_id = $1 AND followee_id = $2 RETURNING true",
                follower_id, followee_id)
            if not removed:
                return None
            if self._together(follower_id, followee_id):
                await _count_follower(conn, followee_id, -1)
            return await _record_intent(conn, IntentKind.FOLLOW, follower_id, followee_id, hold_s)

    async def follows(self, follower_id: int, followee_id: int) -> bool:
        """Whether the edge exists now (the follower's shard holds the truth)."""
        async with self._for_user(follower_id, "a follow edge") as conn:
            return bool(await conn.fetchval(
                "SELECT true FROM feed_follows WHERE follower_id = $1 AND followee_id = $2", follower_id, followee_id))

    async def settle_edge(self, follower_id: int, followee_id: int) -> bool:
        """The followee's shard brought in line with the follower's (the truth) for this
        edge, and its follower count with it; returns whether they follow. Idempotent and
        convergent: a copy is added or removed only once (its INSERT or DELETE says so), and
        a follow and an unfollow racing both end in what the follower's shard holds. Until
        it runs, a new follower misses only the followee's pushes (the follow-up backfills
        them) and an old one may still get some (dropped again by the follow-up)."""
        following = await self.follows(follower_id, followee_id)
        if self._together(follower_id, followee_id):
            return following
        async with self._for_user(followee_id, "the followee's copy of a follow") as conn, conn.transaction():
            if following:
                changed = await conn.fetchval(
                    "INSERT INTO feed_follows (follower_id, followee_id) VALUES ($1, $2) ON CONFLICT DO NOTHING"
                    " RETURNING true", follower_id, followee_id)
            else:
                changed = await conn.fetchval(
                    "DELETE FROM feed_follows WHERE follower_id = $1 AND followee_id = $2 RETURNING true",
                    follower_id, followee_id)
            if changed:
                await _count_follower(conn, followee_id, +1 if following else -1)
        return following

    def _together(self, a: int, b: int) -> bool:
        return self.shard_map.instance_of_user(a) == self.shard_map.instance_of_user(b)

    # --- intents ----------------------------------------------------------------------

    async def claim_intents(self, limit: int, hold_s: float) -> list[Intent]:
        """Up to ``limit`` due intents, each held from other sweepers for ``hold_s``."""
        rows = await self._fetch_each(
            "claiming follow-ups",
            "UPDATE feed_intents SET attempts = attempts + 1, due_at = now() + make_interval(secs => $2)"
            " WHERE (kind, a, b) IN (SELECT kind, a, b FROM feed_intents WHERE finished_at IS NULL"
            "  AND due_at <= now() ORDER BY due_at LIMIT $1 FOR UPDATE SKIP LOCKED) RETURNING *", limit, hold_s)
        return [_intent(r) for r in rows]

    async def finish_intent(self, intent: Intent) -> None:
        """The follow-up is done, unless a later change rewrote the intent meanwhile: it
        is kept as finished for a while (``forget_finished_intents``), to be opened again
        if Redis changes (``redis_changed``)."""
        async with self._for_intent(intent, "finishing a follow-up") as conn:
            await conn.execute("UPDATE feed_intents SET finished_at = now(), last_error = NULL"
                               " WHERE kind = $1 AND a = $2 AND b = $3 AND token = $4 AND finished_at IS NULL",
                               int(intent.kind), intent.a, intent.b, intent.token)

    async def forget_finished_intents(self, older_than_s: float, limit: int) -> int:
        """Removes up to ``limit`` intents of each instance finished over ``older_than_s``
        ago (past any Redis change that could still open them again); how many."""
        rows = await self._fetch_each(
            "forgetting finished follow-ups",
            "DELETE FROM feed_intents WHERE (kind, a, b) IN (SELECT kind, a, b FROM feed_intents"
            " WHERE finished_at < now() - make_interval(secs => $1) LIMIT $2 FOR UPDATE SKIP LOCKED)"
            " RETURNING kind", older_than_s, limit)
        return len(rows)

    async def finish_intent_quietly(self, intent: Intent) -> None:
        """``finish_intent`` by a request whose follow-up is done: when PostgreSQL cannot
        now, the sweeper finishes the intent again later (harmless, it is idempotent), and
        the request still succeeded."""
        try:
            await self.finish_intent(intent)
        except Unavailable as exc:
            log.warning("a finished follow-up's intent stays for the sweeper: %s", exc)

    async def hand_over_intent(self, intent: Intent, why: str) -> None:
        """A request could not finish its follow-up: the sweeper takes it at its next pass,
        not ``hold_s`` later. When PostgreSQL cannot record that now, it takes it then."""
        try:
            await self.postpone_intent(intent, why, 0.0)
        except Unavailable as exc:
            log.warning("a follow-up is left to the sweeper's usual time: %s", exc)

    async def postpone_intent(self, intent: Intent, why: str, retry_in_s: float) -> None:
        """Not done yet: due again in ``retry_in_s`` (unless a later change rewrote it)."""
        async with self._for_intent(intent, "postponing a follow-up") as conn:
            await conn.execute(
                "UPDATE feed_intents SET due_at = now() + make_interval(secs => $5), last_error = $6"
                " WHERE kind = $1 AND a = $2 AND b = $3 AND token = $4 AND finished_at IS NULL",
                int(intent.kind), intent.a, intent.b, intent.token, retry_in_s, why[:1000])

    async def pending_intents(self) -> int:
        rows = await self._fetch_each("counting follow-ups",
                                      "SELECT count(*) AS n FROM feed_intents WHERE finished_at IS NULL")
        return sum(int(r["n"]) for r in rows)

    async def followers(self, followee_id: int, after: int, limit: int) -> list[int]:
        """Followers of ``followee_id`` above ``after``, ascending: one keyset page."""
        async with self._for_user(followee_id, "followers") as conn:
            rows = await conn.fetch(
                "SELECT follower_id FROM feed_follows WHERE followee_id = $1 AND follower_id > $2"
                " ORDER BY follower_id LIMIT $3", followee_id, after, limit)
        return [r["follower_id"] for r in rows]

    async def followees(self, user_id: int) -> list[int]:
        async with self._for_user(user_id, "followees") as conn:
            rows = await conn.fetch("SELECT followee_id FROM feed_follows WHERE follower_id = $1", user_id)
        return [r["followee_id"] for r in rows]

    async def follower_count(self, user_id: int) -> int:
        async with self._for_user(user_id, "a follower count") as conn:
            return int(await conn.fetchval("SELECT followers FROM feed_authors WHERE user_id = $1", user_id) or 0)

    async def followed_pull_authors(self, user_id: int) -> list[int]:
        """Authors ``user_id`` follows whose live posts include ones not fanned out on write:
        their followees (on their shard), then each instance asked about the authors it holds."""
        followees = await self.followees(user_id)
        found = await self._fetch_users(
            "followed pull authors",
            "SELECT user_id FROM feed_authors WHERE user_id = ANY($1::bigint[]) AND pull_posts > 0", followees)
        return [r["user_id"] for r in found]

    # --- feeds ------------------------------------------------------------------------

    async def author_posts(self, author_id: int, *, before: int, limit: int,
                           pushed: bool | None = None) -> list[Entry]:
        """An author's live posts with id < ``before`` (0: from the newest), newest first;
        only those fanned out on write (``pushed``) or only the others, if asked."""
        async with self._for_user(author_id, "an author's posts") as conn:
            rows = await conn.fetch(
                "SELECT post_id, author_id FROM feed_posts WHERE author_id = $1 AND state = 1 AND post_id < $2"
                " AND ($4::boolean IS NULL OR pushed = $4) ORDER BY post_id DESC LIMIT $3",
                author_id, _bound(before), limit, pushed)
        return [Entry(from_signed(r["post_id"]), r["author_id"]) for r in rows]

    async def home_posts(self, user_id: int, *, before: int, limit: int, pushed_only: bool = False) -> list[Entry]:
        """The live posts of everyone ``user_id`` follows, and their own, with id < ``before``,
        newest first: the truth a home feed is an index of. ``pushed_only``: just what
        fan-out on write puts in a timeline (the user's own posts always are). The followees
        from the user's shard, then one query per instance holding any of those authors, in
        parallel, each the newest ``limit`` of its authors; merged."""
        authors = [*await self.followees(user_id), user_id]
        rows = await self._fetch_users(
            "a home feed",
            "SELECT p.post_id, p.author_id FROM unnest($1::bigint[]) AS f(author) CROSS JOIN LATERAL ("
            "  SELECT post_id, author_id FROM feed_posts WHERE author_id = f.author AND state = 1"
            "  AND post_id < $2 AND (NOT $4 OR pushed OR author_id = $5) ORDER BY post_id DESC LIMIT $3"
            ") p ORDER BY p.post_id DESC LIMIT $3",
            authors, _bound(before), limit, pushed_only, user_id)
        rows.sort(key=lambda r: r["post_id"], reverse=True)
        return [Entry(from_signed(r["post_id"]), r["author_id"]) for r in rows[:limit]]

    def _for_user(self, user_id: int, what: str) -> contextlib.AbstractAsyncContextManager[Any]:
        return self._db_for(shard_for_user(user_id), what)

    def _for_id(self, media_id: int, what: str) -> contextlib.AbstractAsyncContextManager[Any]:
        return self._db_for(split_id(media_id)[1], what)

    def _for_intent(self, intent: Intent, what: str) -> contextlib.AbstractAsyncContextManager[Any]:
        """Where an intent is recorded: a follow's on its follower's shard, a delete's on its post's."""
        if intent.kind == IntentKind.FOLLOW:
            return self._for_user(intent.a, what)
        return self._for_id(intent.a, what)


async def _count_follower(conn: asyncpg.Connection, followee_id: int, delta: int) -> None:
    await conn.execute(
        "INSERT INTO feed_authors (user_id, followers) VALUES ($1, greatest($2, 0))"
        " ON CONFLICT (user_id) DO UPDATE SET followers = feed_authors.followers + $2", followee_id, delta)


async def _record_intent(conn: asyncpg.Connection, kind: IntentKind, a: int, b: int, hold_s: float) -> Intent:
    """Records (or renews) an intent within the caller's transaction."""
    token = secrets.randbits(62)
    await conn.execute(
        "INSERT INTO feed_intents (kind, a, b, token, due_at) VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5))"
        " ON CONFLICT (kind, a, b) DO UPDATE SET token = EXCLUDED.token, due_at = EXCLUDED.due_at, attempts = 0,"
        " last_error = NULL, finished_at = NULL", int(kind), a, b, token, hold_s)
    return Intent(kind, a, b, token)


def _intent(row: asyncpg.Record) -> Intent:
    return Intent(IntentKind(row["kind"]), row["a"], row["b"], row["token"], row["attempts"])


def _post(row: asyncpg.Record) -> Post:
    return Post(media_id=from_signed(row["post_id"]), author_id=row["author_id"], caption=row["caption"],
                pushed=row["pushed"], state=PostState(row["state"]), created_at=row["created_at"].timestamp())

