"""The pod start test: every pod of every trenchcoat workload in the rendered kind overlay,
run as a local process exactly as its pod spec says (its command, its environment resolved
the way the kubelet resolves it, the rendered ConfigMap as its mounted file), becomes ready
by its own readiness probe, the Job redis-cluster-init's pod forms the Redis Cluster and the
Job shards-init's pod stores the shard map over the two PostgreSQL instances; then the pods
work together as a cluster: stores register with the identities their pods give them,
uploads through a router pod land on the instance the map names for their owner and read
back through the CDN pod, and the services' Redis is the Redis Cluster (the Secret's
``cluster``), reached at the node its ``url`` names.

What a machine without a Kubernetes node cannot show, and this stands in for
(tests/kubelet.py): pod IPs are loopback addresses, cluster DNS names are mapped to them,
volumes are temporary directories, the three kind workers are names a stand-in scheduler
spreads pods over by zone, the API server (a store reads its node's zone) answers only the
node reads RBAC allows; etcd, the two PostgreSQL instances and the six Redis nodes run as
private instances from Debian's packages in place of their upstream images (the Redis nodes
as ``trenchcoat up`` runs its cluster's, announcing 127.0.0.1 rather than their pod names,
so the StatefulSet's own command is not run), and the Job redis-cluster-init's script runs
with Debian's redis-cli in place of the redis image's; the Jobs' failed runs are retried
with a shorter back-off than the kubelet's; the images themselves, the security context and
the resource limits are not exercised.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import signal
import time
import tomllib
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

from tests import harness, kubelet
from tests.cluster import eventually
from tests.kubelet import K8S, PodRunner, workloads
from trenchcoat import ids, permissions, pgmigrate, rpc, shards, tls, tokens
from trenchcoat.clients.directory import DirectoryClient
from trenchcoat.clients.media import MediaClient
from trenchcoat.errors import TrenchcoatError
from trenchcoat.etcd import Etcd
from trenchcoat.ops import dependencies, k8s, ports

# The pods listen on the default ports (on addresses of their own, but nginx and the kubelet
# checks reach 127.0.0.1 too): never beside `trenchcoat up` (make test runs two workers).
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group(name="default-ports")]

DEPENDENCIES = {"etcd": 2379, "postgres": 5432, "redis": 6379}
"""The StatefulSets of dependencies.yaml and their client ports: a private instance stands in
for each of their pods (``<set>-<ordinal>.<set>``; each Redis pod a node of one private Redis
Cluster)."""
READY_S = 240.0
WAITERS = (("directory", "etcd"), ("store", "etcd"), ("router", "PostgreSQL"), ("feed", "PostgreSQL"),
           ("f4-keystore", "PostgreSQL"), ("fanout", "PostgreSQL"))
"""Workloads whose pods cannot start serving without a dependency, and which."""


def _until_waiting(pods: list[kubelet.Pod], what: str, timeout: float = READY_S) -> None:
    deadline = time.monotonic() + timeout
    for pod in pods:
        assert pod.process is not None
        while True:
            assert pod.process.running(), f"{pod.name} exited instead of waiting for {what}:\n{pod.process.log_tail(15)}"
            log = pod.process.log_path.read_text() if pod.process.log_path.exists() else ""
            if "waiting up to" in log and what in log:
                break
            assert time.monotonic() < deadline, f"{pod.name} does not say it waits for {what}:\n{log[-2000:]}"
            time.sleep(0.2)


def eventually_log(pod: kubelet.Pod, text: str, timeout: float = 60.0) -> None:
    """Waits until ``pod``'s log says ``text``."""
    assert pod.process is not None
    deadline = time.monotonic() + timeout
    while not (pod.process.log_path.exists() and text in pod.process.log_path.read_text()):
        assert time.monotonic() < deadline, f"{pod.name} does not say {text!r}:\n{pod.process.log_tail(15)}"
        time.sleep(0.1)


