"""Benchmark of the transformer: ``python -m bench.transform [--quick] [--json]``.

In this process, on a generated 12 MP JPEG (4000x3000, detail everywhere):

- draft_vs_full_decode     320 px thumbnails per second made with a JPEG draft (the decoder
                           scales by 1/8 while decoding) over a full decode then a resize of
                           the same source, rounds alternated (aim >= 3)
- renditions_per_s         renditions per second of the default image set (150 px square,
                           320, 640, 1080 px wide) made by ``transformer.images.render``,
                           one decode per source, one thread

And on a real cluster (private etcd, PostgreSQL and Redis; a directory, three stores, a
cache, a router enqueueing rendition jobs, two transformer workers; each its own process,
all sharing this machine's two cores with the client):

- rendition_lag_p50_s      seconds from an upload's acknowledgement to all its image
  rendition_lag_p99_s      renditions durable (``Stat`` says done), uploads of a 2 MP photo
                           at a steady UPLOADS_PER_S, polled every 20 ms
- uploads_per_s            the steady rate offered (for context)

- video_realtime_factor_720p  seconds of a generated 1280x720 24 fps H.264/AAC video
                              transcoded into its 720p rung (``transformer.video.encode_rung``,
                              x264 preset veryfast, 2 s segments) per second of wall time, in
                              this process (FFmpeg's own threads on both cores)
"""

from __future__ import annotations

import asyncio
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

from bench import common
from bench.store import start
from bench.upload import cluster_env, start_cluster
from transformer import images, video
from transformer.images import ImageSpec
from trenchcoat import rpc
from trenchcoat.clients.media import MediaClient
from trenchcoat.errors import TrenchcoatError
from trenchcoat.ops import ports, processes, samples

DEFAULT_SET = (ImageSpec(1, 150, square=True), ImageSpec(2, 320), ImageSpec(3, 640), ImageSpec(4, 1080))
THUMB = (ImageSpec(2, 320),)
UPLOADS_PER_S = 4.0
POLL_S = 0.02


def generated_jpeg(width: int, height: int, seed: int = 0) -> bytes:
    """A JPEG with detail everywhere (noise at 1/4 scale, enlarged), as a camera's is."""
    noise = Image.effect_noise((width // 4, height // 4), 50 + seed).convert("RGB")
    image = noise.resize((width, height), Image.Resampling.BILINEAR)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


def full_decode_thumbnail(data: bytes) -> bytes:
    """The baseline: decode every pixel, then resize to 320 px wide, encode."""
    image = Image.open(io.BytesIO(data))
    image.load()
    small = image.convert("RGB").resize((320, round(image.height * 320 / image.width)), Image.Resampling.LANCZOS,
                                        reducing_gap=3.0)
    out = io.BytesIO()
    small.save(out, "JPEG", quality=85, optimize=True)
    return out.getvalue()


def rate(call, seconds: float) -> float:
    """Calls per second of ``call`` run back to back for about ``seconds``."""
    n, began = 0, time.perf_counter()
    while True:
        call()
        n += 1
        took = time.perf_counter() - began
        if took >= seconds:
            return n / took


def decode_figures(seconds: float, rounds: int) -> dict[str, float]:
    source = generated_jpeg(4000, 3000)
    draft_rates, full_rates = [], []
    for _ in range(rounds):  # alternated, so a busy neighbour slows both alike
        draft_rates.append(rate(lambda: images.render(source, THUMB, max_pixels=50_000_000, quality=85), seconds))
        full_rates.append(rate(lambda: full_decode_thumbnail(source), seconds))
    draft, full = statistics.median(draft_rates), statistics.median(full_rates)
    sets = rate(lambda: images.render(source, DEFAULT_SET, max_pixels=50_000_000, quality=85), seconds)
    return {"draft_thumbnails_per_s": draft, "full_decode_thumbnails_per_s": full,
            "draft_vs_full_decode": draft / full, "renditions_per_s": sets * len(DEFAULT_SET),
            "source_bytes": float(len(source))}


def video_figures(seconds: float) -> dict[str, float]:
    source = samples.video(1280, 720, seconds=seconds, fps=24)
    probed = video.probe(source, max_s=600, max_pixels=50_000_000)
    rung = next(r for r in video.ladder(probed, (240, 480, 720, 1080)) if r.height == 720)
    with tempfile.TemporaryDirectory(prefix="bench-video-") as work:
        encoded = video.encode_rung(source, probed, rung, Path(work), segment_s=2.0, preset="veryfast")
    return {"video_realtime_factor_720p": probed.duration_s / encoded.encode_s, "video_seconds": probed.duration_s}


async def lag_figures(count: int) -> dict[str, float]:
    with common.private_dependencies_with_redis("bench-transform-") as (tmp, etcd, dsn, redis_url):
        env = cluster_env(tmp, "transform", etcd, dsn, 3) | {
            "TRENCHCOAT_REDIS__URL": redis_url, "TRENCHCOAT_ROUTER__RENDITIONS": "true",
            "TRENCHCOAT_TRANSFORMER__COUNT": "1"}
        cluster = start_cluster(tmp, env)
        workers: list[processes.ManagedProcess] = []
        try:
            for i in range(2):
                port, mport = ports.free_port(), ports.free_port()
                workers.append(start([sys.executable, "-m", "transformer"], tmp / f"transformer-{i}.log", port, {
                    **env, "TRENCHCOAT_TRANSFORMER__PORT": str(port), "TRENCHCOAT_TRANSFORMER__METRICS_PORT": str(mport),
                    "TRENCHCOAT_ROUTER__ENDPOINTS": cluster.router}))
            sources = [generated_jpeg(1600, 1200, seed=s) for s in range(8)]
            async with rpc.ChannelPool() as pool:
                media = MediaClient(pool, cluster.router, timeout_s=120)
                for _ in range(100):  # the first volumes may still be growing
                    try:
                        await media.upload(b"warm-up", owner_id=1, content_type="application/octet-stream")
                        break
                    except TrenchcoatError:
                        await asyncio.sleep(0.2)
                lags = await asyncio.gather(*(one_lag(media, sources[i % len(sources)], i / UPLOADS_PER_S)
                                              for i in range(count)))
        finally:
            for p in reversed(workers):
                p.stop()
            cluster.stop()
    cuts = statistics.quantiles(lags, n=100)
    return {"rendition_lag_p50_s": cuts[49], "rendition_lag_p99_s": cuts[98], "uploads_per_s": UPLOADS_PER_S}


async def one_lag(media: MediaClient, source: bytes, after_s: float) -> float:
    """Seconds from the upload's acknowledgement to its renditions done."""
    await asyncio.sleep(after_s)
    uploaded = await media.upload(source, owner_id=2, content_type="image/jpeg")
    acknowledged = time.perf_counter()
    while True:
        facts = await media.stat(uploaded.media_id)
        if facts.renditions_state == "done":
            return time.perf_counter() - acknowledged
        if facts.renditions_state == "failed":
            raise RuntimeError(f"renditions of {uploaded.media_id} failed: {facts.renditions_error}")
        await asyncio.sleep(POLL_S)


async def main() -> int:
    args = common.arguments(__doc__)
    figures = decode_figures(seconds=1.0 if args.quick else 3.0, rounds=3)
    figures |= video_figures(seconds=6.0 if args.quick else 30.0)
    figures |= await lag_figures(count=40 if args.quick else 240)
    common.report(figures, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
