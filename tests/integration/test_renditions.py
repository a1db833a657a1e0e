"""Renditions over real processes: PostgreSQL, Redis, 2 directories, 6 stores, a cache, a
router enqueueing jobs, and transformer workers. Sizes appear durable and served by their
own URLs; jobs are idempotent (submitted twice, partly done before, run by a worker that
was killed); a source that can never render is dead-lettered at once with the decoder's
reason; a router frozen for longer than max_attempts lasts is outlasted (its failures are
transient) unless it outlasts the retry budget, which the dead letter names; a Redis that
lost every job is swept. Tests that
only upload and read share one cluster (each with media of its own, counting deltas);
those that kill or freeze a process, empty Redis or need other settings have their own."""

from __future__ import annotations

import asyncio
import functools
import io
import itertools
import os
import re
import subprocess
import sys

import av
import pytest
from PIL import Image

from tests import harness
from tests.cluster import Clients, eventually, rendition_cluster, shared
from transformer import images
from transformer.images import ImageSpec
from trenchcoat import rendition_keys as keys
from trenchcoat import urls
from trenchcoat.clients.media import Media
from trenchcoat.errors import InvalidArgument, NotFound
from trenchcoat.ops import samples
from trenchcoat.rendition_jobs import STREAMS

pytestmark = pytest.mark.integration

SPECS = (ImageSpec(1, 150, square=True), ImageSpec(2, 320), ImageSpec(3, 640), ImageSpec(4, 1080))
"""transformer.image_renditions' default."""


