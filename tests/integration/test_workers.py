"""``workers = N``: one stateless service as N processes on one port (SO_REUSEPORT), the
first starting and owning the others and serving the metrics of all."""

from __future__ import annotations

import os
import re
import signal

import pytest

from tests import harness
from tests.cluster import MediaCluster, eventually, fresh_database, writable_volumes
from trenchcoat import rpc
from trenchcoat.clients.media import MediaClient

pytestmark = pytest.mark.integration

WORKERS = 3


@pytest.fixture
async def cluster(service, etcd, postgres, tmp_path):
    cluster = MediaCluster(service, tmp_path / "data", etcd.endpoint, postgres=await fresh_database(postgres.endpoint),
                           env={"TRENCHCOAT_ROUTER__WORKERS": str(WORKERS)})
    cluster.start_all(router=True)
    await eventually(lambda: writable_volumes(cluster, 2), what="2 writable volumes")
    return cluster


def uploads_counted(metrics_url: str) -> float:
    text = harness.scrape(metrics_url)
    return sum(float(v) for v in re.findall(r'^trenchcoat_router_uploads_total\{outcome="ok"\} (\S+)', text,
                                         re.MULTILINE))


def workers_of(router: harness.ServiceProcess) -> list[int]:
    assert router.process.pid is not None
    return [pid for pid in harness.descendants(router.process.pid)
            if "router" in open(f"/proc/{pid}/cmdline", "rb").read().decode(errors="replace")]


async def test_n_workers_share_the_port_and_report_their_metrics_together(cluster):
    router = cluster.router
    children = await eventually(lambda: _at_least(workers_of(router), WORKERS - 1), what="the worker processes")
    assert len(children) == WORKERS - 1
    # Each channel is one connection; the kernel spreads connections over the workers.
    uploads = 24
    for i in range(uploads):
        async with rpc.ChannelPool() as pool:
            media = await MediaClient(pool, router.address, timeout_s=60).upload(
                os.urandom(100), owner_id=i + 1, content_type="image/jpeg")
            assert media.media_id
    assert uploads_counted(router.metrics_url) == uploads  # every worker's uploads, one endpoint
    served_by = {pid for pid in children if _cpu_ticks(pid) > 0}
    assert served_by, "no worker process did any work"


async def test_a_worker_that_dies_stops_the_set_and_sigterm_stops_all(cluster):
    router = cluster.router
    children = await eventually(lambda: _at_least(workers_of(router), WORKERS - 1), what="the worker processes")
    os.kill(children[0], signal.SIGKILL)
    await eventually(lambda: _stopped(router), timeout=60, what="worker 0 to stop")
    assert router.process.exit_code() not in (0, None)
    assert await eventually(lambda: _none_alive(children), what="the other workers to stop")
    # A fresh set drains whole on SIGTERM, exit 0.
    cluster.start_router()
    children = await eventually(lambda: _at_least(workers_of(cluster.router), WORKERS - 1), what="new workers")
    assert cluster.router.stop() == 0
    assert await eventually(lambda: _none_alive(children), what="the workers to stop with it")


async def _stopped(service: harness.ServiceProcess) -> bool:
    return not service.process.running()


async def _at_least(pids: list[int], n: int) -> list[int] | None:
    return pids if len(pids) >= n else None


async def _none_alive(pids: list[int]) -> bool:
    return not any(os.path.exists(f"/proc/{pid}") and _state(pid) != "Z" for pid in pids)


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


def _cpu_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])
