"""``trenchcoat warm``'s rebuilder part, run as the command with its output in a pipe (not
a TTY): the cell's block health, when the rebuilder last scanned (and how often it does)
and the throttle in a line; each rebuild under way with a progress bar, each failed one
with its error, the newest finished ones a line each; a real rebuilder with nothing to
rebuild says so, and when its first scan ended; a rebuilder that does not answer is a line
saying so, not a crash, and the volume table is still printed."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time

import grpc
import pytest

from tests import harness
from tests.cluster import MediaCluster
from trenchcoat import tls
from trenchcoat.ops import ports
from trenchcoat.v1 import f4_pb2, f4_pb2_grpc

pytestmark = pytest.mark.integration

MiB = 1024 * 1024
VOLUME_HEADER = "UNHEALTHY (stripe/block@domain)"


async def warm(cluster: MediaCluster, **env: str) -> subprocess.CompletedProcess[str]:
    """``trenchcoat warm`` against the cluster's directory, stdout a pipe."""
    return await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "trenchcoat", "warm"], env={
        **os.environ, **cluster.env, "PYTHONPATH": str(harness.REPO_ROOT),
        "TRENCHCOAT_DIRECTORY__ENDPOINTS": ",".join(cluster.directory_endpoints()), **env},
        capture_output=True, text=True, timeout=60, check=False)


def rebuild(volume: int, stripe: int, index: int, *, done: int, total: int = 8 * MiB, finished: bool = False,
            error: str = "", reason: str = "damaged", resumed: int = 0) -> f4_pb2.Rebuild:
    return f4_pb2.Rebuild(rebuild_id=f"r-{volume}-{stripe}-{index}",
                          block=f4_pb2.BlockId(volume_id=volume, stripe=stripe, index=index),
                          done_bytes=done, total_bytes=total, finished=finished, node=f"10.0.0.{index}:7701",
                          domain=f"d{index:02}", reason=reason, error=error, resumed_bytes=resumed)


class CannedRebuilder(f4_pb2_grpc.F4RebuilderServiceServicer):
    """A rebuilder that answers RebuildStatus with what a busy cell would: one rebuild
    under way (carried over from a run cut short), one failed, twelve finished."""

    async def RebuildStatus(self, request, context):
        return f4_pb2.RebuildStatusResponse(
            rebuilds=[rebuild(7, 0, 3, done=3 * MiB, resumed=MiB),
                      rebuild(7, 1, 5, done=2 * MiB, reason="lost",
                              error="f4 storage 10.0.0.5:7701: unavailable: connection refused"),
                      *(rebuild(8, s, 2, done=8 * MiB, finished=True, reason="requested") for s in range(12))],
            throttle_bytes_per_s=32 * MiB, healthy_blocks=1234, damaged_blocks=2, lost_blocks=1, grace_s=900.0,
            last_scan_unix_ms=int(time.time() * 1000) - 4_000, scan_interval_s=30.0)