def photo(width: int = 1600, height: int = 1200, seed: int = 0) -> bytes:
    """A JPEG with detail in it (so sizes differ in bytes), different for each seed."""
    image = Image.effect_noise((width // 8, height // 8), 60 + seed % 40).convert("RGB").resize((width, height))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


@pytest.fixture(scope="module")
def cluster(module_service, etcd, postgres, redis_cluster, tmp_path_factory):
    """The module's cluster, its jobs on a Redis Cluster of three primaries (as `up` runs it)."""
    return shared(rendition_cluster(module_service, etcd, postgres, redis_cluster.endpoint,
                                    tmp_path_factory.mktemp("renditions"), transformers=1, redis_cluster=True))


async def finished(c: Clients, media_id: int) -> Media | None:
    media = await c.media.stat(media_id)
    return media if media.renditions_state in ("done", "failed") else None


async def jobs_settled(c: Clients, media_id: int) -> bool:
    """Every job of the media done or dead in the transformer's own view (it records the
    renditions finished at the router first, then acknowledges and counts the job): what a
    test on the shared cluster waits for before it ends, so the next finds no job of its
    under way."""
    jobs = await c.transformer.jobs(media_id)
    return bool(jobs) and all(j.state in ("done", "dead") for j in jobs)


async def fetch(cluster, url: str) -> tuple[int, str, bytes]:
    """GET a photo URL at the cluster's cache gateway (its path; the CDN is not running)."""
    path = "/" + url.split("/", 3)[3]
    async with harness.https_session() as session, session.get(cluster.gateway + path) as r:
        return r.status, r.headers.get("Content-Type", ""), await r.read()


async def metric(proc, name: str) -> float:
    async with harness.https_session() as session, session.get(proc.metrics_url) as r:
        text = await r.text()
    return sum(float(v) for v in re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)", text, re.MULTILINE))


async def test_an_upload_gets_every_size_durable_served_by_its_own_url(cluster):
    source = photo()
    want = {r.alternate_key: r for r in images.render(source, SPECS, max_pixels=50_000_000, quality=85)}
    workers = [p for p in cluster.transformers if p is not None]
    counted = ('trenchcoat_transformer_jobs_total{kind="image",outcome="ok"}',
               "trenchcoat_transformer_rendition_lag_seconds_count",
               'trenchcoat_transformer_renditions_total{kind="image",outcome="new"}')
    before = {name: sum([await metric(p, name) for p in workers]) for name in counted}
    dead_before = await metric(workers[0], "trenchcoat_transformer_dead_letters")
    async with cluster.clients() as c:
        media = await c.media.upload(source, owner_id=7, content_type="image/jpeg")
        assert media.renditions_state == "pending" and media.renditions == ()
        done = await eventually(lambda: finished(c, media.media_id), timeout=90, what="the renditions finished")
        assert done.renditions_state == "done"
        assert [(r.alternate_key, r.width, r.height) for r in done.renditions] == [
            (1, 150, 150), (2, 320, 240), (3, 640, 480), (4, 1080, 810)]
        for r in done.renditions:
            # Byte-identical to rendering the source here: a job is a pure function of it.
            assert (r.content_type, r.size_bytes) == ("image/jpeg", len(want[r.alternate_key].data))
            path = urls.parse_path("/" + r.url.split("/", 3)[3])
            assert (path.needle.key, path.needle.alternate_key) == (media.media_id, r.alternate_key)
            assert await fetch(cluster, r.url) == (200, "image/jpeg", want[r.alternate_key].data)
            _, data = await c.media.read(media.media_id, alternate_key=r.alternate_key)
            assert data == want[r.alternate_key].data
        await eventually(lambda: jobs_settled(c, media.media_id), what="the job acknowledged")
        [job] = await c.transformer.jobs(media.media_id)
        assert (job.state, job.kind, job.job_id) == ("done", "image", f"{media.media_id}:image:v1")
        # What an operator watches: jobs, lag from upload to durable, queue and dead-letter depth.
        after = {name: sum([await metric(p, name) for p in workers]) for name in counted}
        assert [after[name] - before[name] for name in counted] == [1, 1, 4]
        for name in ("trenchcoat_transformer_queue_depth", "trenchcoat_transformer_jobs_in_flight"):
            assert await metric(workers[0], name) == 0, name
        assert await metric(workers[0], "trenchcoat_transformer_dead_letters") == dead_before
        # The job's read of the source was the pipeline's own: served, not kept by the cache.
        assert await metric(cluster.caches[0], 'trenchcoat_cache_not_admitted_total{reason="internal"}') >= 1
        with pytest.raises(NotFound, match="has no rendition 9"):
            await c.media.read(media.media_id, alternate_key=9)

        # A delete takes every rendition with it, at its own URL too.
        assert await c.media.delete(media.media_id, owner_id=media.owner_id)
        for r in done.renditions:
            status, _, _ = await fetch(cluster, r.url)
            assert status == 404, r.url


async def test_a_job_submitted_again_partly_done_before_and_its_worker_killed_yields_one_of_each(
        service, etcd, postgres, private_redis, tmp_path):
    redis_server = private_redis  # (the session's serves the module's shared cluster)
    cluster = await rendition_cluster(service, etcd, postgres, redis_server.endpoint, tmp_path, transformers=0,
                                      env={"TRENCHCOAT_TRANSFORMER__CLAIM_IDLE_S": "2"})
    source = photo(seed=1)
    want = {r.alternate_key: r for r in images.render(source, SPECS, max_pixels=50_000_000, quality=85)}
    async with cluster.clients() as c:
        media = await c.media.upload(source, owner_id=8, content_type="image/jpeg")
        # What a first run stored before it died: one size, the same bytes any run makes.
        first, created = await c.media.put_rendition(media.media_id, 3, content_type="image/jpeg", width=640,
                                                     height=480, data=want[3].data)
        assert created
        # Copies of it stored again (runs that did not see the first): the first is kept and
        # still served, whether a copy landed on its volume (the same needle, written again)
        # or on another (a stray, flagged there).
        for _ in range(4):
            again, created = await c.media.put_rendition(media.media_id, 3, content_type="image/jpeg", width=640,
                                                         height=480, data=want[3].data)
            assert not created and again == first
        assert await fetch(cluster, first.url) == (200, "image/jpeg", want[3].data)
        # A worker takes the job and is killed -9 mid-job (blocked reading the source from a
        # frozen router, so it is surely mid-job): its claim lapses after claim_idle_s.
        await eventually(lambda: job_in_stream(redis_server.endpoint, media.media_id),
                         what="the job enqueued by the router")
        assert cluster.router is not None
        with cluster.router.frozen():
            doomed = cluster.start_transformer()
            # Taken: pending for the doomed worker, which holds it (its claim kept fresh) through
            # every attempt and every pause between them, so the check cannot miss the moment.
            await eventually(lambda: pending_for_a_worker(redis_server.endpoint),
                             what="the job taken by the doomed worker")
            doomed.kill()
        survivor = cluster.start_transformer()
        [job] = await c.transformer.submit(media.media_id, "image/jpeg")  # submitted again: no second job
        assert job.state in ("queued", "running")
        done = await eventually(lambda: finished(c, media.media_id), timeout=90, what="the renditions finished")
        assert [r.alternate_key for r in done.renditions] == [1, 2, 3, 4]
        assert next(r for r in done.renditions if r.alternate_key == 3).url == first.url
        for r in done.renditions:
            assert await fetch(cluster, r.url) == (200, "image/jpeg", want[r.alternate_key].data)
        assert await metric(survivor, 'trenchcoat_transformer_jobs_total{kind="image",outcome="ok"}') == 1
        # Its read of the source listed the size stored before: it stored only the others.
        assert await metric(survivor, 'trenchcoat_transformer_renditions_total{kind="image",outcome="new"}') == 3
        assert await metric(survivor, 'trenchcoat_transformer_renditions_total{kind="image",outcome="kept"}') == 0
        # The copy nobody got a URL for is flagged on its replicas (the journal empties).
        await eventually(lambda: journal_empty(cluster), what="the stray copy's delete carried out")


async def jobs_command(cluster, *args: str) -> subprocess.CompletedProcess[str]:
    """``trenchcoat jobs ARGS`` against the cluster's first transformer, stdout a pipe."""
    worker = cluster.transformers[0]
    return await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "trenchcoat", "jobs", *args], env={
        **os.environ, **cluster.env, "PYTHONPATH": str(harness.REPO_ROOT),
        "TRENCHCOAT_TRANSFORMER__PORT": worker.address.rsplit(":", 1)[1]},
        capture_output=True, text=True, timeout=60, check=False)


