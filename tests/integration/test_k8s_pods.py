"""The pod start test: every pod of every trenchcoat workload in the rendered kind overlay,
run as a local process exactly as its pod spec says (its command, its environment resolved
the way the kubelet resolves it, the rendered ConfigMap as its mounted file), becomes ready
by its own readiness probe; then the pods work together as a cluster: stores register with
the identities their pods give them, an upload through a router pod reads back through the
CDN pod.

What a machine without a Kubernetes node cannot show, and this stands in for
(tests/kubelet.py): pod IPs are loopback addresses, cluster DNS names are mapped to them,
volumes are temporary directories, the three kind workers are names a stand-in scheduler
spreads pods over by zone, the API server (a store reads its node's zone) answers only the
node reads RBAC allows; etcd, PostgreSQL and Redis run as private instances from Debian's
packages in place of their upstream images; the image itself, the security context and the
resource limits are not exercised.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import urllib.request
from collections import Counter
from pathlib import Path

import asyncpg
import pytest

from tests import harness, kubelet
from tests.cluster import eventually
from tests.kubelet import K8S, PodRunner, container, workloads
from trenchcoat import rpc
from trenchcoat.directory_client import DirectoryClient
from trenchcoat.errors import TrenchcoatError
from trenchcoat.launcher import SERVICE_PACKAGES
from trenchcoat.media_client import MediaClient

pytestmark = pytest.mark.integration

DEPENDENCIES = {"etcd": "etcd-0.etcd:2379", "postgres": "postgres-0.postgres:5432", "redis": "redis-0.redis:6379"}
START_ORDER = [*SERVICE_PACKAGES.values(), "trenchcoat.cdn"]
READY_S = 240.0


def test_every_pod_of_the_kind_overlay_starts_and_they_serve_together(tmp_path: Path):
    docs = kubelet.render(K8S / "overlays" / "kind")
    with contextlib.ExitStack() as stack:
        deps = {"etcd": harness.start_etcd()}
        stack.callback(deps["etcd"].stop)
        deps["postgres"] = harness.start_postgres()
        stack.callback(deps["postgres"].stop)
        deps["redis"] = harness.start_redis()
        stack.callback(deps["redis"].stop)
        api = stack.enter_context(kubelet.FakeApiServer(tmp_path / "api", kubelet.kind_nodes(), docs))
        secret = kubelet.secret_data(docs, "trenchcoat-postgres")
        asyncio.run(_create_role(deps["postgres"].endpoint, secret["password"]))
        local = {name: dep.endpoint if name == "etcd" else _host_port(dep.endpoint) for name, dep in deps.items()}
        runner = PodRunner(docs, kubelet.kind_nodes(), tmp_path,
                           {DEPENDENCIES[name]: local[name] for name in DEPENDENCIES}, api=api)
        stack.callback(runner.stop_all)
        ours = [w for w in workloads(docs) if w["metadata"]["name"] not in DEPENDENCIES]
        ours.sort(key=lambda w: START_ORDER.index(container(w)["command"][2]))
        placed = [(w, runner.place(w)) for w in ours]  # every name resolves before anything starts
        for _, pods in placed:
            for pod in pods:
                runner.start(pod)
            runner.wait_ready(pods, READY_S)
        started = {w["metadata"]["name"]: len(pods) for w, pods in placed}
        assert started == {w["metadata"]["name"]: w["spec"]["replicas"] for w in ours}
        asyncio.run(_serve_together(runner))
        # Graceful termination: every pod drains and exits by itself within its grace period.
        codes = runner.stop_all()
        unclean = {name: code for name, code in codes.items() if code not in (0, -signal.SIGTERM)}
        assert not unclean, f"pods killed or failing on SIGTERM: {unclean}"


async def _serve_together(runner: PodRunner) -> None:
    router = runner.pods["router"][0]
    cdn = runner.pods["cdn"][0]
    directory = runner.pods["directory"][0]
    zone_of = {n.name: n.zone for n in kubelet.kind_nodes()}
    async with rpc.ChannelPool() as pool:
        stores = await DirectoryClient(pool, [f"{directory.ip}:7100"]).list_stores()
        # Each store pod's identity: machine id = ordinal + 1, rack = its node's zone (read from
        # the API server with its service account), address = its pod.
        assert sorted(s.machine_id for s in stores) == [1, 2, 3, 4, 5, 6]
        by_pod = {p.name: p for p in runner.pods["store"]}
        for s in stores:
            pod = by_pod[f"store-{s.machine_id - 1}"]
            assert (s.rack, s.address, s.http_address) == (zone_of[pod.node], f"{pod.ip}:7200", f"{pod.ip}:7280")
        racks = Counter(s.rack for s in stores)
        assert set(racks) == set(zone_of.values()) and set(racks.values()) == {2}  # spread over the three zones

        media = MediaClient(pool, f"{router.ip}:7400", timeout_s=30)
        body = b"\xff\xd8" + bytes(range(256)) * 40

        async def upload():
            try:
                return await media.upload(body, owner_id=7, content_type="image/jpeg")
            except TrenchcoatError:
                return None  # no writable volume yet: the leader is creating them

        uploaded = await eventually(upload, timeout=120, what="an upload through the router pod")
    url = uploaded.url.replace("http://localhost:8080", f"http://{cdn.ip}:8080")
    with urllib.request.urlopen(url, timeout=30) as response:
        assert response.read() == body


async def _create_role(dsn: str, password: str) -> None:
    """The postgres image's POSTGRES_USER: the role the Secret's DSN logs in as, owning its database."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f"CREATE ROLE trenchcoat LOGIN PASSWORD '{password}'")
        await conn.execute("ALTER DATABASE trenchcoat OWNER TO trenchcoat")
    finally:
        await conn.close()


def _host_port(url: str) -> str:
    return url.split("://", 1)[1].split("@", 1)[-1].split("/", 1)[0]
