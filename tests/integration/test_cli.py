"""The CLI's verbs as a person runs them against one running `trenchcoat up` (the whole
default cluster, f4 cell and Prometheus included) that this module's tests share: status,
Prometheus's targets and rules, the dashboard's panels and `top`, put/get/stat/rm,
volumes, follow/post/feed."""

from __future__ import annotations

import asyncio
import io
import json
import os
import random
import re
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from PIL import Image

from tests import harness
from tests.integration.test_harness import refused_without_credentials
from tests.upctl import NO_F4_CELL, Up, cli, env, running_up
from trenchcoat import rpc
from trenchcoat.clients.feed import FeedClient
from trenchcoat.clients.media import MediaClient
from trenchcoat.errors import Unavailable
from trenchcoat.ops import dashboard

# `trenchcoat up` and the demo on the default ports: one at a time (make test runs two workers).
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group(name="default-ports")]


@pytest.fixture(scope="module")
def whole() -> Iterator[Up]:
    """The whole default cluster (its f4 cell and Prometheus too) as `trenchcoat up` runs it,
    shared by this module's tests, each with users and media of its own. (On the default
    ports: no other `trenchcoat up` runs while this module does.)"""
    root = harness.open_tempdir("tc-up-")
    try:
        # Scraped every second: the dashboard's rates have their two samples within seconds.
        with running_up(root / "data", {"TRENCHCOAT_PROMETHEUS__SCRAPE_INTERVAL_S": "1"}) as running:
            yield running
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_up_starts_dependencies_and_status_reports_them_serving(whole):
    up = whole
    state = up.state()
    cell = {"f4", "f4_keystore", "f4_backoff", "f4_rebuilder", *(f"f4_storage-{i}" for i in range(1, 15))}
    assert {p["name"] for p in state["processes"]} >= {"etcd", "postgres", "redis"} | cell
    result = cli(up.data_dir, "status")
    assert result.returncode == 0, result.stdout + result.stderr
    for name in ("etcd", "postgres", "redis", *cell):
        assert any(line.split()[0] == name and "SERVING" in line for line in result.stdout.splitlines()), result.stdout
    assert (up.data_dir / "logs" / "etcd.log").exists()
    # Its dependencies take credentials: none answers a caller without them.
    endpoint = {p["name"]: p["endpoint"] for p in state["processes"]}
    asyncio.run(refused_without_credentials(endpoint["etcd"], endpoint["postgres"], endpoint["redis"]))
    assert "***@" in result.stdout and endpoint["redis"].split("@")[0].split(":")[-1] not in result.stdout
    # Prometheus scrapes every service process, and has the rules loaded.
    targets = wait_until_scraped("http://127.0.0.1:9090", expected=sum(
        1 for p in state["processes"] if p["kind"] == "grpc"))
    assert {t["labels"]["job"] for t in targets} >= {"directory", "store", "cache", "router", "transformer",
                                                    "f4_storage", "feed", "fanout"}
    groups = prometheus_api("http://127.0.0.1:9090", "rules")["groups"]
    assert {g["name"] for g in groups} == {"trenchcoat-recording", "trenchcoat-alerts"}
    assert all(r["health"] == "ok" for g in groups for r in g["rules"]), groups

    # A short load, then every dashboard panel returns data, and `trenchcoat top` shows them.
    asyncio.run(short_load())
    missing = wait_for_panels("http://127.0.0.1:9090")
    assert not missing, f"panels without data: {missing}"
    top = cli(up.data_dir, "top", "--once")
    assert top.returncode == 0, top.stdout + top.stderr
    for panel in dashboard.PANELS:
        line = next((row for row in top.stdout.splitlines() if panel.title in row), "")
        assert line and "query failed" not in line and "no data" not in line, (panel.title, top.stdout)


async def short_load() -> None:
    """Uploads, reads through the CDN (twice: a miss, then a hit) and straight from the
    cache, a follow and a post: every service has done something."""
    async with rpc.ChannelPool() as pool:
        media = MediaClient(pool, "127.0.0.1:7400", timeout_s=60)
        feed = FeedClient(pool, "127.0.0.1:7700", timeout_s=60)
        uploaded = [await media.upload(os.urandom(2000), owner_id=5, content_type="image/jpeg") for _ in range(5)]
        for m in uploaded:
            for _ in range(2):
                with urllib.request.urlopen(m.url, timeout=30) as r:
                    assert r.status == 200
            await media.read(m.media_id)
        await feed.follow(6, 5)
        await feed.post(5, uploaded[0].media_id, "load")