def test_every_pod_of_the_kind_overlay_starts_and_they_serve_together(tmp_path: Path):
    """As on a fresh cluster: every pod at once, the Jobs' with them, before etcd, PostgreSQL
    and the Redis nodes are up (each waits for them, cluster.start_wait_s; the Jobs fail and
    are retried until what they need answers), in no particular order."""
    docs = kubelet.render(K8S / "overlays" / "kind")
    replicas = {name: kubelet.by_kind(docs, "StatefulSet")[name]["spec"]["replicas"] for name in DEPENDENCIES}
    assert replicas == {"etcd": 1, "postgres": 2, "redis": 6}, \
        "the base runs two PostgreSQL instances and a Redis Cluster of six nodes"
    with contextlib.ExitStack() as stack:
        root = harness.open_tempdir("tc-k8s-deps-")  # PostgreSQL runs as another user when we are root
        stack.callback(shutil.rmtree, root, True)
        local = {name: [ports.free_port() for _ in range(n)] for name, n in replicas.items()}
        # The cluster's CA, as `trenchcoat certs --k8s` makes it; the dependencies' certificates
        # and passwords from it, as their StatefulSets get them from the Secrets (both
        # PostgreSQL instances the one password, as both pods read it from trenchcoat-postgres).
        tls_dir = tmp_path / "tls"
        tls.make_ca(tls_dir)
        tls.make_user_keys(tls_dir)
        postgres = [dependencies.postgres_process(root / f"pg{i}", root / f"pg{i}.log", pg_port, durable=False,
                                                  tls_dir=tls_dir) for i, pg_port in enumerate(local["postgres"])]
        # The Redis pods: the nodes of one private Redis Cluster (3 primaries with a replica
        # each, TLS on the client port, the bus and replication, the ACL user of the Secret),
        # started but not formed: the Job redis-cluster-init forms it, as in the cluster.
        redis = dependencies.redis_cluster_processes(
            root / "redis", root / "redis-logs", persistent=False, tls_dir=tls_dir,
            masters=replicas["redis"] // (1 + k8s.REDIS_REPLICAS_PER_PRIMARY),
            replicas_per_master=k8s.REDIS_REPLICAS_PER_PRIMARY,
            addresses=[(port, ports.free_port()) for port in local["redis"]])
        deps = [dependencies.etcd_process(root / "etcd", root / "etcd.log", local["etcd"][0], ports.free_port(),
                                          tls_dir=tls_dir),
                *postgres]
        for dep in [*deps, *redis.nodes]:
            stack.callback(dep.stop)
        stand_ins = {f"{name}-{i}.{name}:{DEPENDENCIES[name]}": f"127.0.0.1:{local_port}"
                     for name, local_ports in local.items() for i, local_port in enumerate(local_ports)}
        api = stack.enter_context(kubelet.FakeApiServer(tmp_path / "api", kubelet.kind_nodes(), docs))
        runner = PodRunner(docs, kubelet.kind_nodes(), tmp_path, stand_ins, api=api)
        stack.callback(runner.stop_all)
        ours = [w for w in workloads(docs) if w["metadata"]["name"] not in DEPENDENCIES]
        by_job = kubelet.by_kind(docs, "Job")
        assert set(by_job) == {k8s.SHARDS_INIT, k8s.REDIS_CLUSTER_INIT}
        placed = [(w, runner.place(w)) for w in ours]  # every name resolves before anything starts
        shards_init = runner.place(by_job[k8s.SHARDS_INIT])
        # The redis image's Job: its script (sh, redis-cli) runs here as it is, with Debian's
        # redis-cli, over the stand-in nodes its REDIS_NODES names.
        redis_init = runner.place(by_job[k8s.REDIS_CLUSTER_INIT])
        _identities(runner, tls_dir)
        # The Job redis-cluster-init with the pods, before the Redis nodes are up: its runs
        # fail (a node does not answer) and are retried.
        for pod in redis_init:
            runner.start(pod)
        for _, pods in reversed(placed):  # the router before the directory, the CDN before the caches...
            for pod in pods:
                runner.start(pod)
        for pod in shards_init:
            runner.start(pod)
        # Those that need a dependency to start wait for it, saying so (and do not exit).
        for name, what in WAITERS:
            _until_waiting(runner.pods[name], what)
        for pod in redis_init:
            eventually_log(pod, "does not answer yet")
        for dep in deps:
            dep.start()
        # Once every node answers, the Job forms the cluster, and it is whole: three
        # primaries, each with its replica (the pods using Redis wait for it meanwhile).
        redis.start()
        runner.complete(redis_init, READY_S)
        redis.wait_ok(60)
        assert sum(node.master and bool(node.slots) for node in redis.view()) == redis.masters
        for dep in deps:
            dep.wait_ready(60)
        # Those holding rows wait for the shard map the Job stores (a failed run, before the
        # dependencies were up, is retried as its backoffLimit allows).
        runner.complete(shards_init, READY_S)
        for _, pods in placed:
            runner.wait_ready(pods, READY_S)
        # The Job made again (deleted and applied) leaves the formed cluster as it is.
        [again] = redis_init
        assert again.process is not None
        runner.start(again)
        runner.complete([again], READY_S)
        assert "not created again" in again.process.log_path.read_text()
        redis.wait_ok(60)
        started = {w["metadata"]["name"]: len(pods) for w, pods in placed}
        assert started == {w["metadata"]["name"]: w["spec"]["replicas"] for w in ours}
        cluster = tomllib.loads(kubelet.config_map_data(docs, "trenchcoat-config")[1]["trenchcoat.toml"])["cluster"]
        asyncio.run(_serve_together(runner, tls_dir, f"127.0.0.1:{local['etcd'][0]}", cluster["name"],
                                    [pg.endpoint for pg in postgres]))
        # The services' Redis is the cluster (the Secret's cluster key): what they keep there
        # (the router's rendition jobs...) is spread over the primaries by slot.
        for name in ("router", "transformer", "feed", "fanout"):
            pod = runner.pods[name][0]
            assert pod.env["TRENCHCOAT_REDIS__CLUSTER"] == "true", name
            assert pod.env["TRENCHCOAT_REDIS__URL"].split("@")[1].startswith(f"127.0.0.1:{local['redis'][0]}/"), name
        keys = {node.port: redis.command(node.port, "DBSIZE") for node in redis.view() if node.master}
        assert sum(int(str(n)) for n in keys.values()) > 0, f"nothing in the Redis Cluster: {keys}"
        # Graceful termination: every pod drains and exits by itself within its grace period.
        codes = runner.stop_all()
        unclean = {name: code for name, code in codes.items() if code not in (0, -signal.SIGTERM)}
        assert not unclean, f"pods killed or failing on SIGTERM: {unclean}"


