"""Test harness: private etcd, PostgreSQL and Redis, and service processes, for real.

Fixtures in ``tests/conftest.py`` use these; tests may use them directly to restart or
kill things mid-flight. Every process is a ``trenchcoat.ops.processes.ManagedProcess`` so the
session can assert that none outlives it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import ssl
import sys
import tempfile
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from redis.crc import key_slot

from trenchcoat import tls
from trenchcoat.config import env_key
from trenchcoat.ops import dependencies, ports, proc_tree, processes

REPO_ROOT = Path(__file__).resolve().parent.parent


def open_tempdir(prefix: str) -> Path:
    """A temporary directory others can traverse (PostgreSQL runs as another user)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    os.chmod(path, 0o755)
    return path


@dataclass
class Dependency:
    """A running private dependency and how to reach it."""

    process: processes.ManagedProcess
    endpoint: str
    """etcd: host:port; PostgreSQL: a postgresql:// DSN; Redis: a redis:// URL."""
    root: Path

    def restart(self) -> None:
        self.process.stop()
        self.process.start()
        self.process.wait_ready(60)

    def stop(self) -> None:
        self.process.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def frozen(self) -> contextlib.AbstractContextManager[None]:
        """SIGSTOP on every process of the dependency (the one started and all its
        descendants: PostgreSQL's backends each run in a session of their own) for the
        block, SIGCONT after: how a hung disk or a network partition looks to its clients."""
        assert self.process.pid is not None, "the dependency is not running"
        return frozen(self.process.pid)


frozen = proc_tree.frozen
descendants = proc_tree.descendants


TLS_DIR_KEY = env_key("cluster", "tls_dir")
"""The variable naming the session's TLS directory, which every process the tests start inherits."""


def tls_dir() -> Path:
    """The session's CA and identities (tests/conftest.py): the dependencies' certificates
    and passwords live there too."""
    return Path(os.environ[TLS_DIR_KEY])


def https_context(role: str | None = "admin") -> ssl.SSLContext:
    """A client of the cluster's HTTPS ports (the caches' photo ports, the stores' needle
    ports, every /metrics) presenting the session's ``role`` certificate (None: none, the
    CA trusted): as that role's process would, or the operator by default."""
    if role is None:
        return ssl.create_default_context(cafile=str(tls.Identity(tls_dir(), "admin").ca))
    return tls.ClientTls(tls.Identity(tls_dir(), role)).http_context()


def https_session(role: str | None = "admin", **kwargs: Any) -> aiohttp.ClientSession:
    """An aiohttp session with ``https_context(role)``."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=https_context(role)), **kwargs)


async def assert_mutual_tls_only(url: str) -> None:
    """``url`` (https://) refuses a client without a certificate at the handshake, and
    does not speak plaintext HTTP."""
    async with https_session(None) as session:
        with pytest.raises(aiohttp.ClientError):
            async with session.get(url) as r:
                await r.read()
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientError):
            async with session.get(url.replace("https://", "http://", 1)) as r:
                await r.read()


def scrape(url: str, role: str | None = "admin") -> str:
    """The text of a /metrics page (blocking), read as ``role`` (the operator by default;
    None: without a certificate, as a probe)."""
    with urllib.request.urlopen(url, timeout=10, context=https_context(role)) as response:
        assert response.status == 200
        return str(response.read().decode())


def start_etcd() -> Dependency:
    root = open_tempdir("tc-etcd-")
    process = dependencies.etcd_process(root / "data", root / "etcd.log", ports.free_port(), ports.free_port(),
                                        tls_dir=tls_dir())
    return _started(process, root)


def start_postgres() -> Dependency:
    """The session's PostgreSQL; its DSN logs in as the superuser (the tests make a fresh
    database for each cluster), over TLS with its password, as every caller must."""
    root = open_tempdir("tc-pg-")
    process = dependencies.postgres_process(root / "data", root / "postgres.log", ports.free_port(), durable=False,
                                            tls_dir=tls_dir(), owner=dependencies.POSTGRES_USER)
    return _started(process, root)


def start_redis() -> Dependency:
    root = open_tempdir("tc-redis-")
    process = dependencies.redis_process(root / "data", root / "redis.log", ports.free_port(), persistent=False,
                                         tls_dir=tls_dir())
    return _started(process, root)


@dataclass(frozen=True)
class RedisClusterMember:
    """A node of the session's Redis Cluster when asked (``RedisClusterDependency.nodes``)."""

    process: processes.ManagedProcess
    port: int
    master: bool
    """It serves slots now (as the running nodes see it)."""


