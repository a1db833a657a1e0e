"""``trenchcoat demo`` (what ``make demo`` runs): the media pipeline end to end on a fresh
local cluster, narrated.

Uploads generated photos for a few users, prints their URLs, fetches each through the
CDN (nginx) twice and straight from the cache its URL names twice, kills one store with SIGKILL
and shows its photos still served from the other replicas, deletes a photo and shows the
404. Then the feed, the other half, meeting the media half at the media_id: users follow
each other and one celebrity (``feed.celebrity_threshold`` is 3 for the demo), everyone
posts photos, a home feed is printed page by page with the URLs then fetched through the
CDN, and an unfollow and a delete are shown leaving the feed. Then everything stops and
the demo checks nothing is left running.

Every check states the condition it proves and holds however loaded the machine is:
every acknowledged upload reads back byte-exact on every read; the CDN's second read of a
photo is a HIT; the cache admits none of the CDN's reads; every photo the cache admits on
a direct read is a hit on the next, and a photo it does not admit was on a read-only
volume (Haystack's rule; a volume turns read-only when, say, a starved store misses its
probes). Counts that depend on timing are reported, not asserted.
"""

from __future__ import annotations

import asyncio
import io
import os
import re
import signal
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

from PIL import Image, ImageDraw

from trenchcoat import procs, urls
from trenchcoat.config import Config
from trenchcoat.errors import Unavailable
from trenchcoat.feed_client import FeedClient, FeedEntry, FeedItem
from trenchcoat.launcher import Cluster
from trenchcoat.media_client import Media, MediaClient
from trenchcoat.rpc import ChannelPool

USERS = (7, 42, 1001)
PHOTOS_PER_USER = 3
UPLOAD_ATTEMPTS = 5
"""An upload answered UNAVAILABLE is retried with the same idempotency key, as the
contract asks of clients (a store that just died takes a moment to be routed around)."""
CACHE_HEADER = "X-Trenchcoat-Cache"
FEED_USERS = {21: "alice", 22: "bob", 23: "carol", 24: "dave", 30: "star"}
FEED_FOLLOWS = [(21, 22), (21, 23), (22, 21), (23, 21), (24, 21), (21, 30), (22, 30), (23, 30), (24, 30)]
"""alice follows bob and carol; bob, carol and dave follow alice; all four follow star, who
with four followers is a celebrity: star's posts are merged into feeds at read time."""
CELEBRITY_THRESHOLD = 3
SETTLE_S = 90.0


def photo(user: int, n: int) -> bytes:
    """A small JPEG: a gradient in the user's colour with a caption."""
    image = Image.new("RGB", (320, 240))
    draw = ImageDraw.Draw(image)
    r, g, b = (user * 67) % 256, (user * 131 + n * 40) % 256, (n * 90) % 256
    for y in range(240):
        draw.line([(0, y), (320, y)], fill=(r, (g + y) % 256, b))
    draw.rectangle([10, 10, 310, 50], fill=(0, 0, 0))
    draw.text((20, 22), f"user {user} - photo {n + 1}", fill=(255, 255, 255))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=85)
    return out.getvalue()


def fetch(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes, dict[str, str]]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


def metric(url: str, name: str, labels: str = "") -> float:
    """Sum of a metric's samples (those whose labels contain ``labels``, if given)."""
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    return sum(float(v) for lab, v in re.findall(rf"^{re.escape(name)}(\{{[^}}]*\}})? (\S+)", text, re.MULTILINE)
               if labels in lab)


@dataclass(frozen=True, slots=True)
class Upload:
    user: int
    media: Media
    data: bytes
    retries: int

    @property
    def path(self) -> str:
        return "/" + self.media.url.split("/", 3)[3]


async def upload_all(router: str, round_name: str) -> list[Upload]:
    done = []
    async with ChannelPool() as pool:
        client = MediaClient(pool, router, timeout_s=60)
        for user in USERS:
            for n in range(PHOTOS_PER_USER):
                data = photo(user, n)
                key = f"demo-{round_name}-{user}-{n}-{os.getpid()}"
                for attempt in range(UPLOAD_ATTEMPTS):
                    try:
                        media = await client.upload(data, owner_id=user, content_type="image/jpeg",
                                                    idempotency_key=key)
                        break
                    except Unavailable:
                        if attempt == UPLOAD_ATTEMPTS - 1:
                            raise
                        await asyncio.sleep(1.0)
                done.append(Upload(user, media, data, attempt))
    return done


@dataclass(frozen=True, slots=True)
class Posted:
    entry: FeedEntry
    data: bytes
    caption: str


async def feed_setup(router: str, feed: str) -> dict[int, Posted]:
    """The follows, then two photos posted by each of alice, bob, carol and star."""
    posted: dict[int, Posted] = {}
    async with ChannelPool() as pool:
        media, feeds = MediaClient(pool, router, timeout_s=60), FeedClient(pool, feed, timeout_s=60)
        for follower, followee in FEED_FOLLOWS:
            await feeds.follow(follower, followee)
        for n in range(2):
            for user in (21, 22, 23, 30):
                data = photo(user, n)
                caption = f"{FEED_USERS[user]}'s photo {n + 1}"
                uploaded = await media.upload(data, owner_id=user, content_type="image/jpeg")
                entry = await feeds.post(user, uploaded.media_id, caption)
                posted[entry.media_id] = Posted(entry, data, caption)
    return posted