async def job_state(redis_url: str, media_id: int, state: str) -> bool:
    """Whether the job's state in Redis is ``state`` (read there, not through a worker)."""
    import redis.asyncio as aioredis

    r = aioredis.Redis.from_url(redis_url)
    try:
        return await r.hget(f"transformer:job:{media_id}:image:v1", "state") == state.encode()
    finally:
        await r.aclose()


async def pending_for_a_worker(redis_url: str) -> bool:
    """Whether a worker holds a rendition job (one entry pending in the consumer group)."""
    import redis.asyncio as aioredis

    r = aioredis.Redis.from_url(redis_url)
    try:
        summary = await r.xpending(STREAMS.stream, STREAMS.group)
    except aioredis.ResponseError as exc:
        if "NOGROUP" in str(exc):
            return False  # no worker has made the group yet, let alone taken the job
        raise
    finally:
        await r.aclose()
    return int(summary["pending"]) >= 1


async def job_in_stream(redis_url: str, media_id: int) -> bool:
    """Whether the job's entry is in the rendition stream, for a worker to take (the router
    records the job's state before it appends the entry: a state of "queued" alone does not
    say the entry is there yet)."""
    import redis.asyncio as aioredis

    r = aioredis.Redis.from_url(redis_url)
    try:
        entries: list[tuple[bytes, dict[bytes, bytes]]] = await r.xrange("transformer:{jobs}")  # type: ignore[assignment]
        return any(fields.get(b"media_id") == str(media_id).encode() for _, fields in entries)
    finally:
        await r.aclose()


async def journal_empty(cluster) -> bool:
    import asyncpg

    conn = await asyncpg.connect(cluster.postgres)
    try:
        return await conn.fetchval("SELECT count(*) FROM delete_journal") == 0
    finally:
        await conn.close()