async def moved_under_load(data_dir: Path, shards: str, to: str) -> tuple[subprocess.CompletedProcess[str],
                                                                         dict[int, int]]:
    """`trenchcoat shards move` while 8 writers upload and post through the router and the
    feed (owners in the moved shards and elsewhere), retrying what is UNAVAILABLE (a paused
    shard) as a client does: (the mover's outcome, each acknowledged post's media id -> author)."""
    written: dict[int, int] = {}
    done = asyncio.Event()

    async def writer(n: int, media: MediaClient, feed: FeedClient) -> None:
        rng = random.Random(n)
        while not done.is_set():
            author = rng.choice([n + 1, 8192 * 9 + n + 1, 5000 + n])  # shard n + 1 (moved) twice, 5000 + n
            for _ in range(600):
                try:
                    uploaded = await media.upload(os.urandom(300), owner_id=author, content_type="image/jpeg")
                    await feed.post(author, uploaded.media_id, "moving")
                    break
                except Unavailable:
                    await asyncio.sleep(0.05)
            else:
                raise AssertionError("writes refused for 30 s")
            written[uploaded.media_id] = author

    async with rpc.ChannelPool() as pool:
        media = MediaClient(pool, "127.0.0.1:7400", timeout_s=60)
        feed = FeedClient(pool, "127.0.0.1:7700", timeout_s=60)
        writers = [asyncio.create_task(writer(n, media, feed)) for n in range(8)]
        moved = await asyncio.to_thread(cli, data_dir, "shards", "move", shards, "--to", to, timeout=300)
        done.set()
        await asyncio.gather(*writers)
    return moved, written


async def all_readable(written: dict[int, int]) -> None:
    """Every acknowledged upload stats, and every post is in its author's feed."""
    async with rpc.ChannelPool() as pool:
        media = MediaClient(pool, "127.0.0.1:7400", timeout_s=60)
        feed = FeedClient(pool, "127.0.0.1:7700", timeout_s=60)
        stats = await media.batch_stat(list(written))
        assert [s.outcome for s in stats] == ["found"] * len(written)
        for author in set(written.values()):
            posted = {m for m, a in written.items() if a == author}
            seen = {e.media_id for e in (await feed.user(author, limit=100)).entries}
            assert posted <= seen, (author, posted - seen)


def wait_for_panels(base: str, timeout: float = 120) -> list[str]:
    """Titles of the dashboard panels whose query returns no data once ``timeout`` has
    passed (an empty list as soon as all of them do)."""
    deadline = time.monotonic() + timeout
    while True:
        missing = [p.title for p in dashboard.PANELS if not prometheus_api(
            base, "query?" + urllib.parse.urlencode({"query": p.expr}))["result"]]
        if not missing or time.monotonic() > deadline:
            return missing
        time.sleep(2)


def prometheus_api(base: str, path: str) -> dict:
    with urllib.request.urlopen(f"{base}/api/v1/{path}", timeout=10) as response:
        body = json.loads(response.read())
    assert body["status"] == "success", body
    return body["data"]


def wait_until_scraped(base: str, expected: int, timeout: float = 120) -> list[dict]:
    """Prometheus's active targets once ``expected`` of them are up (each scraped once)."""
    deadline = time.monotonic() + timeout
    while True:
        targets = prometheus_api(base, "targets")["activeTargets"]
        if sum(t["health"] == "up" for t in targets) >= expected:
            return targets
        if time.monotonic() > deadline:
            raise AssertionError(f"{expected} targets up not seen: {[(t['scrapeUrl'], t['health']) for t in targets]}")
        time.sleep(1)


def test_second_up_on_the_same_data_dir_is_refused(whole):
    up = whole
    result = cli(up.data_dir, "up", timeout=60)
    assert result.returncode == 1
    assert "already running" in result.stderr


def jpeg(width: int, height: int) -> bytes:
    """A real photo (noise, so it does not compress to nothing): the transformer makes its sizes."""
    out = io.BytesIO()
    Image.frombytes("RGB", (width, height), os.urandom(width * height * 3)).save(out, "JPEG", quality=60)
    return out.getvalue()


