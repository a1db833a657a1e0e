"""Reading a home feed: the pushed timeline merged with the followed celebrities' recent
lists at read time, exact pages by media_id, and PostgreSQL below what Redis holds.

A page of entries with ``media_id < cursor``, newest first:

1. Whom the user follows (cached in Redis, tagged with the user's follow version) and
   which of them have posts that were not fanned out on write (cached, tagged with the
   global pull epoch): every entry shown must be by one of them or the user, so a fan-out
   that raced an unfollow, or an unfollow's unfinished cleanup, shows nothing stale.
2. The sources: the user's timeline and each followed celebrity's recent list, each asked
   for its ``limit + 1`` newest entries below the cursor, and how far down it is complete
   (its floor: a trimmed list holds nothing below its lowest entry; a backfill that
   stopped short marks where).
3. A k-way merge by id, without duplicates, kept down to the highest floor and, when a
   source filled its window, to that window's last entry (below it the source holds more
   than was asked for: the next round asks again from there). Deleted posts (until their
   cleanup reaches every timeline) are dropped.
4. Still short of a page with Redis exhausted above a floor: the rest comes from
   PostgreSQL (the live posts of the followees and the user's own, below the floor), so
   scrolling never dead-ends at ``timeline_max``.

A timeline or celebrity list Redis no longer has (a restart) is rebuilt from PostgreSQL
on the read that finds it missing: an empty feed is never shown for a lost one.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Iterable

from feedsvc import metrics
from feedsvc.model import Entry, Page
from feedsvc.records import Records
from feedsvc.timelines import (
    Timelines,
    Window,
    pull_key,
    pull_meta,
    timeline_key,
    timeline_meta,
)
from trenchcoat.redisio import failures

REBUILD_LOCK_S = 30


def merge(windows: Iterable[list[Entry]]) -> list[Entry]:
    """Entries of newest-first lists, newest first, each media_id once."""
    out: list[Entry] = []
    seen: set[int] = set()
    for entry in heapq.merge(*windows, key=lambda e: e.media_id, reverse=True):
        if entry.media_id not in seen:
            seen.add(entry.media_id)
            out.append(entry)
    return out


def settled(windows: list[Window], want: int) -> int:
    """The lowest id down to which the merged windows are exact: entries at or above it
    are every entry of every source in that range. 0 when the sources are exhausted (down
    to their floors, which the caller handles)."""
    cut = 0
    for w in windows:
        if len(w.entries) >= want:  # the source holds more below its window's last entry
            cut = max(cut, w.entries[-1].media_id)
    return cut


class HomeFeeds:
    def __init__(self, records: Records, timelines: Timelines) -> None:
        self._records = records
        self._timelines = timelines

    async def page(self, user_id: int, cursor: int, limit: int) -> Page:
        started = time.perf_counter()
        try:
            return await self._page(user_id, cursor, limit)
        finally:
            metrics.READ_SECONDS.labels("home").observe(time.perf_counter() - started)

    async def _page(self, user_id: int, cursor: int, limit: int) -> Page:
        version, epoch, built = await self._timelines.read_state(user_id)
        follows, pulls = await self._timelines.cached_sets(user_id, version, epoch)
        if follows is None:
            follows = await self._rebuild_follows(user_id, version)
        allowed = follows | {user_id}
        if not built and not await self._ensure_timeline(user_id):
            # Another reader is rebuilding the lost timeline: this page comes from the truth.
            metrics.FROM_POSTGRES.inc()
            entries = await self._records.home_posts(user_id, before=cursor, limit=limit + 1)
            return _page(entries, limit)
        if pulls is None:
            pulls = await self._rebuild_pull_set(user_id, version, epoch)
        celebrities = [a for a in pulls if a in allowed]
        if celebrities:
            for author, ready in zip(celebrities, await self._timelines.pulls_built(celebrities), strict=True):
                if not ready:
                    await self._rebuild_pull(author)
        if celebrities:
            metrics.SPLICES.inc(len(celebrities))
        sources = [(timeline_key(user_id), timeline_meta(user_id))]
        sources += [(pull_key(a), pull_meta(a)) for a in celebrities]
        want = limit + 1
        found: list[Entry] = []
        at = cursor
        while True:
            windows = await self._timelines.windows(sources, at, want)
            floor = max(w.floor for w in windows)
            cut = max(settled(windows, want), floor)
            merged = [e for e in merge(w.entries for w in windows) if e.media_id >= cut]
            merged = [e for e in merged if e.author_id in allowed]
            gone = await self._timelines.deleted_among(merged)
            found += [e for e in merged if e.media_id not in gone]
            if len(found) >= want:
                break
            if cut > floor:  # a window filled: the sources hold more below it
                at = cut
                continue
            if floor:  # Redis is exhausted above the floor: the rest is PostgreSQL's
                metrics.FROM_POSTGRES.inc()
                before = min(at, floor) if at else floor
                found += await self._records.home_posts(user_id, before=before, limit=want - len(found))
            break
        return _page(found, limit)

    # --- what a page needs, rebuilt when Redis lost it --------------------------------

    async def _rebuild_follows(self, user_id: int, version: int) -> set[int]:
        """Whom the user follows, from PostgreSQL, cached at the user's follow version (read
        before PostgreSQL, so a follow committed meanwhile leaves the cache stale at once)."""
        followees = await self._records.followees(user_id)
        await self._timelines.cache_follows(user_id, version, followees)
        metrics.REBUILDS.labels("follows").inc()
        return set(followees)

    async def _rebuild_pull_set(self, user_id: int, version: int, epoch: int) -> list[int]:
        """Followed authors with posts not fanned out on write, from PostgreSQL, cached at the
        pull epoch and the user's follow version."""
        authors = await self._records.followed_pull_authors(user_id)
        await self._timelines.cache_pull_set(user_id, epoch, version, authors)
        return authors

    async def _ensure_timeline(self, user_id: int) -> bool:
        """Rebuilds a lost timeline: True when done, False when another reader is
        rebuilding it right now."""
        lock = f"lock:{timeline_key(user_id)}"
        with failures("a rebuild lock"):
            if not await self._timelines.redis.set(lock, b"1", nx=True, ex=REBUILD_LOCK_S):
                return False
        try:
            cap = self._timelines.timeline_max
            entries = await self._records.home_posts(user_id, before=0, limit=cap, pushed_only=True)
            await self._timelines.rebuild(user_id, entries, complete=len(entries) < cap)
            gone = await self._records.deleted_among([e.media_id for e in entries])
            if gone:  # deleted between the read and the write
                await self._timelines.drop(user_id, [e for e in entries if e.media_id in gone])
            metrics.REBUILDS.labels("timeline").inc()
        finally:
            with failures("a rebuild lock"):
                await self._timelines.redis.delete(lock)
        return True

    async def _rebuild_pull(self, author_id: int) -> None:
        entries = await self._records.author_posts(author_id, before=0, limit=self._timelines.celebrity_recent,
                                                   pushed=False)
        await self._timelines.rebuild_pull(author_id, entries)
        gone = await self._records.deleted_among([e.media_id for e in entries])
        for entry in entries:
            if entry.media_id in gone:  # deleted between the read and the write
                await self._timelines.pull_remove(entry)
        metrics.REBUILDS.labels("celebrity_list").inc()


def _page(entries: list[Entry], limit: int) -> Page:
    shown = entries[:limit]
    return Page(shown, shown[-1].media_id if len(entries) > limit and shown else 0)