async def test_a_corrupt_jpeg_is_dead_lettered_with_the_decoders_reason_and_no_retry(cluster):
    proc = cluster.transformers[0]
    retried = 'trenchcoat_transformer_jobs_total{kind="image",outcome="retried"}'
    retried_before = await metric(proc, retried)
    async with cluster.clients() as c:
        _, depth_before = await c.transformer.dead_letters()
        broken = photo(seed=2)[:3000]  # the header parses; the pixels stop short
        media = await c.media.upload(broken, owner_id=9, content_type="image/jpeg")
        done = await eventually(lambda: finished(c, media.media_id), timeout=90, what="the job to fail for good")
        assert done.renditions_state == "failed" and "cannot be decoded" in done.renditions_error
        letters, depth = await c.transformer.dead_letters()
        [letter] = [x for x in letters if x.job_id == f"{media.media_id}:image:v1"]
        assert depth == depth_before + 1 and letter.state == "dead"
        assert letter.dead_reason.startswith("cannot succeed: the source image cannot be decoded")
        assert len(letter.errors) == 1  # one attempt: no retry spent on what cannot succeed
        [job] = await c.transformer.jobs(media.media_id)
        assert job.state == "dead"
        out = await jobs_command(cluster)
        assert out.returncode == 0, out.stderr
        assert re.search(rf"\d+ queued \(\d+ running\), {depth} dead letters", out.stdout), out.stdout
        assert f"dead  {letter.job_id}  after 1 attempt(s): cannot succeed: the source image cannot be decoded" \
            in out.stdout
        out = await jobs_command(cluster, str(media.media_id))
        assert f"{letter.job_id}  dead  attempts 1  cannot succeed" in out.stdout
        assert await metric(proc, retried) == retried_before  # no retry spent on it

        # Retried by an operator: it runs once more, and dies again with the same reason.
        out = await jobs_command(cluster, "--retry", letter.job_id)
        assert out.returncode == 0 and f"job {letter.job_id} is queued again" in out.stdout, out

        async def dead_again():
            letters, _ = await c.transformer.dead_letters()
            mine = [x for x in letters if x.job_id == letter.job_id]
            return mine if mine and len(mine[0].errors) == 2 else None

        [letter] = await eventually(dead_again, timeout=60, what="the retried job dead again")
        assert letter.errors[0] == letter.errors[1]
        with pytest.raises(NotFound, match="not in the dead-letter stream"):
            await c.transformer.retry(f"{media.media_id + 1}:image:v1")
        with pytest.raises(InvalidArgument, match="is not a job id"):
            await c.transformer.retry("banana")
        with pytest.raises(InvalidArgument, match="gets no renditions"):
            await c.transformer.submit(media.media_id, "application/octet-stream")


MAX_ATTEMPTS = 2
"""transformer.max_attempts of the frozen-router test: a frozen router fails a job far more often."""


async def dead_letter_of(c: Clients, media_id: int):
    letters, _ = await c.transformer.dead_letters()
    return next((x for x in letters if x.job_id == f"{media_id}:image:v1"), None)


async def test_a_frozen_router_fails_a_job_more_often_than_max_attempts_and_it_succeeds_within_the_retry_budget(
        service, etcd, postgres, private_redis, tmp_path):
    redis_server = private_redis  # (the session's serves the module's shared cluster)
    cluster = await rendition_cluster(service, etcd, postgres, redis_server.endpoint, tmp_path, transformers=0,
                                      env={"TRENCHCOAT_TRANSFORMER__CALL_TIMEOUT_S": "1",
                                           "TRENCHCOAT_TRANSFORMER__MAX_ATTEMPTS": str(MAX_ATTEMPTS)})
    async with cluster.clients() as c:
        media = await c.media.upload(photo(400, 300, seed=3), owner_id=10, content_type="image/jpeg")
        # In the stream, not only recorded as queued: the router writes the state first, and a
        # router frozen between the two would leave no entry for the worker to fail on.
        await eventually(lambda: job_in_stream(redis_server.endpoint, media.media_id),
                         what="the job enqueued by the router")
        assert await job_state(redis_server.endpoint, media.media_id, "queued")
        assert cluster.router is not None
        # The worker starts only once the router is frozen: it cannot have finished the job
        # before, and cannot read the source now. Each attempt fails within a second (over
        # mutual TLS the handshake goes unanswered; else the call's deadline passes): a
        # transient failure, retried with backoff within the retry budget (600 s), however
        # many times over max_attempts the router stays frozen for.
        with cluster.router.frozen():
            worker = cluster.start_transformer()

            async def failed_often():
                jobs = await c.transformer.jobs(media.media_id)
                return jobs[0] if jobs and jobs[0].attempts > 2 * MAX_ATTEMPTS else None

            job = await eventually(failed_often, timeout=120, what=f"over {2 * MAX_ATTEMPTS} failed attempts")
            assert job.state in ("queued", "running") and "router" in job.last_error
        done = await eventually(lambda: finished(c, media.media_id), timeout=90, what="the retried job done")
        assert done.renditions_state == "done" and [r.alternate_key for r in done.renditions] == [1, 2]
        await eventually(lambda: jobs_settled(c, media.media_id), what="the job acknowledged")
        [job] = await c.transformer.jobs(media.media_id)
        assert job.state == "done" and await dead_letter_of(c, media.media_id) is None
        transient = 'trenchcoat_transformer_failures_total{kind="image",reason="transient"}'
        assert await metric(worker, transient) > 2 * MAX_ATTEMPTS
        assert await metric(worker, 'trenchcoat_transformer_jobs_total{kind="image",outcome="retried"}') > 2 * MAX_ATTEMPTS

        # A worker with a retry budget of 1 s: a router frozen longer dead-letters the job, and
        # the dead letter and the job's state say the budget ran out.
        worker.stop()
        second = await c.media.upload(photo(400, 300, seed=5), owner_id=10, content_type="image/jpeg")
        await eventually(lambda: job_in_stream(redis_server.endpoint, second.media_id),
                         what="the second job enqueued by the router")
        with cluster.router.frozen():
            cluster.start_transformer(TRENCHCOAT_TRANSFORMER__RETRY_BUDGET_S="1")
            letter = await eventually(lambda: dead_letter_of(c, second.media_id), timeout=120,
                                      what="the second job dead-lettered")
            assert letter.dead_reason.startswith("retry budget exhausted: failing for ")
            assert "past the 1 s budget" in letter.dead_reason and "router" in letter.dead_reason
            assert letter.attempts == len(letter.errors) >= 2

            async def recorded_dead():
                [job] = await c.transformer.jobs(second.media_id)
                return job if job.state == "dead" else None

            job = await eventually(recorded_dead, what="the second job's state dead")
            assert job.dead_reason == letter.dead_reason


