"""``trenchcoat demo`` (what ``make demo`` runs): the media pipeline end to end on a fresh
local cluster, narrated.

Uploads generated photos for a few users, prints their URLs, fetches each through the
CDN (nginx) twice and straight from the cache its URL names twice, kills one store with SIGKILL
and shows its photos still served from the other replicas, deletes a photo and shows the
404. Then the feed, the other half, meeting the media half at the media_id: users follow
each other and one celebrity (``feed.celebrity_threshold`` is 3 for the demo), everyone
posts photos, a home feed is printed page by page with the URLs then fetched through the
CDN, and an unfollow and a delete are shown leaving the feed. Then healing: a byte of a
photo flipped on one replica's disk is found by the audit and rewritten from a healthy
replica, and the killed store, lost for good, is replaced (``demo_heal.py``). Then renditions: a phone
photo's sizes are printed as each becomes durable and fetched by their own URLs, a short
video's HLS ladder appears a rung at a time and is played back through the CDN, and a
corrupt upload's job is shown dead-lettered with its reason. Then the warm tier: one
volume is moved into the f4 cell now (as ``trenchcoat migrate`` does; in production it
ages there after ``f4.warm_after_s``), its photos are read from f4 by the same URLs, four
storage nodes holding its data blocks are killed with SIGKILL and every photo is still
served (rebuilt online by the backoff node), a warm photo is deleted (404 at once: its
key is discarded), and no block file on disk holds any photo's plaintext. Then everything
stops and the demo checks nothing is left running.

Every check states the condition it proves and holds however loaded the machine is:
every acknowledged upload reads back byte-exact on every read; the CDN's second read of a
photo is a HIT; the cache admits none of the CDN's reads; every photo the cache admits on
a direct read is a hit on the next, and a photo it does not admit was on a read-only
volume (Haystack's rule; a volume turns read-only when, say, a starved store misses its
probes); a warm volume's photos are never admitted, and read back byte-exact with four
of a stripe's 14 blocks gone. Counts that depend on timing are reported, not asserted.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import itertools
import os
import re
import shutil
import signal
import ssl
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import av
from PIL import Image, ImageDraw

from trenchcoat import rendition_keys, tls, urls
from trenchcoat.clients.directory import DirectoryClient, VolumeView
from trenchcoat.clients.f4 import F4Client
from trenchcoat.clients.feed import FeedClient, FeedEntry, FeedItem
from trenchcoat.clients.media import Media, MediaClient
from trenchcoat.config import Config
from trenchcoat.errors import FailedPrecondition, Unavailable
from trenchcoat.f4_types import BlockInfo
from trenchcoat.ops import admin, demo_heal, dependencies, proc_tree, samples
from trenchcoat.ops.launcher import Cluster, implemented_services, read_state
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
FREE_AFTER_S = 3.0
"""The demo's ``f4.free_after_s`` (30 s by default): a warm volume's hot replicas are freed
this long after it turns warm. It must stay above ``directory.refresh_interval_s`` (0.5 s),
within which every cache hears that the volume is warm and stops reading the replicas."""
LEASE_PERIOD_S = 4.0
"""The demo's ``cache.lease_period_s`` and ``lease_wait_s`` (10 s and 5 s by default): before
reading the warm volume's photos from f4 it waits until every earlier read's lease has
ended (one period), and a shorter period keeps that wait short."""
WARM_WAIT_S = 600.0
"""Bound on waiting for a volume's move into f4 (seal, encode, check, warm, free): generous,
since the wait ends as soon as the volume is warm with its hot replicas freed."""
F4_NODES_KILLED = 4
"""Blocks of one stripe lost at once: RS(10,4) reads through the loss of any four."""
PLAINTEXT_PROBE_BYTES = 64
RENDITION_WAIT_S = 180.0
"""Bound on waiting for one upload's renditions (they take well under a second on an idle
machine; the bound is for a loaded one)."""
DEMO_DIR = "demo"
"""The demo's cluster lives in this directory under ``cluster.data_dir``, emptied before
each run (so every run starts fresh, and a cluster of ``trenchcoat up`` is left alone) and
kept afterwards for its logs."""


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


_https: ssl.SSLContext | None = None
"""The operator's identity for the cluster's HTTPS ports (the caches' photo ports, /metrics)."""


def metrics_url(config: Config, port: int) -> str:
    """A process's /metrics, read over HTTPS as the operator (unless the cluster is insecure)."""
    scheme = "https" if config.cluster.tls_directory() is not None else "http"
    return f"{scheme}://{config.cluster.host}:{port}/metrics"


def fetch(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes, dict[str, str]]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30, context=_https) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


