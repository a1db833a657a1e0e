"""``trenchcoat demo`` (what ``make demo`` runs): the media pipeline end to end on a fresh
local cluster, narrated.

Uploads generated photos for a few users, prints their URLs, fetches each through the
CDN (nginx) twice and through the gateway directly twice, reads the hit counts back from
``/metrics`` and the CDN's X-Cache-Status, kills one store with SIGKILL and shows its
photos still served from the other replicas, deletes a photo and shows the 404, then
stops everything and checks nothing is left running.
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

import grpc
from PIL import Image, ImageDraw

from trenchcoat import urls
from trenchcoat.config import Config
from trenchcoat.launcher import Cluster
from trenchcoat.v1 import media_pb2, router_pb2, router_pb2_grpc

USERS = (7, 42, 1001)
PHOTOS_PER_USER = 3


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
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


def metric(url: str, name: str) -> float:
    text = urllib.request.urlopen(url, timeout=5).read().decode()
    return sum(float(v) for v in re.findall(rf"^{re.escape(name)}(?:{{[^}}]*}})? (\S+)", text, re.M))


async def upload_all(router: str) -> list[tuple[int, router_pb2.UploadResponse, bytes]]:
    done = []
    async with grpc.aio.insecure_channel(router) as channel:
        stub = router_pb2_grpc.MediaServiceStub(channel)
        for user in USERS:
            for n in range(PHOTOS_PER_USER):
                data = photo(user, n)
                reply = await stub.Upload(iter([
                    router_pb2.UploadRequest(header=router_pb2.UploadHeader(
                        owner_id=user, content_type="image/jpeg", size_bytes=len(data))),
                    router_pb2.UploadRequest(chunk=data)]), timeout=30)
                done.append((user, reply, data))
    return done


async def delete(router: str, media_id: int) -> bool:
    async with grpc.aio.insecure_channel(router) as channel:
        reply = await router_pb2_grpc.MediaServiceStub(channel).Delete(
            router_pb2.DeleteRequest(ref=media_pb2.MediaRef(media_id=media_id)), timeout=10)
        return reply.deleted


def run(config: Config, config_path: str | None, say: Callable[[str], None]) -> bool:
    """The demo; True when every step showed what it should."""
    cluster = Cluster(config, config_path=config_path)
    ok = True

    def check(condition: bool, what: str) -> None:
        nonlocal ok
        say(("   ok  " if condition else "!! FAILED ") + what)
        ok = ok and condition

    host = config.cluster.host
    router = f"{host}:{config.router.port}"
    gateway = f"http://{host}:{config.router.http_port}"
    cache_metrics = f"http://{host}:{config.cache.metrics_port}/metrics"
    say(f"== starting a local cluster in {cluster.data_dir}")
    try:
        cluster.start()
        say("== uploading generated photos (every replica fsynced before each answer)")
        uploads = asyncio.run(upload_all(router))
        for user, reply, _ in uploads:
            say(f"   user {user:>5}  media_id {reply.media.ref.media_id}  {reply.media.url}")

        say("== reading every photo through the CDN twice (nginx adds X-Trenchcoat-Via-CDN)")
        admitted_before = metric(cache_metrics, "trenchcoat_cache_admissions_total")
        statuses = []
        for _, reply, data in uploads:
            for _ in range(2):
                status, body, headers = fetch(reply.media.url)
                statuses.append(headers.get("X-Cache-Status", "?"))
                check(status == 200 and body == data, f"CDN {reply.media.url} -> {status}, "
                      f"{headers.get('X-Cache-Status')}") if len(statuses) <= 2 else None
                ok = ok and status == 200 and body == data
        cdn_hits = statuses.count("HIT")
        check(cdn_hits == len(uploads), f"CDN hit ratio {cdn_hits}/{len(statuses)} (second read of each is a HIT)")
        check(metric(cache_metrics, "trenchcoat_cache_admissions_total") == admitted_before,
              "the cache admitted none of the CDN's reads (the CDN keeps those)")

        say("== reading every photo straight from the gateway twice (user-direct: the cache admits)")
        hits_before = metric(cache_metrics, "trenchcoat_cache_hits_total")
        for _, reply, data in uploads:
            path = "/" + reply.media.url.split("/", 3)[3]
            for _ in range(2):
                status, body, _ = fetch(gateway + path)
                ok = ok and status == 200 and body == data
        hits = metric(cache_metrics, "trenchcoat_cache_hits_total") - hits_before
        misses = metric(cache_metrics, "trenchcoat_cache_misses_total")
        check(hits == len(uploads), f"cache hits {hits:.0f} of {2 * len(uploads)} direct reads; "
              f"cache hit ratio overall {metric(cache_metrics, 'trenchcoat_cache_hits_total'):.0f}/"
              f"{metric(cache_metrics, 'trenchcoat_cache_hits_total') + misses:.0f}")

        _, victim, victim_data = asyncio.run(upload_all(router))[-1]  # not read yet: not cached
        machine = urls.parse_path("/" + victim.media.url.split("/", 3)[3]).machine_id
        store = next(p for p in cluster.processes if p.name == f"store-{machine}")
        say(f"== kill -9 store-{machine} (named in {victim.media.url})")
        os.kill(store.pid, signal.SIGKILL)  # type: ignore[arg-type]
        store.popen.wait(10)  # type: ignore[union-attr]
        failovers = metric(cache_metrics, "trenchcoat_cache_replica_failovers_total")
        status, body, _ = fetch(gateway + "/" + victim.media.url.split("/", 3)[3])
        check(status == 200 and body == victim_data and
              metric(cache_metrics, "trenchcoat_cache_replica_failovers_total") > failovers,
              f"its photo is still served ({status}): the cache failed over to another replica")
        fresh = asyncio.run(upload_all(router))
        served = 0
        for _, reply, data in fresh:
            path = "/" + reply.media.url.split("/", 3)[3]
            status, body, _ = fetch(gateway + path, {"X-Trenchcoat-Via-CDN": "1"})
            served += status == 200 and body == data
        check(served == len(fresh), f"{served}/{len(fresh)} new uploads stored and read back with a store down")

        say("== deleting one photo")
        _, gone, _ = uploads[0]
        check(asyncio.run(delete(router, gone.media.ref.media_id)), f"deleted {gone.media.ref.media_id}")
        status, _, _ = fetch(gateway + "/" + gone.media.url.split("/", 3)[3])
        check(status == 404, f"its URL now answers {status} at the gateway (the CDN forgets it within cdn.ttl_s)")
    finally:
        say("== stopping")
        groups = {p.pid for p in cluster.processes if p.pid is not None}
        cluster.stop()
    from trenchcoat import procs

    left = procs.group_members(groups)
    check(not left, "stopped; no process left running" if not left else f"processes left running: {left}")
    return ok