async def test_jobs_redis_lost_are_swept_and_every_rendition_made(service, etcd, postgres, private_redis, tmp_path):
    redis = private_redis  # this test's own: it is restarted empty
    cluster = await rendition_cluster(service, etcd, postgres, redis.endpoint, tmp_path, transformers=0,
                                      env={"TRENCHCOAT_ROUTER__RENDITIONS_SWEEP_AFTER_S": "2",
                                           "TRENCHCOAT_ROUTER__RENDITIONS_SWEEP_INTERVAL_S": "0.5"})
    async with cluster.clients() as c:
        uploaded = [await c.media.upload(photo(400, 300, seed=s), owner_id=11, content_type="image/jpeg")
                    for s in range(4)]
        redis.restart()  # it keeps nothing on disk: every job and job state is gone
        cluster.start_transformer()
        for media in uploaded:
            done = await eventually(functools.partial(finished, c, media.media_id), timeout=90,
                                    what="the swept job done")
            assert done.renditions_state == "done" and [r.alternate_key for r in done.renditions] == [1, 2]


async def test_a_type_with_no_renditions_is_finished_by_the_sweep_without_a_job(service, etcd, postgres,
                                                                                private_redis, tmp_path):
    cluster = await rendition_cluster(service, etcd, postgres, private_redis.endpoint, tmp_path, transformers=0,
                                      env={"TRENCHCOAT_ROUTER__RENDITIONS_SWEEP_AFTER_S": "1",
                                           "TRENCHCOAT_ROUTER__RENDITIONS_SWEEP_INTERVAL_S": "0.5"})
    async with cluster.clients() as c:
        media = await c.media.upload(os.urandom(100), owner_id=12, content_type="application/octet-stream")
        done = await eventually(lambda: finished(c, media.media_id), timeout=60, what="the sweep to finish it")
        assert done.renditions_state == "done" and done.renditions == ()


async def test_a_photo_url_resized_on_read_serves_allowed_boxes_only(cluster):
    async with cluster.clients() as c:
        media = await c.media.upload(photo(1600, 1200, seed=4), owner_id=13, content_type="image/jpeg")
        raw = await c.media.upload(os.urandom(500), owner_id=13, content_type="application/octet-stream")
        # (Its sizes' job runs meanwhile; done before the test ends, so the next finds the queue empty.)
    for query, size, mime in (("?w=320&h=320&fit=cover&fmt=webp", (320, 320), "image/webp"),
                              ("?w=640", (640, 480), "image/jpeg")):
        status, content_type, body = await fetch(cluster, media.url + query)
        assert (status, content_type) == (200, mime), body[:200]
        assert Image.open(io.BytesIO(body)).size == size
        again = await fetch(cluster, media.url + query)
        assert again == (status, content_type, body)  # the same bytes for the same URL: cacheable
    for query, message in (("?w=333", b"333x0 is not a size served on read; allowed: 150x150:cover"),
                           ("?w=320&fit=sideways", b"fit must be one of contain, cover"),
                           ("?w=320&quality=100", b"unknown photo URL parameters")):
        status, _, body = await fetch(cluster, media.url + query)
        assert status == 400 and message in body, (query, status, body)
    status, _, body = await fetch(cluster, raw.url + "?w=320")
    assert status == 400 and b"only images are resized on read" in body
    async with cluster.clients() as c:
        await eventually(lambda: jobs_settled(c, media.media_id), timeout=90, what="the photo's own job done")


