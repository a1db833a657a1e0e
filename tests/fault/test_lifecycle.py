"""A photo's and a video's whole life on one cluster of real processes, across every seam:
uploaded by users who follow each other and a celebrity; posted and hydrated in home
feeds before and after the transformer made their sizes and HLS ladder; every URL
(original, sizes, poster, playlists, segments, a resize on read) fetched through the CDN
and from the caches; every volume they live on aged into an f4 cell and its hot replicas
freed; then everything again, by media_id (Stat, BatchStat, Read) and by URL; then four
storage nodes of the cell killed with SIGKILL and everything again (rebuilt online); then
deleted, by the feed and by the media pipeline: every URL 404, every Stat NOT_FOUND, the
feeds without them, every journal drained, and no plaintext in any block file.

The cell: five storage-node processes standing for the 14 failure domains, four of them
one domain each (data blocks 0-3 of every stripe: the ones killed), the fifth the other
ten; the key store, a backoff node (online reconstruction) and the front.
"""

from __future__ import annotations

import io
import itertools
import os
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import asyncpg
import pytest
from PIL import Image

from f4 import codec
from tests import harness
from tests.cluster import (
    Clients,
    MediaCluster,
    eventually,
    flushed,
    fresh_database,
    small_cell,
    writable_volumes,
)
from tests.integration.test_f4_keystore import start_keystore
from tests.integration.test_f4_storage import start_node
from tests.integration.test_renditions import photo
from trenchcoat import media_facts, urls
from trenchcoat import rendition_keys as keys
from trenchcoat.clients.feed import FeedEntry, FeedPage
from trenchcoat.clients.media import Media
from trenchcoat.errors import NotFound
from trenchcoat.ops import dependencies, ports, processes, samples

pytestmark = pytest.mark.integration

ALICE, BOB, CAROL, DAVE = 1001, 1002, 1003, 1004
"""Alice and Bob follow each other; everyone follows Carol, who is a celebrity (3 followers
at the feed.celebrity_threshold of 3): her post is merged in at read time."""
DOMAINS = tuple(f"rack-{i:02}" for i in range(codec.N))
KILLED = DOMAINS[:4]
"""Failure domains (and the nodes serving them) killed: blocks 0-3, data blocks of every stripe."""
RESIZE = "?w=640"
"""A resize on read the default transformer.on_read_sizes allows."""


@dataclass
class Life:
    cluster: MediaCluster
    cdn: processes.ManagedProcess
    nodes: dict[str, harness.ServiceProcess]
    """Storage node by the first domain it serves."""
    backoff: harness.ServiceProcess
    media: dict[str, Media] = field(default_factory=dict)
    """"photo", "video", "celebrity" -> the Media as Stat describes it once its renditions are done."""
    posts: dict[str, FeedEntry] = field(default_factory=dict)
    served: dict[str, bytes] = field(default_factory=dict)
    """Every URL (its path) -> the bytes it served while hot."""

    @property
    def cdn_base(self) -> str:
        return self.cdn.endpoint


def _path(url: str) -> str:
    return "/" + url.split("/", 3)[3]


async def _get(base: str, path: str) -> tuple[int, bytes]:
    async with harness.https_session() as session, session.get(base + path) as r:
        return r.status, await r.read()