def _identities(runner: PodRunner, directory: Path) -> None:
    """Each role's Secret trenchcoat-tls-<role>, and the credentials' Secrets, as `trenchcoat
    certs --k8s` writes them, with its pods' addresses among the names each role's
    certificate answers to (the stand-in dials pods by their loopback addresses, where a
    cluster dials their DNS names)."""
    ips: dict[str, list[str]] = {}
    for pods in runner.pods.values():
        for pod in pods:
            role = tls.ROLE_OF_MODULE.get(kubelet.container(pod.workload)["command"][-1])
            if role is not None:
                ips.setdefault(role, []).append(pod.ip)
    for role in tls.ROLES:
        tls.issue(directory, role, hosts=[*k8s.certificate_hosts(role), *ips.get(role, [])])
    runner.docs += [d for d in (json.loads(doc) for doc in k8s.secrets(directory, tls.ROLES).split("---\n")
                                if doc.strip()) if d["kind"] == "Secret"]


async def _serve_together(runner: PodRunner, tls_dir: Path, etcd_endpoint: str, cluster: str,
                          dsns: list[str]) -> None:
    router = runner.pods["router"][0]
    cdn = runner.pods["cdn"][0]
    directory = runner.pods["directory"][0]
    zone_of = {n.name: n.zone for n in kubelet.kind_nodes()}
    # The test calls the pods as the services would (their CA's identities, not the suite's).
    async with rpc.ChannelPool(tls=permissions.StandIn(tls_dir)) as pool:
        directory_client = DirectoryClient(pool, [f"{directory.ip}:7100"])

        async def all_stores():  # the directory's view of the map catches up within its refresh
            stores = await directory_client.list_stores()
            return stores if len(stores) == 6 else None

        stores = await eventually(all_stores, timeout=60, what="every store registered in the directory's view")
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

        def upload(owner: int):
            async def attempt():
                try:
                    return await media.upload(body, owner_id=owner, content_type="image/jpeg",
                                              token=tokens.Minter(tls_dir).token_for(owner))
                except TrenchcoatError:
                    return None  # no writable volume yet: the leader is creating them
            return attempt

        # Owners whose shards (owner % 8192) are on the first and on the second instance.
        owners = (7, ids.SHARD_COUNT // 2 + 7)
        uploaded = [await eventually(upload(owner), timeout=120, what=f"an upload for user {owner} through the router pod")
                    for owner in owners]
    # The Job stored the map over both instances, postgres.dsn's first (the order of the
    # Secret's dsn and shard_dsns), and each media row is on the instance holding its shard.
    etcd = Etcd([etcd_endpoint], cluster, timeout_s=5, tls=tls.ClientTls(tls.Identity(tls_dir, "admin")))
    try:
        shard_map = await shards.stored(etcd)
    finally:
        await etcd.close()
    async with pgmigrate.reaching(dsns, timeout_s=5) as instances:
        names = list(instances)
        assert shard_map == shards.ShardMap.even(names), f"the Job's map: {shard_map}, the instances: {names}"
        for name, done in zip(names, uploaded, strict=True):
            assert shard_map.instance_of_user(done.owner_id) == name
            for other, (db, _) in instances.items():
                row = await db.fetchval("SELECT owner_id FROM media WHERE media_id = $1", ids.to_signed(done.media_id))
                assert row == (done.owner_id if other == name else None), f"media {done.media_id} on {other}"
    for done in uploaded:
        url = done.url.replace("http://localhost:8080", f"http://{cdn.ip}:8080")
        with urllib.request.urlopen(url, timeout=30) as response:
            assert response.read() == body
