"""`trenchcoat up` / `status` / `demo` as a person runs them: real processes, real signals."""

from __future__ import annotations

import asyncio
import io
import json
import os
import pty
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from PIL import Image

from tests import harness
from trenchcoat import dashboard, procs, rpc
from trenchcoat.feed_client import FeedClient
from trenchcoat.media_client import MediaClient

pytestmark = pytest.mark.integration


@pytest.fixture
def data_dir() -> Iterator[Path]:
    root = harness.open_tempdir("tc-up-")
    yield root / "data"
    shutil.rmtree(root, ignore_errors=True)


def cli(data_dir: Path, *args: str, timeout: float = 120, whole: bool = False) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trenchcoat", *args],
        env=_env(data_dir, None if whole else NO_F4_CELL), capture_output=True, text=True, timeout=timeout, cwd=harness.REPO_ROOT, check=False,
    )


def _env(data_dir: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRENCHCOAT_")}
    return env | {"TRENCHCOAT_CLUSTER__DATA_DIR": str(data_dir)} | (extra or {})


NO_F4_CELL = {**{f"TRENCHCOAT_{s}__COUNT": "0" for s in ("F4", "F4_STORAGE", "F4_KEYSTORE", "F4_BACKOFF",
                                                          "F4_REBUILDER")},
              "TRENCHCOAT_F4__MIGRATE": "false"}
"""The default cluster less its f4 cell (18 processes): for tests about the launcher
itself, so the suite stays quick on two cores; the demo and the first test run it whole."""


class Up:
    """A running `trenchcoat up` whose output is read line by line."""

    def __init__(self, data_dir: Path, extra: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "trenchcoat", "up"],
            env=_env(data_dir, extra), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            cwd=harness.REPO_ROOT,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self.lines.put(line.rstrip("\n"))

    def wait_for(self, text: str, timeout: float = 120) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                if self.popen.poll() is not None and self.lines.empty():
                    break
                continue
            self.seen.append(line)
            if text in line:
                return line
        raise AssertionError(f"{text!r} not printed; output so far:\n" + "\n".join(self.seen))

    def state(self) -> dict:
        return json.loads((self.data_dir / "cluster.json").read_text())

    def pids(self) -> set[int]:
        return {p["pid"] for p in self.state()["processes"]}

    def close(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()


@pytest.fixture(params=["no f4 cell"])
def up(data_dir: Path, request: pytest.FixtureRequest) -> Iterator[Up]:
    """A running `trenchcoat up`: without its f4 cell, or (indirect parametrize "whole") all of it."""
    running = Up(data_dir, NO_F4_CELL if request.param == "no f4 cell" else None)
    groups: set[int] = set()
    try:
        running.wait_for("cluster up")
        groups = running.pids()
        yield running
    finally:
        running.close()
        for pid in groups:  # belt and braces: never leak a child into other tests
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


@pytest.mark.parametrize("up", ["whole"], indirect=True)
def test_up_starts_dependencies_and_status_reports_them_serving(up):
    state = up.state()
    cell = {"f4", "f4_keystore", "f4_backoff", "f4_rebuilder", *(f"f4_storage-{i}" for i in range(1, 15))}
    assert {p["name"] for p in state["processes"]} >= {"etcd", "postgres", "redis"} | cell
    result = cli(up.data_dir, "status")
    assert result.returncode == 0, result.stdout + result.stderr
    for name in ("etcd", "postgres", "redis", *cell):
        assert any(line.split()[0] == name and "SERVING" in line for line in result.stdout.splitlines()), result.stdout
    assert (up.data_dir / "logs" / "etcd.log").exists()
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
        line = next((l for l in top.stdout.splitlines() if panel.title in l), "")
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


def test_second_up_on_the_same_data_dir_is_refused(up):
    result = cli(up.data_dir, "up", timeout=60)
    assert result.returncode == 1
    assert "already running" in result.stderr


def test_a_crashed_process_is_reported_not_hidden(up):
    redis = next(p for p in up.state()["processes"] if p["name"] == "redis")
    os.kill(redis["pid"], signal.SIGKILL)
    line = up.wait_for("!! redis")
    assert "SIGKILL" in line
    result = cli(up.data_dir, "status")
    assert result.returncode == 1
    assert any(l.startswith("redis") and "EXITED" in l for l in result.stdout.splitlines())
    up.popen.send_signal(signal.SIGTERM)
    assert up.popen.wait(60) == 1  # a run during which something died does not end "clean"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_stop_signal_takes_everything_down(up, sig):
    pids = up.pids()
    up.popen.send_signal(sig)
    assert up.popen.wait(90) == 0
    assert procs.group_members(pids) == []
    assert not (up.data_dir / "cluster.json").exists()
    assert cli(up.data_dir, "status").returncode == 3


def test_state_survives_a_restart_of_the_cluster(data_dir):
    first = Up(data_dir, NO_F4_CELL)
    try:
        first.wait_for("cluster up")
        first.popen.send_signal(signal.SIGINT)
        assert first.popen.wait(90) == 0
    finally:
        first.close()
    pg_version = next(data_dir.glob("postgres/PG_VERSION"), None)
    assert pg_version is not None, "PostgreSQL cluster lives under the data dir"
    second = Up(data_dir, NO_F4_CELL)
    try:
        second.wait_for("cluster up")  # no initdb the second time: same cluster reused
        second.popen.send_signal(signal.SIGINT)
        assert second.popen.wait(90) == 0
    finally:
        second.close()


def test_status_without_a_cluster_says_so(data_dir):
    result = cli(data_dir, "status")
    assert result.returncode == 3
    assert "no cluster running" in result.stdout


def test_demo_runs_and_leaves_nothing_behind(data_dir):
    result = cli(data_dir, "demo", timeout=900, whole=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no process left running" in result.stdout
    assert "== the warm tier" in result.stdout, result.stdout
    assert "== the warm tier: skipped" not in result.stdout, result.stdout


def test_a_bad_config_exits_2_naming_the_key(data_dir, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[store]\nport = 'x'\n")
    result = cli(data_dir, "--config", str(bad), "status")
    assert result.returncode == 2
    assert "store.port: expected an integer" in result.stderr


def test_config_reference_lists_every_key_with_its_variable(data_dir):
    result = cli(data_dir, "config", "--reference")
    assert result.returncode == 0
    assert "store.racks = [\"rack-a\", \"rack-b\", \"rack-c\"]" in result.stdout
    assert "env: TRENCHCOAT_STORE__RACKS" in result.stdout


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


def test_put_get_stat_rm_volumes_and_status_against_a_running_cluster(up, tmp_path):
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
    got = subprocess.run([sys.executable, "-m", "trenchcoat", "get", str(media_id)], env=_env(up.data_dir, NO_F4_CELL),
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
        [row] = [line for line in table.stdout.splitlines() if line.split()[0] == volume]
        words = row.split()
        return _bytes(" ".join(words[3:5])) >= 0.9 * len(photo.read_bytes()) and re.fullmatch(
            r"\(\d+[smhd]", words[5]) is not None and words[6] == "ago)"

    until(f"volume {volume} shows the photo's bytes", filled, timeout=60)
    volumes = cli(up.data_dir, "volumes")
    rows = [line for line in volumes.stdout.splitlines()[1:] if "writable" in line]
    assert rows and all(len({p.split("@")[1] for p in r.split() if "@" in p}) == 3 for r in rows), volumes.stdout

    # status: the leader is named as the process table names it.
    status = cli(up.data_dir, "status")
    leader = re.search(r"^leader: (\S+) \((\S+)\)$", status.stdout, re.MULTILINE)
    assert leader and re.fullmatch(r"directory-\d", leader[1]), status.stdout
    assert any(line.split()[0] == leader[1] and line.split()[-1] == leader[2] and "SERVING" in line
               for line in status.stdout.splitlines() if line.strip()), status.stdout
    assert status.stdout.count(" up ") >= 6

    # stat of several ids says why one has no facts, and fails; rm, twice; then get and stat say so.
    mixed = cli(up.data_dir, "stat", str(media_id), "12345")
    assert mixed.returncode == 1 and f"media {media_id}\n" in mixed.stdout
    assert "media 12345 does not exist" in mixed.stdout
    removed = cli(up.data_dir, "rm", str(media_id))
    assert (removed.returncode, removed.stdout.strip()) == (0, f"media {media_id} deleted"), removed.stderr
    again = cli(up.data_dir, "rm", str(media_id))
    assert (again.returncode, again.stdout.strip()) == (0, f"media {media_id} was already deleted"), again.stderr
    gone = cli(up.data_dir, "get", str(media_id), "-o", str(tmp_path / "gone.jpg"))
    assert gone.returncode == 1 and f"media {media_id} does not exist" in gone.stderr and not gone.stdout
    assert not (tmp_path / "gone.jpg").exists()
    stat = cli(up.data_dir, "stat", str(media_id))
    assert (stat.returncode, stat.stdout.strip()) == (1, f"media {media_id} was deleted")
    missing = cli(up.data_dir, "put", str(tmp_path / "nope.jpg"), "--user", "1")
    assert missing.returncode == 1 and "is not a readable file" in missing.stderr


def test_get_refuses_to_write_a_media_to_a_terminal_and_sizes_are_image_sizes(data_dir):
    # No cluster needed: both are refused before anything is asked.
    controller, terminal = pty.openpty()
    try:
        refused = subprocess.run([sys.executable, "-m", "trenchcoat", "get", "123"], env=_env(data_dir),
                                 stdout=terminal, stderr=subprocess.PIPE, text=True, timeout=60,
                                 cwd=harness.REPO_ROOT, check=False)
    finally:
        os.close(terminal)
        os.close(controller)
    assert refused.returncode == 2
    assert "not writing a media's bytes to a terminal: give -o FILE, or redirect stdout" in refused.stderr
    bad = cli(data_dir, "get", "123", "--size", "256", "-o", "x")
    assert bad.returncode == 2 and "an image size is its alternate key, 1..255" in bad.stderr
    both = cli(data_dir, "get", "123", "--size", "2", "--key", "0x3000000", "-o", "x")
    assert both.returncode == 2 and "not allowed with argument" in both.stderr
    bad = cli(data_dir, "get", "123", "--key", "poster", "-o", "x")
    assert bad.returncode == 2 and "an alternate key is 1..4294967295 (decimal or 0x hex)" in bad.stderr


def test_follow_post_and_feed_against_a_running_cluster(up, tmp_path):
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