async def build(service, etcd, postgres, redis_url: str, tmp_path: Path) -> Life:
    await flushed(redis_url)
    f4_dir = tmp_path / "f4"
    layout = [(d,) for d in KILLED] + [DOMAINS[4:]]
    node_ports = [ports.free_port() for _ in layout]
    keystore_port, front_port, backoff_port, cdn_port, cdn_metrics = (ports.free_port() for _ in range(5))
    cluster = MediaCluster(service, tmp_path / "data", etcd.endpoint, postgres=await fresh_database(postgres.endpoint),
                           redis=redis_url, env={
                               "TRENCHCOAT_ROUTER__RENDITIONS": "true",
                               "TRENCHCOAT_ROUTER__CDN_BASE_URL": f"http://127.0.0.1:{cdn_port}",
                               "TRENCHCOAT_F4__MIGRATE": "true",
                               "TRENCHCOAT_F4__WARM_AFTER_S": "86400",  # nothing ages alone: the test moves them
                               "TRENCHCOAT_F4__FREE_AFTER_S": "2",
                               **small_cell(front_port, [f"127.0.0.1:{p}" for p in node_ports],
                                            f"127.0.0.1:{keystore_port}"),
                               "TRENCHCOAT_F4__BACKOFF_ENDPOINTS": f"127.0.0.1:{backoff_port}",
                               "TRENCHCOAT_FEED__CELEBRITY_THRESHOLD": "3",
                           })
    cluster.transformer_ports = [(ports.free_port(), ports.free_port())]
    cluster.start_all(directories=1, stores=3, router=True)
    cluster.start_feed()
    cluster.start_fanout()
    nodes = {domains[0]: start_node(service, f4_dir, port, node_id=n + 1, domains=domains)
             for n, (domains, port) in enumerate(zip(layout, node_ports, strict=True))}
    start_keystore(service, await fresh_database(postgres.endpoint), keystore_port, ports.free_port())
    metrics_port = ports.free_port()
    backoff = service("f4-backoff", harness.python_module("f4.backoff"), port=backoff_port, metrics_port=metrics_port,
                      env={**cluster.env, "TRENCHCOAT_F4_BACKOFF__PORT": str(backoff_port),
                           "TRENCHCOAT_F4_BACKOFF__METRICS_PORT": str(metrics_port), "TRENCHCOAT_F4_BACKOFF__COUNT": "1",
                           "TRENCHCOAT_F4_BACKOFF__DRAIN_NOTICE_S": "0"})
    cluster.start_f4_front(front_port)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRENCHCOAT_")} | {
        "PYTHONPATH": str(harness.REPO_ROOT), "TRENCHCOAT_CLUSTER__DATA_DIR": str(tmp_path / "cdn"),
        harness.TLS_DIR_KEY: str(harness.tls_dir()),
        "TRENCHCOAT_CDN__PORT": str(cdn_port), "TRENCHCOAT_CDN__METRICS_PORT": str(cdn_metrics),
        "TRENCHCOAT_CDN__CACHE_ENDPOINTS": cluster.gateway.removeprefix("https://"),
        "TRENCHCOAT_CDN__TTL_S": "1", "TRENCHCOAT_CDN__NOT_FOUND_TTL_S": "1",
        "TRENCHCOAT_CDN__MAX_BYTES": str(64 << 20)}
    cdn = dependencies.cdn_process(tmp_path / "logs" / "cdn.log", "127.0.0.1", cdn_port, cdn_metrics, env)
    cdn.start()
    cdn.wait_ready(60)
    await eventually(lambda: writable_volumes(cluster, 2), timeout=60, what="2 writable volumes")
    return Life(cluster, cdn, nodes, backoff)


@pytest.fixture
async def life(service, etcd, postgres, redis_server, tmp_path) -> AsyncIterator[Life]:
    built = await build(service, etcd, postgres, redis_server.endpoint, tmp_path)
    try:
        yield built
    finally:
        built.cdn.stop()