def metric(url: str, name: str, labels: str = "") -> float:
    """Sum of a metric's samples (those whose labels contain ``labels``, if given)."""
    text = urllib.request.urlopen(url, timeout=10, context=_https).read().decode()
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
    return await upload_some(router, [(user, photo(user, n)) for user in USERS for n in range(PHOTOS_PER_USER)],
                             round_name)


async def upload_some(router: str, items: list[tuple[int, bytes]], round_name: str = "",
                      content_type: str = "image/jpeg") -> list[Upload]:
    """Uploads each (user, bytes), retrying UNAVAILABLE with the same idempotency key."""
    done = []
    async with ChannelPool() as pool:
        client = MediaClient(pool, router, timeout_s=60)
        for n, (user, data) in enumerate(items):
            key = f"demo-{round_name or 'one'}-{user}-{n}-{os.getpid()}-{time.monotonic_ns()}"
            for attempt in range(UPLOAD_ATTEMPTS):
                try:
                    media = await client.upload(data, owner_id=user, content_type=content_type,
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
    url: str

    @property
    def path(self) -> str:
        return "/" + self.url.split("/", 3)[3]


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
                posted[entry.media_id] = Posted(entry, data, caption, uploaded.url)
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
    """Deletes a media as its owner (whose token the demo, as the operator, mints)."""
    async with ChannelPool() as pool:
        return await admin.delete_for_owner(MediaClient(pool, router), media_id)


def volume_of(path: str) -> int:
    return urls.parse_path(path).needle.logical_volume


async def list_volumes(config: Config) -> list[VolumeView]:
    async with ChannelPool() as pool:
        return await DirectoryClient(pool, config.directory_endpoints(), timeout_s=30).list_volumes()


async def migrate_first(config: Config, candidates: list[VolumeView]) -> tuple[VolumeView | None, list[str]]:
    """Asks for the first candidate that may move into f4 now to move (``trenchcoat
    migrate``); (it as the Directory answered, why earlier candidates were refused)."""
    refused: list[str] = []
    async with ChannelPool() as pool:
        directory = DirectoryClient(pool, config.directory_endpoints(), timeout_s=30)
        for volume in candidates:
            try:
                return await directory.migrate_volume(volume.id), refused
            except FailedPrecondition as exc:  # under repair: its replicas may differ
                refused.append(f"volume {volume.id}: {exc}")
    return None, refused


async def until_warm(config: Config, volume_id: int, bound_s: float) -> tuple[VolumeView | None, list[str]]:
    """The volume once it is warm with its hot replicas freed, or as it is after
    ``bound_s``; and the states it was seen in on the way."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + bound_s
    view: VolumeView | None = None
    seen: list[str] = []
    async with ChannelPool() as pool:
        directory = DirectoryClient(pool, config.directory_endpoints(), timeout_s=30)
        while True:
            with contextlib.suppress(Unavailable):  # a directory too slow to answer on a loaded machine: ask again
                view = await directory.locate(volume_id)
            if view is not None:
                stage = view.state
                if view.state == "warm":
                    stage = "warm, hot replicas freed" if not view.replicas else "warm (hot replicas not freed yet)"
                if not seen or seen[-1] != stage:
                    seen.append(stage)
                if view.state == "warm" and not view.replicas:
                    return view, seen
            if loop.time() > deadline:
                return view, seen
            await asyncio.sleep(0.5)


async def warm_blocks(config: Config, volume_id: int) -> list[BlockInfo]:
    async with ChannelPool() as pool:
        return await F4Client(pool, config.f4_endpoint(), timeout_s=30).volume_status(volume_id)


def has_f4_cell(config: Config) -> bool:
    """Whether the cluster ``trenchcoat up`` starts has an f4 cell that volumes move into."""
    runs = implemented_services().keys()
    return (config.f4.migrate and {"f4", "f4_storage", "f4_keystore"} <= runs
            and min(config.f4.count, config.f4_storage.count, config.f4_keystore.count) > 0)


def backoff_metrics(config: Config) -> list[str]:
    """Where the cell's online reconstructions are counted: its backoff nodes (the front
    when it has none, as it then rebuilds itself)."""
    if not config.f4_backoff.count:
        return [metrics_url(config, config.f4.metrics_port)]
    return [metrics_url(config, config.f4_backoff.metrics_port + i) for i in range(config.f4_backoff.count)]


def show_warm_tier(cluster: Cluster, router: str, photos: dict[str, bytes], deleted: set[str],
                   direct: Callable[[str], str], check: Callable[[bool, str], None], say: Callable[[str], None]) -> None:
    """A volume into f4 now, its photos read from the cell, four data blocks' nodes
    killed, a warm delete, and no plaintext on disk. ``photos``: every photo the demo
    uploaded (URL path -> bytes); ``deleted``: the paths of those it deleted."""
    config = cluster.config
    cache_metrics = metrics_url(config, config.cache.metrics_port)
    last_read = time.monotonic()  # every read so far has returned

    def leases_out() -> None:
        """Waits until every lease taken by a read so far has ended: a read within a lease
        period is answered from that lease's result (cache/leases.py), and these reads are
        to reach f4. Leases are on the monotonic clock this process shares with the cache,
        so once the period has passed since the last read returned, each has ended."""
        time.sleep(max(0.0, last_read + config.cache.lease_period_s + 0.1 - time.monotonic()))

    def show(lines: list[str]) -> None:
        for line in lines:
            say(f"   {line}" if line else "")
    say(f"== the warm tier: an f4 cell of {config.f4_storage.count} storage nodes, Reed-Solomon(10,4) stripes "
        "(10 data + 4 parity blocks, one a node)")
    say(f"   in production a sealed volume ages into f4 after f4.warm_after_s "
        f"({config.f4.warm_after_s / 86400:g} days); the demo asks for one now, as `trenchcoat migrate N` does,")
    say(f"   with f4.free_after_s = {FREE_AFTER_S:g} (its hot replicas freed {FREE_AFTER_S:g} s after it is warm)")
    fresh = asyncio.run(upload_all(router, "warm"))  # not read before the move: in no cache's memory
    photos.update((u.path, u.data) for u in fresh)
    landed = Counter(volume_of(u.path) for u in fresh)
    # A move seals every replica first, so each must answer: not a volume of the killed store
    # (read-only since it died), nor one whose replica is away for any other reason.
    candidates = sorted((v for v in asyncio.run(list_volumes(config))
                         if v.id in landed and v.replicas and all(r.alive for r in v.replicas)
                         and v.state in ("writable", "read-only")),
                        key=lambda v: (not v.writable, -landed[v.id], v.id))
    volume, refused = asyncio.run(migrate_first(config, candidates)) if candidates else (None, [])
    for line in refused:
        say(f"   not {line}")
    if volume is None:
        check(False, f"a volume the {len(fresh)} new photos landed on ({sorted(landed)}) may move into f4 "
                     "(every replica alive, not under repair)")
        return
    vid = volume.id
    on_volume = {path: data for path, data in photos.items() if volume_of(path) == vid and path not in deleted}
    chosen = next(v for v in candidates if v.id == vid)
    replicas = ", ".join(f"store-{r.machine_id}@{r.rack}" for r in chosen.replicas)
    say(f"== trenchcoat migrate {vid}: {len(on_volume)} photos ({landed[vid]} just uploaded), "
        f"hot replicas {replicas}, every one alive")
    check(volume.state in ("read-only", "sealed", "warm"),
          f"the Directory took the request: volume {vid} is {volume.state} (no more writes), moving into f4")
    started = time.monotonic()
    volume, seen = asyncio.run(until_warm(config, vid, WARM_WAIT_S))
    took = time.monotonic() - started
    check(volume is not None and volume.state == "warm" and not volume.replicas,
          f"volume {vid} is warm and its hot replicas are freed ({took:.1f}s; seen: {' -> '.join(seen) or '-'})")
    if volume is None or volume.state != "warm":
        return
    say("== trenchcoat warm")
    show(admin.warm_table(config))

    def read_every_photo(when: str) -> Counter[str]:
        """Reads every live photo on the volume from its cache; counts what the cache did."""
        nonlocal last_read
        leases_out()
        outcomes: Counter[str] = Counter()
        exact = 0
        for path, data in on_volume.items():
            status, body, headers = fetch(direct(path))
            if status == 200 and body == data:
                exact += 1
            else:
                check(False, f"direct read of {path} -> {status}, {len(body)} bytes: {body[:200]!r}")
            outcomes[headers.get(CACHE_HEADER, "?")] += 1
        last_read = time.monotonic()
        check(exact == len(on_volume), f"every photo on warm volume {vid} read back byte-exact from its cache "
                                       f"{when} ({exact}/{len(on_volume)})")
        check(not outcomes["admitted"],
              f"the cache admitted none of them (warm volumes never are): {outcomes['miss']} read from f4 (miss), "
              f"{outcomes['hit']} from its memory (hit: admitted while the volume was hot)")
        return outcomes

    say(f"== reading the {len(on_volume)} photos of warm volume {vid} by their URLs, straight from the caches")
    say(f"   (once cache.lease_period_s = {config.cache.lease_period_s:g} s has passed since the last read, so that "
        "no read is answered from a lease's kept result)")
    warm_reads = metric(cache_metrics, "trenchcoat_cache_warm_reads_total")
    outcomes = read_every_photo("by the same URLs")
    warm_reads = metric(cache_metrics, "trenchcoat_cache_warm_reads_total") - warm_reads
    check(outcomes["miss"] >= landed[vid] and warm_reads >= outcomes["miss"],
          f"each one not in the cache's memory was read from f4 ({warm_reads:g} warm reads counted)")

    blocks = asyncio.run(warm_blocks(config, vid))
    per_node = Counter(b.node for b in blocks if b.block.stripe == 0)
    # The newest photos end the stripe's stream, which ends in its last data blocks: kill
    # those, so reads that rebuild are certain (the photos there are in no cache's memory).
    data_blocks = sorted((b for b in blocks if b.block.stripe == 0 and b.block.index < 10),
                         key=lambda b: -b.block.index)
    victims = [b for b in data_blocks if per_node[b.node] == 1][:F4_NODES_KILLED]
    nodes = {p.endpoint: p for p in cluster.processes if p.name.startswith("f4_storage")}
    if len(victims) < F4_NODES_KILLED or any(b.node not in nodes for b in victims):
        check(False, f"four nodes of this cluster hold one data block of stripe 0 each "
                     f"({[(b.block.index, b.node) for b in data_blocks]})")
        return
    say(f"== kill -9 {', '.join(nodes[b.node].name for b in victims)}: the nodes of data blocks "
        f"{', '.join(str(b.block.index) for b in sorted(victims, key=lambda b: b.block.index))} of stripe 0 "
        "(any 10 of a stripe's 14 blocks give back the other 4)")
    for b in victims:
        os.kill(nodes[b.node].pid, signal.SIGKILL)  # type: ignore[arg-type]
    for b in victims:
        nodes[b.node].popen.wait(30)  # type: ignore[union-attr]
    say("   trenchcoat warm now shows:")
    show(admin.warm_table(config))
    lost = asyncio.run(warm_blocks(config, vid))
    unhealthy = {(b.block.stripe, b.block.index) for b in lost if not b.healthy}
    check({(0, b.block.index) for b in victims} <= unhealthy,
          f"f4 reports their blocks unhealthy ({len(unhealthy)} of {len(lost)} unhealthy; the rebuilder would "
          f"rebuild them after f4_rebuilder.grace_s = {config.f4_rebuilder.grace_s:g} s)")
    say(f"== reading the {len(on_volume)} photos again, {F4_NODES_KILLED} of stripe 0's 14 blocks gone")
    urls_ = backoff_metrics(config)
    rebuilt = sum(metric(u, "trenchcoat_f4_reconstructions_total", 'outcome="rebuilt"') for u in urls_)
    read_every_photo(f"with {F4_NODES_KILLED} blocks gone")
    rebuilt = sum(metric(u, "trenchcoat_f4_reconstructions_total", 'outcome="rebuilt"') for u in urls_) - rebuilt
    check(rebuilt > 0, f"the backoff node rebuilt the lost ranges online from 10 other blocks "
                       f"(trenchcoat_f4_reconstructions_total{{outcome=\"rebuilt\"}} +{rebuilt:g})")

    say("== deleting a warm photo (its key is discarded: its bytes in every block are noise)")
    gone = next(u for u in reversed(fresh) if volume_of(u.path) == vid)
    check(asyncio.run(delete(router, gone.media.media_id)), f"deleted {gone.media.media_id}")
    deleted.add(gone.path)
    status, _, _ = fetch(direct(gone.path))
    check(status == 404, f"its URL now answers {status} at its cache, at once")

    say("== looking for the photos' bytes in the f4 block files on disk")
    files = sorted(cluster.data_dir.glob("f4-storage-*/**/*.blk"))
    mine = [f for f in files if f"v{vid}" in f.relative_to(cluster.data_dir).parts]
    probes = {path: data[len(data) // 2:len(data) // 2 + PLAINTEXT_PROBE_BYTES] for path, data in photos.items()}
    found, scanned = [], 0
    for f in files:
        content = f.read_bytes()
        scanned += len(content)
        found += [f"{path} in {f.relative_to(cluster.data_dir)}" for path, probe in probes.items() if probe in content]
    check(bool(mine) and not found,
          f"no photo's plaintext in any of the {len(files)} block files ({scanned} bytes, {len(mine)} of volume {vid}): "
          f"no {PLAINTEXT_PROBE_BYTES}-byte slice from the middle of any of the {len(probes)} JPEGs"
          + (f"; found {'; '.join(found[:5])}" if found else "") + " (blobs are sealed with AES-256-GCM, "
          "one key each, in the key store)")


def portrait_photo() -> bytes:
    """A 2000x1500 JPEG stored sideways with EXIF orientation 6 (turn 90 degrees clockwise
    to show): displayed, it is 1500 wide and 2000 tall, as a phone camera writes it."""
    image = Image.new("RGB", (2000, 1500))
    draw = ImageDraw.Draw(image)
    for x in range(0, 2000, 8):
        draw.line([(x, 0), (x, 1500)], fill=((x * 7) % 256, (x // 8) % 256, 160))
    draw.rectangle([100, 100, 1900, 300], fill=(0, 0, 0))
    draw.text((140, 180), "trenchcoat renditions", fill=(255, 255, 255))
    exif = Image.Exif()
    exif[0x0112] = 6
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90, exif=exif.tobytes())
    return out.getvalue()


async def watch_renditions(router: str, media_id: int, say: Callable[[str], None], began: float,
                           bound_s: float) -> Media:
    """Stats the media until its renditions are finished (or failed), printing a line for
    each rendition as it becomes durable."""
    shown: set[int] = set()
    async with ChannelPool() as pool:
        client = MediaClient(pool, router, timeout_s=30)
        while True:
            media = await client.stat(media_id)
            for r in media.renditions:
                if r.alternate_key not in shown:
                    shown.add(r.alternate_key)
                    say(f"   + {rendition_keys.describe(r.alternate_key):<17} {r.width:>4}x{r.height:<4} "
                        f"{r.size_bytes:>7} bytes  {time.monotonic() - began:5.2f}s after the upload  {r.url}")
            if media.renditions_state in ("done", "failed") or time.monotonic() - began > bound_s:
                return media
            await asyncio.sleep(0.05)


def show_renditions(config: Config, router: str, check: Callable[[bool, str], None],
                    say: Callable[[str], None]) -> None:
    sizes = ", ".join(config.transformer.image_renditions)
    say(f"== renditions: a phone photo (2000x1500 stored, EXIF orientation 6) uploaded; the transformer "
        f"makes {sizes} off the upload path")
    source = portrait_photo()
    began = time.monotonic()
    [upload] = asyncio.run(upload_some(router, [(7, source)]))
    say(f"   uploaded {upload.media.media_id} in {time.monotonic() - began:.2f}s: renditions "
        f"{upload.media.renditions_state}, {len(upload.media.renditions)} so far")
    media = asyncio.run(watch_renditions(router, upload.media.media_id, say, began, RENDITION_WAIT_S))
    check(media.renditions_state == "done", f"its renditions are done ({len(media.renditions)} stored, each on "
                                            "every replica of its volume before it was listed)")
    right = 0
    for r in media.renditions:
        status, body, headers = fetch(r.url)
        try:
            image = Image.open(io.BytesIO(body))
            size = image.size
        except OSError:
            size = (0, 0)
        right += status == 200 and headers.get("Content-Type") == "image/jpeg" and size == (r.width, r.height)
    portrait = all(r.height >= r.width for r in media.renditions)
    check(right == len(media.renditions) and portrait,
          f"{right}/{len(media.renditions)} served through the CDN by their own URLs as the JPEGs listed, "
          f"upright (taller than wide: the orientation was applied)")
    show_video(router, check, say)
    say("== a corrupt upload: a JPEG cut short (its header parses, its pixels do not)")
    cut = photo(42, 9)
    [bad] = asyncio.run(upload_some(router, [(42, cut[:len(cut) // 2])]))
    media = asyncio.run(watch_renditions(router, bad.media.media_id, say, time.monotonic(), RENDITION_WAIT_S))
    check(media.renditions_state == "failed",
          f"its job failed for good at the first attempt, no retry wasted: {media.renditions_error}")
    say("== trenchcoat jobs")
    lines = admin.jobs_table(config)
    for line in lines:
        say(f"   {line}")
    check(any(f"{bad.media.media_id}:image:v" in line and "after 1 attempt(s)" in line for line in lines),
          "the dead letter is listed with its reason (trenchcoat jobs --retry JOB_ID runs it again)")


VIDEO_SECONDS, VIDEO_FPS = 4.0, 24


def show_video(router: str, check: Callable[[bool, str], None], say: Callable[[str], None]) -> None:
    say(f"== a video: {VIDEO_SECONDS:.0f} s of 854x480 at {VIDEO_FPS} fps (H.264/AAC MP4) uploaded; the transformer "
        "makes a poster and an HLS ladder, a rung at a time")
    source = samples.video(854, 480, seconds=VIDEO_SECONDS, fps=VIDEO_FPS)
    began = time.monotonic()
    [upload] = asyncio.run(upload_some(router, [(7, source)], content_type="video/mp4"))
    media = asyncio.run(watch_renditions(router, upload.media.media_id, say, began, RENDITION_WAIT_S))
    check(media.renditions_state == "done", f"its ladder is done (Stat lists {len(media.renditions)}: the poster "
                                            "and the master playlist of every rung, which leads to the rest)")
    masters = sorted((r for r in media.renditions if rendition_keys.is_master(r.alternate_key)),
                     key=lambda r: r.alternate_key)
    if not masters:
        check(False, "a master playlist was stored")
        return
    say(f"== playing it back as HLS through the CDN: {masters[-1].url}")
    status, body, _ = fetch(masters[-1].url)
    lines = [line for line in body.decode(errors="replace").splitlines() if line]
    rungs = [(info, url) for info, url in itertools.pairwise(lines) if info.startswith("#EXT-X-STREAM-INF:")]
    played = 0
    for info, url in rungs:
        _, playlist, _ = fetch(url)
        entries = [(float(d.removeprefix("#EXTINF:").rstrip(",")), u)
                   for d, u in itertools.pairwise(playlist.decode(errors="replace").splitlines())
                   if d.startswith("#EXTINF:")]
        frames, sizes, seconds = 0, set(), 0.0
        for duration, segment in entries:
            seg_status, data, headers = fetch(segment)
            if seg_status != 200 or headers.get("Content-Type") != "video/mp2t":
                continue
            with av.open(io.BytesIO(data), "r") as container:
                for frame in container.decode(video=0):
                    frames += 1
                    sizes.add(f"{frame.width}x{frame.height}")
            seconds += duration
        resolution = info.split("RESOLUTION=", 1)[1].split(",", 1)[0]
        say(f"   {resolution:>9}  {len(entries)} segments, {seconds:.1f} s, {frames} frames decoded  "
            f"({info.split(':', 1)[1].split(',RESOLUTION', 1)[0]})")
        played += frames == round(VIDEO_SECONDS * VIDEO_FPS) and sizes == {resolution}
    check(status == 200 and bool(rungs) and played == len(rungs),
          f"every rung played back whole: {played}/{len(rungs)} rungs, every segment fetched through the CDN and "
          f"decoded (PyAV), {round(VIDEO_SECONDS * VIDEO_FPS)} frames a rung at the rung's size")


def fresh_cluster_dir(config: Config) -> Config:
    """``config`` with its data directory moved to the demo's own, emptied of what an
    earlier demo left there (its private PostgreSQL cluster too, wherever it lives)."""
    root = Path(config.cluster.data_dir).resolve() / DEMO_DIR
    if read_state(root) is None:  # a demo still running there keeps its lock: starting fails, naming it
        shutil.rmtree(root, ignore_errors=True)
        postgres = dependencies.postgres_data_dir(root / "postgres")
        if postgres != root / "postgres":
            shutil.rmtree(postgres, ignore_errors=True)
    return dataclasses.replace(config, cluster=dataclasses.replace(config.cluster, data_dir=str(root)))


def run(config: Config, config_path: str | None, say: Callable[[str], None]) -> bool:
    """The demo; True when every step showed what it should."""
    config = fresh_cluster_dir(config)
    config = dataclasses.replace(config, cache=dataclasses.replace(config.cache, lease_period_s=LEASE_PERIOD_S,
                                                                   lease_wait_s=LEASE_PERIOD_S))
    cluster = Cluster(config, config_path=config_path,
                      overrides={"TRENCHCOAT_FEED__CELEBRITY_THRESHOLD": str(CELEBRITY_THRESHOLD),
                                 "TRENCHCOAT_F4__FREE_AFTER_S": str(FREE_AFTER_S),
                                 "TRENCHCOAT_CACHE__LEASE_PERIOD_S": str(LEASE_PERIOD_S),
                                 "TRENCHCOAT_CACHE__LEASE_WAIT_S": str(LEASE_PERIOD_S),
                                 **demo_heal.OVERRIDES})
    ok = True
    photos: dict[str, bytes] = {}
    """Every photo uploaded (URL path -> bytes)."""
    deleted: set[str] = set()

    def check(condition: bool, what: str) -> None:
        nonlocal ok
        say(("   ok  " if condition else "!! FAILED ") + what)
        ok = ok and condition

    global _https
    host = config.cluster.host
    router = f"{host}:{config.router.port}"
    caches = config.cache_http_endpoints()
    tls_dir = config.cluster.tls_directory()
    scheme = "https" if tls_dir is not None else "http"

    def direct(path: str) -> str:
        """The photo at ``path`` straight from the cache its URL names (no CDN), as the operator."""
        return f"{scheme}://{caches[(urls.parse_path(path).cache_id - 1) % len(caches)]}{path}"

    feed = f"{host}:{config.feed.port}"
    cache_metrics = metrics_url(config, config.cache.metrics_port)
    feed_metrics = metrics_url(config, config.feed.metrics_port)
    say(f"== starting a fresh local cluster in {cluster.data_dir}")
    try:
        cluster.start()  # makes the identities on a first start
        _https = tls.ClientTls(tls.Identity(tls_dir.resolve(), "admin")).http_context() if tls_dir else None
        say("== uploading generated photos (every replica fsynced before each answer)")
        uploads = asyncio.run(upload_all(router, "first"))
        photos.update((u.path, u.data) for u in uploads)
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

        round_ = asyncio.run(upload_all(router, "victim"))
        photos.update((u.path, u.data) for u in round_)
        victim = round_[-1]  # not read yet: not cached
        if config.transformer.count and config.router.renditions:
            # Its rendition job reads it through the cache too: let that finish first, or this
            # read could share that one's store read (a lease) and never need to fail over.
            asyncio.run(watch_renditions(router, victim.media.media_id, lambda _: None, time.monotonic(),
                                         RENDITION_WAIT_S))
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
        photos.update((u.path, u.data) for u in fresh)
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
        deleted.add(gone.path)
        status, _, _ = fetch(direct(gone.path))
        check(status == 404, f"its URL now answers {status} at its cache (the CDN forgets it within cdn.ttl_s)")

        say("== the feed: follows, then alice, bob, carol and star post two photos each")
        say("   alice follows bob and carol; bob, carol and dave follow alice; all four follow star, who "
            f"(followers >= feed.celebrity_threshold = {CELEBRITY_THRESHOLD}) is merged in at read time")
        posted = asyncio.run(feed_setup(router, feed))
        photos.update((p.path, p.data) for p in posted.values())
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
        deleted.add(dropped.path)
        after = asyncio.run(home_until(feed, 21, [e for e in after if e != dropped.entry], settle_s=0))
        check(dropped.entry not in after, f"it left alice's feed at once ({len(after)} entries)")
        url = next(i.media.url for items in pages for i in items if i.entry == dropped.entry)
        status, _, _ = fetch(direct("/" + url.split("/", 3)[3]))
        check(status == 404, f"and its photo's URL answers {status} at its cache")

        def one_more() -> tuple[str, str, bytes]:
            extra = asyncio.run(upload_some(router, [(USERS[0], photo(USERS[0], 99))], "heal"))[0]
            return extra.path, extra.media.url, extra.data

        demo_heal.show_healing(config, cluster.data_dir, [(u.path, u.media.url, u.data) for u in uploads if
                                                          u.path not in deleted], machine,
                               lambda url: fetch(url)[:2], check, say, more=one_more)

        if config.transformer.count and config.router.renditions:
            show_renditions(config, router, check, say)
        else:
            say("== renditions: skipped, this configuration runs no transformer workers "
                f"(transformer.count = {config.transformer.count}, "
                f"router.renditions = {str(config.router.renditions).lower()})")

        if has_f4_cell(config):
            show_warm_tier(cluster, router, photos, deleted, direct, check, say)
        else:
            say("== the warm tier: skipped, this configuration runs no f4 cell to move volumes into "
                f"(f4.migrate = {str(config.f4.migrate).lower()}, f4.count = {config.f4.count}, "
                f"f4_storage.count = {config.f4_storage.count})")
    finally:
        say("== stopping")
        groups = {p.pid for p in cluster.processes if p.pid is not None}
        cluster.stop()

    left = proc_tree.group_members(groups)
    check(not left, "stopped; no process left running" if not left else f"processes left running: {left}")
    return ok