def until(what: str, check: Callable[[], bool], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not within {timeout:.0f}s: {what}"
        time.sleep(0.5)


def _bytes(line: str) -> float:
    """``4.4 MiB`` -> bytes (as the tables print sizes)."""
    number, unit = line.split()
    return float(number) * 1024 ** ["B", "KiB", "MiB", "GiB", "TiB"].index(unit)


def test_put_get_stat_rm_volumes_and_status_against_a_running_cluster(whole, tmp_path):
    up = whole
    photo = tmp_path / "cat.jpg"
    photo.write_bytes(jpeg(640, 480))
    result = cli(up.data_dir, "put", str(photo), "--user", "42")
    assert result.returncode == 0, result.stdout + result.stderr
    media_id = int(result.stdout.split()[1])
    assert (media_id >> 10) & 0x1FFF == 42
    assert "url      http://" in result.stdout
    url = result.stdout.split("url")[1].split()[0]
    volume = url.split("/")[-1].split(",")[0]

    # stat: every fact, and the sizes once the transformer has made them.
    stat = cli(up.data_dir, "stat", str(media_id))

    def sized() -> bool:
        nonlocal stat
        stat = cli(up.data_dir, "stat", str(media_id))
        return "  renditions  done" in stat.stdout.splitlines()

    until("the photo's sizes are made", sized)
    assert stat.returncode == 0, stat.stdout + stat.stderr
    lines = stat.stdout.splitlines()
    assert lines[0] == f"media {media_id}"
    for fact in ("tier        hot", "state       active", "owner       42", "type        image/jpeg",
                 "displayed   640 x 480", f"url         {url}  (volume {volume})"):
        assert f"  {fact}" in lines, stat.stdout
    assert any(line.startswith("  size ") and line.endswith(f"({len(photo.read_bytes())} bytes)")
               for line in lines), stat.stdout
    [size2] = [line.split() for line in lines if line.startswith("    size 2 ")]
    assert size2[4:7] == ["320", "x", "240"] and size2[7].startswith("http://"), stat.stdout

    # get: the original to a pipe (its bytes and nothing else), a size to a file.
    got = subprocess.run([sys.executable, "-m", "trenchcoat", "get", str(media_id)], env=env(up.data_dir, NO_F4_CELL),
                         capture_output=True, timeout=120, cwd=harness.REPO_ROOT, check=False)
    assert got.returncode == 0, got.stderr
    assert got.stdout == photo.read_bytes()
    out = tmp_path / "small.jpg"
    small = cli(up.data_dir, "get", str(media_id), "--size", "2", "-o", str(out))
    assert small.returncode == 0, small.stdout + small.stderr
    assert f"to {out}" in small.stdout
    assert Image.open(out).size == (320, 240)
    nowhere = cli(up.data_dir, "get", str(media_id), "-o", str(tmp_path / "no-such-dir" / "x.jpg"))
    assert nowhere.returncode == 1 and f"cannot write {tmp_path / 'no-such-dir' / 'x.jpg'}: " in nowhere.stderr

    # volumes: the photo's volume shows its fill as the stores reported it, with the report's age,
    # though far less than a thousandth of the volume (which used to stay unrecorded: 0 B).
    def filled() -> bool:
        table = cli(up.data_dir, "volumes")
        assert table.returncode == 0, table.stderr
        [row] = [line for line in table.stdout.splitlines() if line.split()[:1] == [volume]]
        words = row.split()
        return _bytes(" ".join(words[3:5])) >= 0.9 * len(photo.read_bytes()) and re.fullmatch(
            r"\(\d+[smhd]", words[5]) is not None and words[6] == "ago)"

    until(f"volume {volume} shows the photo's bytes", filled, timeout=60)
    volumes = cli(up.data_dir, "volumes")
    rows = [line for line in volumes.stdout.splitlines()[1:] if "writable" in line]
    assert rows and all(len({p.split("@")[1] for p in r.split() if "@" in p}) == 3 for r in rows), volumes.stdout
    # ... and what the hot tier is mending: nothing, on a healthy cluster.
    assert "Healing: every volume has all its replicas up and equal; no damaged needle reported." in volumes.stdout

    # status: the leader is named as the process table names it.
    status = cli(up.data_dir, "status")
    leader = re.search(r"^leader: (\S+) \((\S+)\)$", status.stdout, re.MULTILINE)
    assert leader and re.fullmatch(r"directory-\d", leader[1]), status.stdout
    assert any(line.split()[0] == leader[1] and line.split()[-1] == leader[2] and "SERVING" in line
               for line in status.stdout.splitlines() if line.strip()), status.stdout
    assert status.stdout.count(" up ") >= 6

    # shards: the two PostgreSQL instances `up` runs, the shards split evenly between them; user
    # 42's row (shard 42) on the first, user 5000's (shard 5000) on the second.
    other = cli(up.data_dir, "put", str(photo), "--user", "5000")
    assert other.returncode == 0, other.stdout + other.stderr
    table = cli(up.data_dir, "shards")
    assert table.returncode == 0, table.stdout + table.stderr
    lines = table.stdout.splitlines()
    assert lines[0] == "shard map v1 (shards/map in etcd):", table.stdout
    assert [line.split()[:2] for line in lines[1:3]] == [["0-4095", "4096"], ["4096-8191", "4096"]], table.stdout
    held = [line.split() for line in lines[4:6]]
    assert [h[1:3] for h in held] == [["4096", "shards"]] * 2 and all(h[4:6] == ["media", "rows"] for h in held)
    assert all(int(h[3].replace(",", "")) >= 1 for h in held), table.stdout
    again = cli(up.data_dir, "shards", "init")  # the operator's verb never replaces a stored map
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.splitlines()[:3] == ["a shard map is stored already: kept",
                                             "told each instance the shards it holds (it mints ids for those only)",
                                             "shard map v1 (shards/map in etcd):"], again.stdout
    # shards move: user 42's shard to the second instance while the cluster serves; its
    # media then read (stat) and deleted (rm, below) there, by every process's new map.
    second = lines[2].split()[-1]
    moved, written = asyncio.run(moved_under_load(up.data_dir, "0-99", second))
    assert moved.returncode == 0, moved.stdout + moved.stderr
    assert len(written) >= 8, written  # every writer wrote during the move
    asyncio.run(all_readable(written))
    assert moved.stdout.splitlines()[0] == f"moved shards 0-99 from {lines[1].split()[-1]} to {second}: shard map v2"
    after = cli(up.data_dir, "shards").stdout.splitlines()
    assert [line.split()[0] for line in after[1:4]] == ["0-99", "100-4095", "4096-8191"], after
    assert after[1].split()[-1] == second
    assert cli(up.data_dir, "stat", str(media_id)).returncode == 0
    refused = cli(up.data_dir, "shards", "move", "0-99", "--to", second)
    assert refused.returncode == 1 and "are on" in refused.stderr and "already" in refused.stderr

    # stat of several ids says why one has no facts, and fails; rm, twice; then get and stat say so.
    mixed = cli(up.data_dir, "stat", str(media_id), "12345")
    assert mixed.returncode == 1 and f"media {media_id}\n" in mixed.stdout
    assert "media 12345 does not exist" in mixed.stdout
    removed = cli(up.data_dir, "rm", str(media_id))
    assert (removed.returncode, removed.stdout.strip()) == (0, f"media {media_id} deleted"), removed.stderr
    again = cli(up.data_dir, "rm", str(media_id))
    assert (again.returncode, again.stdout.strip()) == (0, f"media {media_id} was already deleted"), again.stderr
    gone = cli(up.data_dir, "get", str(media_id), "-o", str(tmp_path / "gone.jpg"))
    assert gone.returncode == 1 and f"media {media_id} was deleted" in gone.stderr and not gone.stdout
    assert not (tmp_path / "gone.jpg").exists()
    stat = cli(up.data_dir, "stat", str(media_id))
    assert (stat.returncode, stat.stdout.strip()) == (1, f"media {media_id} was deleted")
    missing = cli(up.data_dir, "put", str(tmp_path / "nope.jpg"), "--user", "1")
    assert missing.returncode == 1 and "is not a readable file" in missing.stderr


def test_follow_post_and_feed_against_a_running_cluster(whole, tmp_path):
    up = whole
    photo = tmp_path / "dog.jpg"
    photo.write_bytes(b"\xff\xd8\xff" + os.urandom(2000))
    assert "user 7 follows user 8" in cli(up.data_dir, "follow", "7", "8").stdout
    assert "(already)" in cli(up.data_dir, "follow", "7", "8").stdout
    posted = cli(up.data_dir, "post", str(photo), "--user", "8", "--caption", "a good dog")
    assert posted.returncode == 0, posted.stdout + posted.stderr
    media_id = posted.stdout.split()[1]
    deadline = time.monotonic() + 60
    while True:  # fan-out is asynchronous
        feed = cli(up.data_dir, "feed", "7")
        if media_id in feed.stdout or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert feed.returncode == 0 and media_id in feed.stdout and "a good dog" in feed.stdout, feed.stdout + feed.stderr
    assert "http://" in feed.stdout
    bad = cli(up.data_dir, "follow", "7", "7")
    assert bad.returncode == 1 and "cannot follow themselves" in bad.stderr