async def test_a_photo_and_a_video_live_their_whole_life_across_every_tier_and_seam(life: Life):
    cluster = life.cluster
    async with cluster.clients() as c:
        await _upload_follow_and_post(c, life)
        before = await _hydrated_feeds(c, life)
        for name in ("photo", "video"):  # no transformer yet: nothing made
            [item] = [i for i in before[ALICE].items or () if i.entry == life.posts[name]]
            assert item.media.renditions_state == "pending" and not item.media.renditions
            assert (item.media.width, item.media.height) == (0, 0)  # not known until the transformer looks
        cluster.start_transformer()
        for name, media in list(life.media.items()):
            life.media[name] = await eventually(partial(_done, c, media.media_id), timeout=240,
                                                what=f"the {name}'s renditions")
        assert (life.media["photo"].width, life.media["photo"].height) == (1600, 1200)
        assert (life.media["video"].width, life.media["video"].height) == (854, 480)
        # The feed's cached facts were dropped when the renditions finished: no wait for their TTL.
        feeds = await _hydrated_feeds(c, life)
        for item in feeds[ALICE].items or ():
            assert item.media == life.media[_name_of(life, item.entry)]
        await _everything_serves(c, life, tier="hot", record=True)
        assert len(life.served) > 10  # originals, sizes, poster, playlists, segments, a resize

        volumes = await _volumes_of(c, life)
        for vid in volumes:
            await c.directory.migrate_volume(vid)
        for vid in volumes:
            await eventually(partial(_warm_and_freed, c, vid), timeout=180, what=f"volume {vid} warm, freed")
        hot_copies = {f"vol-{v}.dat" for v in volumes}
        assert not [p for p in cluster.data_dir.rglob("vol-*.dat") if p.name in hot_copies]  # every one freed
        await _forget_kept(c, life)
        await _everything_serves(c, life, tier="warm")
        assert await _hydrated_feeds(c, life) == feeds  # what feeds cached: the same URLs, which serve
        await _feeds_hydrate_afresh(c, life, feeds, cluster)

        rebuilt = await _metric(life.backoff, "trenchcoat_f4_reconstructions_total", 'outcome="rebuilt"')
        for domain in KILLED:
            life.nodes[domain].kill()
        await _forget_kept(c, life)
        await _everything_serves(c, life, tier="warm")
        assert await _metric(life.backoff, "trenchcoat_f4_reconstructions_total", 'outcome="rebuilt"') > rebuilt
        await _feeds_hydrate_afresh(c, life, feeds, cluster)

        assert await c.feed.delete_post(ALICE, life.posts["photo"].media_id)
        assert await c.media.delete(life.media["video"].media_id, owner_id=life.media["video"].owner_id)  # the pipeline's delete, not the feed's
        assert await c.feed.delete_post(CAROL, life.posts["celebrity"].media_id)
        for path in life.served:
            status, _ = await _get(cluster.gateway, path)
            assert status == 404, path
        for path in life.served:
            await eventually(partial(_status_is, life.cdn_base, path, 404), timeout=30,
                             what=f"{path} gone from the CDN once its TTL passed")
        for media in life.media.values():
            with pytest.raises(NotFound, match="was deleted"):
                await c.media.stat(media.media_id)
            with pytest.raises(NotFound, match="was deleted"):
                await c.media.read(media.media_id)
        assert [r.outcome for r in await c.media.batch_stat([m.media_id for m in life.media.values()])] == [
            "deleted"] * 3
        for user, page in (await _hydrated_feeds(c, life)).items():
            assert page.entries == [] and page.items == [] and not page.unhydrated, user
            assert (await c.feed.home(user)).entries == []  # the hydrated read took the video's entry out
        await eventually(lambda: _journals_drained(cluster), timeout=60, what="every delete journal drained")
    blocks = list((life.cluster.data_dir.parent / "f4").rglob("*.blk"))
    assert blocks
    slices = [body[len(body) // 2:len(body) // 2 + 64] for body in life.served.values() if len(body) >= 256]
    slices = [s for s in slices if len(set(s)) > 16]  # (not a run of padding, which a block may hold too)
    for block in blocks:
        data = block.read_bytes()
        assert not any(s in data for s in slices), f"plaintext of a photo in {block}"


# --- the steps ---------------------------------------------------------------------------


async def _upload_follow_and_post(c: Clients, life: Life) -> None:
    for follower, followee in ((ALICE, BOB), (BOB, ALICE), (ALICE, CAROL), (BOB, CAROL), (DAVE, CAROL)):
        assert await c.feed.follow(follower, followee)
    for name, owner, data, kind in (("photo", ALICE, photo(1600, 1200, seed=11), "image/jpeg"),
                                    ("video", BOB, samples.video(854, 480, seconds=2.0, fps=24), "video/mp4"),
                                    ("celebrity", CAROL, photo(800, 600, seed=12), "image/jpeg")):
        media = await c.media.upload(data, owner_id=owner, content_type=kind)
        life.media[name] = media
        life.posts[name] = await c.feed.post(owner, media.media_id, f"{name} by {owner}")

    async def arrived() -> bool:
        pages = {u: await c.feed.home(u) for u in (ALICE, BOB, DAVE)}
        every = sorted(life.posts.values(), reverse=True)
        return (pages[ALICE].entries == every and pages[BOB].entries == every
                and pages[DAVE].entries == [life.posts["celebrity"]])

    await eventually(arrived, timeout=60, what="every post in every follower's feed")


async def _hydrated_feeds(c: Clients, life: Life) -> dict[int, FeedPage]:
    return {u: await c.feed.home(u, hydrate=True) for u in (ALICE, BOB, DAVE)}


def _name_of(life: Life, entry: FeedEntry) -> str:
    return next(name for name, e in life.posts.items() if e == entry)


async def _done(c: Clients, media_id: int) -> Media | None:
    media = await c.media.stat(media_id)
    assert media.renditions_state != "failed", media.renditions_error
    return media if media.renditions_state == "done" else None


async def _urls(c: Clients, life: Life) -> list[str]:
    """Every URL of every media: the original, the listed renditions, a resize of each photo,
    and a video's whole ladder (its master names the rung playlists, which name the segments)."""
    out = []
    for name, media in life.media.items():
        out.append(media.url)
        if name != "video":
            out.append(media.url + RESIZE)
        for r in media.renditions:
            out.append(r.url)
            if keys.is_master(r.alternate_key):
                _, body = await _get(life.cdn_base, _path(r.url))
                for rung in (line for line in body.decode().splitlines() if line.startswith("http")):
                    out.append(rung)
                    _, playlist = await _get(life.cdn_base, _path(rung))
                    out += [line for line in playlist.decode().splitlines() if line.startswith("http")]
    return out


async def _everything_serves(c: Clients, life: Life, *, tier: str, record: bool = False) -> None:
    """By media_id: Stat, BatchStat and Read describe each media as it was, in ``tier``, with
    the same URLs, and read back its bytes; by URL: each serves the same bytes from the
    caches and through the CDN."""
    ids = [m.media_id for m in life.media.values()]
    batch = await c.media.batch_stat(ids)
    for (name, media), result in zip(life.media.items(), batch, strict=True):
        assert result.outcome == "found" and result.media is not None, (name, result)
        stat = await c.media.stat(media.media_id)
        assert stat == result.media
        assert stat.tier == tier and stat.url == media.url and stat.renditions == media.renditions, name
        read, data = await c.media.read(media.media_id)
        assert read.tier == tier and len(data) == media.size_bytes
        if record:
            life.served[_path(media.url)] = data
        assert data == life.served[_path(media.url)], name
        for r in media.renditions:
            _, rendition = await c.media.read(media.media_id, alternate_key=r.alternate_key)
            if record:
                life.served[_path(r.url)] = rendition
            assert rendition == life.served[_path(r.url)] and len(rendition) == r.size_bytes, r.url
    for url in await _urls(c, life):
        path = _path(url)
        status, body = await _get(life.cluster.gateway, path)
        assert status == 200, (path, status, body[:200])
        if record:
            life.served.setdefault(path, body)
        assert body == life.served[path], path
        status, body = await _get(life.cdn_base, path)
        assert (status, body) == (200, life.served[path]), path
    photo_bytes = life.served[_path(life.media["photo"].url + RESIZE)]
    assert Image.open(io.BytesIO(photo_bytes)).size == (640, 480)


async def _feeds_hydrate_afresh(c: Clients, life: Life, before: dict[int, FeedPage], cluster: MediaCluster) -> None:
    """Feeds hydrate warm media through BatchStat: the feed's cached facts are dropped first
    (a volume's move does not drop them; they keep serving the same URLs until
    feed.metadata_ttl_s), then every page holds the same entries, each with the facts Stat
    gives now: tier warm, the URLs the media had while hot."""
    import redis.asyncio as aioredis

    r = aioredis.Redis.from_url(cluster.redis)
    try:
        for media in life.media.values():
            await media_facts.drop(r, media.media_id)
    finally:
        await r.aclose()
    for user, page in (await _hydrated_feeds(c, life)).items():
        assert page.entries == before[user].entries and not page.unhydrated, user
        for item in page.items or ():
            fresh = await c.media.stat(item.entry.media_id)
            assert item.media == fresh and fresh.tier == "warm", (user, item.entry)
            assert fresh.url == life.media[_name_of(life, item.entry)].url


async def _forget_kept(c: Clients, life: Life) -> None:
    """Drops what the caches keep of these media (a lease's kept answer lasts
    cache.lease_period_s): the next reads go to where the bytes now are."""
    for media in life.media.values():
        await c.cache.invalidate(media.media_id)


async def _volumes_of(c: Clients, life: Life) -> list[int]:
    """Every volume holding a needle of these media: their originals and every rendition."""
    vids = set()
    for media in life.media.values():
        everything, _ = await c.media.read(media.media_id, internal=True)
        for url in itertools.chain([media.url], (r.url for r in everything.renditions)):
            vids.add(urls.parse_path(_path(url).split("?")[0]).needle.logical_volume)
    return sorted(vids)


async def _warm_and_freed(c: Clients, vid: int) -> bool:
    volume = await c.directory.locate(vid)
    return volume.state == "warm" and not volume.replicas and bool(volume.freed_machines)


async def _status_is(base: str, path: str, status: int) -> bool:
    return (await _get(base, path))[0] == status


async def _metric(proc: harness.ServiceProcess, name: str, labels: str) -> float:
    async with harness.https_session() as session, session.get(proc.metrics_url) as r:
        text = await r.text()
    return sum(float(v) for v in re.findall(rf"^{name}{{[^}}]*{labels}[^}}]*}} (\S+)", text, re.MULTILINE))


async def _journals_drained(cluster: MediaCluster) -> bool:
    conn = await asyncpg.connect(cluster.postgres)
    try:
        deletes = await conn.fetchval("SELECT count(*) FROM delete_journal")
        intents = await conn.fetchval("SELECT count(*) FROM feed_intents WHERE finished_at IS NULL")
        unfinished = await conn.fetchval("SELECT count(*) FROM feed_posts WHERE fanned_out_at IS NULL")
    finally:
        await conn.close()
    assert cluster.router is not None
    async with harness.https_session() as session, session.get(cluster.router.metrics_url) as r:
        pending = "\ntrenchcoat_router_deletes_pending 0.0" in await r.text()
    return deletes == intents == unfinished == 0 and pending