def hls_lines(body: bytes) -> list[str]:
    return [line for line in body.decode().splitlines() if line]


def attribute(pattern: str, line: str) -> re.Match[str]:
    """``pattern`` found in a playlist's ``line``; fails naming both when it is not there."""
    found = re.search(pattern, line)
    assert found is not None, (pattern, line)
    return found


async def test_a_video_gets_an_hls_ladder_that_plays_back_through_the_gateway(cluster):
    async with cluster.clients() as c:
        media = await c.media.upload(samples.video(854, 480, seconds=4.0, fps=24), owner_id=14,
                                     content_type="video/mp4")
        done = await eventually(lambda: finished(c, media.media_id), timeout=180, what="the ladder finished")
        await eventually(lambda: jobs_settled(c, media.media_id), what="the job acknowledged")
        everything, _ = await c.media.read(media.media_id, internal=True)
    assert done.renditions_state == "done", done.renditions_error
    by_key = {r.alternate_key: r for r in done.renditions}
    # Stat lists what a player picks from: the poster and the newest master (the whole ladder).
    assert set(by_key) == {keys.VIDEO_POSTER, keys.master_key(2)}
    poster = by_key[keys.VIDEO_POSTER]
    status, content_type, body = await fetch(cluster, poster.url)
    assert (status, content_type, Image.open(io.BytesIO(body)).size) == (200, "image/jpeg", (854, 480))
    # The pipeline's own read lists every rendition stored: it grew a rung at a time.
    stored = {r.alternate_key for r in everything.renditions}
    masters = sorted(k for k in stored if keys.is_master(k))
    assert masters == [keys.master_key(1), keys.master_key(2)]
    assert {keys.playlist_key(1), keys.playlist_key(2), keys.VIDEO_POSTER} <= stored
    assert any(k & ~0xFFFFFF == keys.VIDEO_SEGMENTS and k & 0xFFFF != keys.PLAYLIST for k in stored)
    status, content_type, body = await fetch(cluster, by_key[masters[-1]].url)
    assert (status, content_type) == (200, "application/vnd.apple.mpegurl")
    master = hls_lines(body)
    assert master[0] == "#EXTM3U"
    rungs = [(info, url) for info, url in itertools.pairwise(master) if info.startswith("#EXT-X-STREAM-INF:")]
    assert [attribute(r"RESOLUTION=(\d+x\d+)", info)[1] for info, _ in rungs] == ["428x240", "854x480"]
    for info, url in rungs:
        width, height = map(int, attribute(r"RESOLUTION=(\d+)x(\d+)", info).groups())
        assert int(attribute(r"BANDWIDTH=(\d+)", info)[1]) > 0
        status, content_type, body = await fetch(cluster, url)
        assert (status, content_type) == (200, "application/vnd.apple.mpegurl")
        lines = hls_lines(body)
        assert lines[-1] == "#EXT-X-ENDLIST"
        entries = [(float(d.removeprefix("#EXTINF:").rstrip(",")), u) for d, u in itertools.pairwise(lines)
                   if d.startswith("#EXTINF:")]
        assert sum(d for d, _ in entries) == pytest.approx(4.0, abs=0.1)
        frames = 0
        for duration, segment_url in entries:
            status, content_type, data = await fetch(cluster, segment_url)
            assert (status, content_type) == (200, "video/mp2t")
            with av.open(io.BytesIO(data), mode="r") as container:
                decoded = list(container.decode(video=0))
                assert container.streams.audio, "each segment carries the audio too"
            assert {(f.width, f.height) for f in decoded} == {(width, height)}
            assert len(decoded) == round(duration * 24) and decoded[0].key_frame
            frames += len(decoded)
        assert frames == 96
    # A delete takes the whole ladder with it: every segment and playlist, and the poster.
    async with cluster.clients() as c:
        assert await c.media.delete(media.media_id, owner_id=media.owner_id)
    for r in done.renditions:
        status, _, _ = await fetch(cluster, r.url)
        assert status == 404, keys.describe(r.alternate_key)