async def test_warm_shows_rebuilds_under_way_failed_and_finished_in_plain_text(service, etcd, tmp_path):
    cluster = MediaCluster(service, tmp_path / "data", etcd.endpoint)
    cluster.start_directory()
    server = grpc.aio.server()
    f4_pb2_grpc.add_F4RebuilderServiceServicer_to_server(CannedRebuilder(), server)
    # Served as the rebuilder's identity, as the real one is (the CLI calls as admin, over mutual TLS).
    identity = tls.Identity(harness.tls_dir(), "f4-rebuilder")
    port = server.add_secure_port("127.0.0.1:0", tls.ServerTls(identity).credentials())
    await server.start()
    try:
        shown = await warm(cluster, TRENCHCOAT_F4__REBUILDER_ENDPOINT=f"127.0.0.1:{port}")
    finally:
        await server.stop(0)
    assert shown.returncode == 0, shown.stderr
    assert "\x1b" not in shown.stdout and shown.stdout.isascii()  # no colour codes, nothing a pipe mangles
    lines = shown.stdout.splitlines()
    assert VOLUME_HEADER in lines[0] and "(no volume has aged into f4 yet)" in lines
    [summary] = [line for line in lines if line.startswith("rebuilder at")]
    assert re.fullmatch(rf"rebuilder at 127\.0\.0\.1:{port}: blocks 1234 healthy, 2 damaged or missing, 1 lost "
                        r"\(last scan \d+s ago, every 30s\); throttle 32\.0 MiB/s of reads; grace 900 s",
                        summary), summary
    [running] = [line for line in lines if "v7/s0/b3" in line]
    assert running.split()[1:3] == ["damaged", "10.0.0.3:7701@d03"]
    assert f"[{'#' * 9}{'-' * 15}]  38% 3.0 MiB of 8.0 MiB, 1.0 MiB carried over from an earlier run" in running
    [failed] = [line for line in lines if "v7/s1/b5" in line]
    assert failed.endswith("FAILED at 2.0 MiB of 8.0 MiB: f4 storage 10.0.0.5:7701: unavailable: connection refused")
    finished = [line for line in lines if line.endswith("rebuilt, 8.0 MiB")]
    assert [line.split()[0] for line in finished] == [f"v8/s{s}/b2" for s in range(10)]  # the newest ten
    assert "  (and 2 earlier rebuilds finished)" in lines
    assert lines.index(running) < lines.index(failed) < lines.index(finished[0])  # under way first


async def test_warm_says_what_a_real_rebuilder_holds_and_when_it_does_not_answer(service, etcd, tmp_path):
    cluster = MediaCluster(service, tmp_path / "data", etcd.endpoint)
    cluster.start_directory()
    port, metrics_port = ports.free_port(), ports.free_port()
    rebuilder = service("f4-rebuilder", harness.python_module("f4.rebuilder"), port=port, metrics_port=metrics_port,
                        env={**cluster.env, "TRENCHCOAT_F4__STORAGE_ENDPOINTS": f"127.0.0.1:{ports.free_port()}",
                             "TRENCHCOAT_F4_REBUILDER__PORT": str(port),
                             "TRENCHCOAT_F4_REBUILDER__METRICS_PORT": str(metrics_port),
                             "TRENCHCOAT_F4_REBUILDER__DRAIN_NOTICE_S": "0"})
    endpoint = {"TRENCHCOAT_F4__REBUILDER_ENDPOINT": rebuilder.address}
    deadline = time.monotonic() + 60
    while True:  # it scans at once on start; until that scan ends it says "no scan yet"
        shown = await warm(cluster, **endpoint)
        assert shown.returncode == 0, shown.stderr
        lines = shown.stdout.splitlines()
        [summary] = [line for line in lines if line.startswith("rebuilder at")]
        if "no scan yet" not in summary or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    # Its one storage node is silent: no manifests, no blocks.
    assert re.fullmatch(rf"rebuilder at {re.escape(rebuilder.address)}: blocks 0 healthy, 0 damaged or missing, "
                        r"0 lost \(last scan \d+s ago, every 30s\); throttle 32\.0 MiB/s of reads; grace 900 s",
                        summary), summary
    assert "  (no rebuilds since the rebuilder started)" in lines

    rebuilder.stop()
    shown = await warm(cluster, **endpoint)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert VOLUME_HEADER in lines[0] and "(no volume has aged into f4 yet)" in lines
    [silent] = [line for line in lines if "rebuilder" in line]
    assert silent.startswith(f"rebuilder at {rebuilder.address} does not answer: ")

    none = await warm(cluster, TRENCHCOAT_F4_REBUILDER__COUNT="0")
    assert none.returncode == 0, none.stderr
    assert "rebuilds: none (f4_rebuilder.count = 0 and f4.rebuilder_endpoint is empty: no rebuilder to ask)" in (
        none.stdout.splitlines())