async def home_until(feed: str, user: int, want: list[FeedEntry], settle_s: float = SETTLE_S) -> list[FeedEntry]:
    """The user's whole home feed once it equals ``want`` (fan-out is asynchronous), or as
    it is after ``settle_s`` (0: as the first read finds it)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settle_s
    async with ChannelPool() as pool:
        feeds = FeedClient(pool, feed, timeout_s=60)
        while True:
            got, cursor = [], 0
            while True:
                page = await feeds.home(user, cursor=cursor, limit=50)
                got += page.entries
                if not page.next_cursor:
                    break
                cursor = page.next_cursor
            if got == want or loop.time() > deadline:
                return got
            await asyncio.sleep(0.3)


async def hydrated_pages(feed: str, user: int, limit: int) -> list[list[FeedItem]]:
    pages, cursor = [], 0
    async with ChannelPool() as pool:
        feeds = FeedClient(pool, feed, timeout_s=60)
        while True:
            page = await feeds.home(user, cursor=cursor, limit=limit, hydrate=True)
            pages.append(page.items or [])
            if not page.next_cursor:
                return pages
            cursor = page.next_cursor


async def feed_call(feed: str, verb: str, *args: int) -> bool:
    async with ChannelPool() as pool:
        return bool(await getattr(FeedClient(pool, feed, timeout_s=60), verb)(*args))


async def delete(router: str, media_id: int) -> bool:
    async with ChannelPool() as pool:
        return await MediaClient(pool, router).delete(media_id)


def run(config: Config, config_path: str | None, say: Callable[[str], None]) -> bool:
    """The demo; True when every step showed what it should."""
    cluster = Cluster(config, config_path=config_path,
                      overrides={"TRENCHCOAT_FEED__CELEBRITY_THRESHOLD": str(CELEBRITY_THRESHOLD)})
    ok = True

    def check(condition: bool, what: str) -> None:
        nonlocal ok
        say(("   ok  " if condition else "!! FAILED ") + what)
        ok = ok and condition

    host = config.cluster.host
    router = f"{host}:{config.router.port}"
    caches = config.cache_http_endpoints()

    def direct(path: str) -> str:
        """The photo at ``path`` straight from the cache its URL names (no CDN)."""
        return f"http://{caches[(urls.parse_path(path).cache_id - 1) % len(caches)]}{path}"

    feed = f"{host}:{config.feed.port}"
    cache_metrics = f"http://{host}:{config.cache.metrics_port}/metrics"
    feed_metrics = f"http://{host}:{config.feed.metrics_port}/metrics"
    say(f"== starting a local cluster in {cluster.data_dir}")
    try:
        cluster.start()
        say("== uploading generated photos (every replica fsynced before each answer)")
        uploads = asyncio.run(upload_all(router, "first"))
        for u in uploads:
            say(f"   user {u.user:>5}  media_id {u.media.media_id}  {u.media.url}")

        say("== reading every photo through the CDN twice (nginx adds X-Trenchcoat-Via-CDN)")
        admitted_before = metric(cache_metrics, "trenchcoat_cache_admissions_total")
        cdn_hits, exact = 0, True
        for u in uploads:
            for n in range(2):
                status, body, headers = fetch(u.media.url)
                if status != 200 or body != u.data:
                    exact = False
                    check(False, f"CDN read {n + 1} of {u.media.url} -> {status} "
                                 f"{headers.get('X-Cache-Status', '?')}, {len(body)} bytes")
                cdn_hits += n == 1 and headers.get("X-Cache-Status") == "HIT"
        check(exact, f"every photo read back byte-exact through the CDN, twice ({2 * len(uploads)} reads)")
        check(cdn_hits == len(uploads), f"the CDN's second read of each photo was a HIT ({cdn_hits}/{len(uploads)})")
        check(metric(cache_metrics, "trenchcoat_cache_admissions_total") == admitted_before,
              "the cache admitted none of the CDN's reads (the CDN keeps those)")

        say("== reading every photo straight from its cache twice (user-direct: the cache may admit)")
        read_only_before = metric(cache_metrics, "trenchcoat_cache_not_admitted_total", 'reason="read_only_volume"')
        exact, admitted, hit_after_admit, not_admitted = True, 0, 0, 0
        for u in uploads:
            outcomes = []
            for _ in range(2):
                status, body, headers = fetch(direct(u.path))
                exact = exact and status == 200 and body == u.data
                if status != 200 or body != u.data:
                    check(False, f"direct read of {u.path} -> {status}, {len(body)} bytes")
                outcomes.append(headers.get(CACHE_HEADER, "?"))
            admitted += outcomes[0] == "admitted"
            hit_after_admit += outcomes == ["admitted", "hit"]
            not_admitted += outcomes[0] == "miss"
        read_only = metric(cache_metrics, "trenchcoat_cache_not_admitted_total",
                           'reason="read_only_volume"') - read_only_before
        check(exact, f"every photo read back byte-exact from the caches, twice ({2 * len(uploads)} reads)")
        check(hit_after_admit == admitted and admitted + not_admitted == len(uploads),
              f"each photo the cache admitted on its first direct read was a hit on the second "
              f"({hit_after_admit} of {admitted} admitted)")
        check(read_only >= not_admitted,
              f"each photo it did not admit was on a read-only volume ({not_admitted} not admitted)")

        victim = asyncio.run(upload_all(router, "victim"))[-1]  # not read yet: not cached
        machine = urls.parse_path(victim.path).machine_id
        store = next(p for p in cluster.processes if p.name == f"store-{machine}")
        say(f"== kill -9 store-{machine} (named in {victim.media.url})")
        os.kill(store.pid, signal.SIGKILL)  # type: ignore[arg-type]
        store.popen.wait(30)  # type: ignore[union-attr]
        failovers = metric(cache_metrics, "trenchcoat_cache_replica_failovers_total")
        status, body, _ = fetch(direct(victim.path))
        check(status == 200 and body == victim.data and
              metric(cache_metrics, "trenchcoat_cache_replica_failovers_total") > failovers,
              f"its photo is still served ({status}): the cache failed over to another replica")
        fresh = asyncio.run(upload_all(router, "store-down"))
        served = 0
        for u in fresh:
            status, body, _ = fetch(direct(u.path), {"X-Trenchcoat-Via-CDN": "1"})
            served += status == 200 and body == u.data
        retries = sum(u.retries for u in fresh)
        check(served == len(fresh), f"{served}/{len(fresh)} new uploads stored and read back byte-exact with a "
                                    f"store down ({retries} upload retries)")

        say("== deleting one photo")
        gone = uploads[0]
        check(asyncio.run(delete(router, gone.media.media_id)), f"deleted {gone.media.media_id}")
        status, _, _ = fetch(direct(gone.path))
        check(status == 404, f"its URL now answers {status} at its cache (the CDN forgets it within cdn.ttl_s)")

        say("== the feed: follows, then alice, bob, carol and star post two photos each")
        say("   alice follows bob and carol; bob, carol and dave follow alice; all four follow star, who "
            f"(followers >= feed.celebrity_threshold = {CELEBRITY_THRESHOLD}) is merged in at read time")
        posted = asyncio.run(feed_setup(router, feed))
        want = sorted((p.entry for p in posted.values() if p.entry.author_id in (21, 22, 23, 30)), reverse=True)
        got = asyncio.run(home_until(feed, 21, want))
        check(got == want, f"alice's home feed holds the {len(want)} posts of alice, bob, carol and star, "
                           f"newest first, each once ({len(got)} after fan-out)")
        say("== alice's home feed, 3 entries a page, hydrated (caption, author, CDN URL)")
        pages = asyncio.run(hydrated_pages(feed, 21, 3))
        fetched = 0
        for k, items in enumerate(pages, 1):
            for item in items:
                say(f"   page {k}  {item.entry.media_id}  {FEED_USERS.get(item.entry.author_id, '?'):<6} "
                    f"{item.caption:<18} {item.media.url}")
                status, body, _ = fetch(item.media.url)
                fetched += status == 200 and body == posted[item.entry.media_id].data
        seen = [i.entry for items in pages for i in items]
        check(seen == want, f"{len(pages)} pages, no entry skipped or repeated across page edges")
        check(fetched == len(want), f"{fetched}/{len(want)} photos fetched byte-exact through the CDN by their URLs")
        check(metric(feed_metrics, "trenchcoat_feed_celebrity_splices_total") > 0,
              "star's posts reached the feed by the read-time merge (celebrity splices counted), not by fan-out")
        check(asyncio.run(feed_call(feed, "unfollow", 21, 22)), "alice unfollows bob")
        after = asyncio.run(home_until(feed, 21, [e for e in want if e.author_id != 22], settle_s=0))
        check(all(e.author_id != 22 for e in after) and len(after) == len(want) - 2,
              f"bob's posts left alice's feed at once ({len(after)} entries)")
        dropped = next(p for p in posted.values() if p.entry.author_id == 23)
        check(asyncio.run(feed_call(feed, "delete_post", 23, dropped.entry.media_id)),
              f"carol deletes her post {dropped.entry.media_id}")
        after = asyncio.run(home_until(feed, 21, [e for e in after if e != dropped.entry], settle_s=0))
        check(dropped.entry not in after, f"it left alice's feed at once ({len(after)} entries)")
        url = next(i.media.url for items in pages for i in items if i.entry == dropped.entry)
        status, _, _ = fetch(direct("/" + url.split("/", 3)[3]))
        check(status == 404, f"and its photo's URL answers {status} at its cache")
    finally:
        say("== stopping")
        groups = {p.pid for p in cluster.processes if p.pid is not None}
        cluster.stop()

    left = procs.group_members(groups)
    check(not left, "stopped; no process left running" if not left else f"processes left running: {left}")
    return ok