@dataclass
class RedisClusterDependency:
    """A running private Redis Cluster (``dependencies.redis_cluster_processes``, 3 masters
    with a replica each, TLS as the single Redis) and the faults a test deals it."""

    cluster: dependencies.RedisCluster
    root: Path

    @property
    def endpoint(self) -> str:
        """A ``rediss://`` URL naming its first node, for ``redis.asyncio.RedisCluster.from_url``."""
        return self.cluster.endpoint

    @property
    def nodes(self) -> list[RedisClusterMember]:
        serving = {node.port for node in self.cluster.view() if node.master and node.slots}
        return [RedisClusterMember(process, port, port in serving)
                for process, port in zip(self.cluster.nodes, self.cluster.ports, strict=True)]

    def kill_master_of(self, key: str) -> RedisClusterMember:
        """kill -9 the master serving ``key``'s slot; that node as it was."""
        port = self.cluster.master_of(key_slot(key.encode())).port
        node = next(node for node in self.nodes if node.port == port)
        node.process.kill()
        return node

    @contextlib.contextmanager
    def replica_cut_off(self, key: str) -> Iterator[dependencies.RedisClusterNode]:
        """For the block, the replica of the master serving ``key``'s slot takes none of its
        writes: frozen (SIGSTOP), and its link cut, or what the master had sent would wait in
        the frozen replica's socket, to be read when it wakes. Yields that master: what it
        acknowledges in the block is on it alone, lost if it dies then."""
        primary = self.cluster.master_of(key_slot(key.encode()))
        replica_port = next(n.port for n in self.cluster.view() if n.master_id == primary.id)
        replica = self.cluster.nodes[self.cluster.ports.index(replica_port)]
        assert replica.pid is not None
        with frozen(replica.pid):
            self.cluster.command(primary.port, "CLIENT", "KILL", "TYPE", "replica")
            yield primary

    def restart(self, node: RedisClusterMember) -> None:
        """Stops ``node`` if it runs, starts it again (with its ``nodes.conf``: it rejoins,
        a replica of whoever took its slots meanwhile) and waits until it answers."""
        node.process.stop()
        node.process.start()
        node.process.wait_ready(60)

    def wait_ok(self, timeout: float = 60.0) -> None:
        """Waits until every running node says ``cluster_state:ok`` and sees every slot
        served by a running master; when every node runs, also until every master has its
        replica in sync (``dependencies.RedisCluster.unhealthy``)."""
        self.cluster.wait_ok(timeout, replicas=all(node.running() for node in self.cluster.nodes))

    def wait_replicated(self, timeout: float = 60.0) -> None:
        """Waits until every master's replicas acknowledged every write it has taken."""
        self.cluster.wait_replicated(timeout)

    def stop(self) -> None:
        processes.stop_all(self.cluster.nodes)
        shutil.rmtree(self.root, ignore_errors=True)


def start_redis_cluster() -> RedisClusterDependency:
    """A private Redis Cluster (its nodes started together, then formed into a cluster)
    with the session's TLS identities, as ``start_redis``'s Redis."""
    root = open_tempdir("tc-redis-cluster-")
    cluster = dependencies.redis_cluster_processes(root / "data", root / "logs", persistent=False, tls_dir=tls_dir())
    try:
        cluster.start()
        cluster.create(60)
    except BaseException:
        processes.stop_all(cluster.nodes)
        raise
    return RedisClusterDependency(cluster, root)


def _started(process: processes.ManagedProcess, root: Path) -> Dependency:
    process.start()
    try:
        process.wait_ready(60)
    except BaseException:
        process.stop()
        raise
    return Dependency(process, process.endpoint, root)


@dataclass
class ServiceProcess:
    """A service running as its own process, SERVING on ``address``."""

    process: processes.ManagedProcess
    address: str
    metrics_url: str

    def stop(self, timeout: float = 20.0) -> int | None:
        return self.process.stop(timeout)

    def kill(self) -> None:
        self.process.kill()

    def frozen(self) -> contextlib.AbstractContextManager[None]:
        """The service stopped with SIGSTOP for the block (a hung machine, a partition),
        continued after it."""
        assert self.process.pid is not None, "the service is not running"
        return frozen(self.process.pid)

    def wait_ready(self, timeout: float = 60.0) -> None:
        self.process.wait_ready(timeout)

    def health(self) -> str:
        """Its gRPC health now: SERVING, NOT_SERVING (draining, not ready, or a background
        worker ended), or UNREACHABLE."""
        return processes.grpc_health(self.address, timeout=5.0)

    def log_size(self) -> int:
        """Bytes in its log so far: ``logged_since`` of it is what it logs after now."""
        return self.process.log_path.stat().st_size

    def logged_since(self, offset: int) -> str:
        with open(self.process.log_path, "rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")


def start_service(
    name: str,
    argv: Sequence[str],
    *,
    port: int,
    metrics_port: int,
    log_dir: Path,
    env: Mapping[str, str] | None = None,
    timeout: float = 30.0,
    wait: bool = True,
) -> ServiceProcess:
    """Starts ``argv`` (e.g. ``[sys.executable, "-m", "store"]``) as a real process and
    (unless ``wait`` is false) waits until its gRPC health is SERVING."""
    address = f"127.0.0.1:{port}"
    process = processes.ManagedProcess(
        name=name,
        kind="grpc",
        argv=list(argv),
        log_path=log_dir / f"{name}.log",
        ready=processes.grpc_health_probe(address),
        endpoint=address,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT), **(env or {})},
    )
    process.start()
    try:
        if wait:
            process.wait_ready(timeout)
    except BaseException:
        process.stop()
        raise
    scheme = "http" if (env or {}).get(env_key("cluster", "insecure")) == "true" else "https"
    return ServiceProcess(process, address, f"{scheme}://127.0.0.1:{metrics_port}/metrics")


class Services:
    """The service processes of one test (the ``service`` fixture) or one module's shared
    cluster: ``services(name, argv, port=..., metrics_port=..., ...)`` starts one; at the
    end ``stop_all`` asks them all to stop at once and waits for them together."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.started: list[ServiceProcess] = []

    def __call__(self, name: str, argv: list[str], **kwargs: object) -> ServiceProcess:
        kwargs.setdefault("log_dir", self.log_dir)
        proc = start_service(name, argv, **kwargs)  # type: ignore[arg-type]
        self.started.append(proc)
        return proc

    def stop_all(self, timeout: float = 20.0) -> None:
        processes.stop_all([p.process for p in reversed(self.started)], timeout)

    def complaints(self, per_log: int = 8, width: int = 240) -> str:
        """The last ``per_log`` WARNING and ERROR lines of each log these services wrote
        (each cut at ``width``): what a failed test's report shows, so a failure in CI,
        where the logs are gone afterwards, says what the services saw."""
        out = []
        for path in sorted({p.process.log_path for p in self.started}):
            try:
                lines = path.read_text(errors="replace").splitlines()
            except FileNotFoundError:
                continue
            loud = [line[:width] for line in lines if " WARNING " in line or " ERROR " in line
                    or " CRITICAL " in line]
            if loud:
                out += [f"{path.name} ({len(loud)} warnings and errors, the last {min(per_log, len(loud))}):",
                        *loud[-per_log:]]
        return "\n".join(out)


def wait_all(services: Sequence[ServiceProcess], timeout: float = 60.0) -> None:
    """Waits until every one of ``services`` (started with ``wait=False``) is SERVING,
    together: processes started at once come up in the time of the slowest."""
    processes.wait_all_ready([s.process for s in services], timeout)


def python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def leftover_processes() -> list[tuple[int, str]]:
    """Processes still alive in the process group of anything this session started."""
    groups = {p.pid for p in processes.started() if p.pid is not None}
    return proc_tree.group_members(groups)
