"""A media cluster of real processes for integration and fault tests: directories,
stores on racks and a router, sharing one private etcd (and PostgreSQL for the router),
with timings shortened so liveness, elections and repairs happen in seconds."""

from __future__ import annotations

import asyncio
import re
import time
import urllib.parse
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests import harness
from trenchcoat import config as configmod
from trenchcoat import redisio, rpc
from trenchcoat.clients.cache import CacheClient
from trenchcoat.clients.directory import DirectoryClient, StoreView, VolumeView
from trenchcoat.clients.feed import FeedClient, FeedEntry
from trenchcoat.clients.media import MediaClient
from trenchcoat.clients.store import StoreClient
from trenchcoat.clients.transformer import TransformerClient
from trenchcoat.config import env_key
from trenchcoat.errors import TrenchcoatError
from trenchcoat.ops import launcher, ports

FAST = {
    "TRENCHCOAT_DIRECTORY__LIVENESS_TTL_S": "2",
    "TRENCHCOAT_DIRECTORY__LEADER_TTL_S": "2",
    "TRENCHCOAT_DIRECTORY__PROBE_INTERVAL_S": "0.5",
    "TRENCHCOAT_DIRECTORY__PROBE_FAILURES": "2",
    "TRENCHCOAT_DIRECTORY__REFRESH_INTERVAL_S": "0.2",
    "TRENCHCOAT_DIRECTORY__MIN_WRITABLE_VOLUMES": "2",
    "TRENCHCOAT_STORE__VOLUME_CAPACITY_BYTES": str(64 * 1024 * 1024),
    "TRENCHCOAT_STORE__MAX_NEEDLE_BYTES": str(4 * 1024 * 1024),
    "TRENCHCOAT_ROUTER__MAX_UPLOAD_BYTES": str(4 * 1024 * 1024),
    "TRENCHCOAT_ROUTER__REPLICA_TIMEOUT_S": "3",
    "TRENCHCOAT_ROUTER__DELETE_RETRY_INTERVAL_S": "0.3",
    "TRENCHCOAT_ROUTER__DELETE_RETRY_MAX_S": "2",
    "TRENCHCOAT_CLUSTER__LOG_LEVEL": "INFO",
    # The feed: sweeps and takeovers in seconds, not tens of seconds.
    "TRENCHCOAT_FEED__SWEEP_INTERVAL_S": "1",
    "TRENCHCOAT_FEED__SWEEP_AFTER_S": "4",
    "TRENCHCOAT_FANOUT__CLAIM_IDLE_S": "3",
    # No f4 cell unless a test starts one (tests/fault/test_f4_migration.py): sealed volumes stay hot.
    "TRENCHCOAT_F4__MIGRATE": "false",
    # No transformers unless a test starts them (tests/integration/test_renditions.py).
    "TRENCHCOAT_ROUTER__RENDITIONS": "false",
}
CALL_TIMEOUT_S = 30.0
"""Bound on one call of a test's store, cache or router client (the machine is busy)."""
DIRECTORY_TIMEOUT_S = 10.0
"""Bound on one call to one directory before the directory client tries the next."""

for _section in ("DIRECTORY", "STORE", "CACHE", "ROUTER", "FEED", "FANOUT", "TRANSFORMER"):
    FAST[f"TRENCHCOAT_{_section}__DRAIN_NOTICE_S"] = "0"
    FAST[f"TRENCHCOAT_{_section}__GRACE_PERIOD_S"] = "1"
    # Each process gets its own free ports; with count > 1 the config would also claim
    # port + 1.. for siblings and could find them clashing with another free port.
    FAST[f"TRENCHCOAT_{_section}__COUNT"] = "1"


def small_cell(front_port: int, storage: Sequence[str], keystore: str) -> dict[str, str]:
    """The settings of a test's f4 cell: where its front, storage nodes and key store
    listen, and stripes of 16 KiB cells in 8 rows, so a few photos fill one."""
    return {env_key("f4", "port"): str(front_port), env_key("f4", "storage_endpoints"): ",".join(storage),
            env_key("f4", "keystore_endpoint"): keystore, env_key("f4", "cell_bytes"): str(16 * 1024),
            env_key("f4", "rows"): "8"}


@dataclass
class MediaCluster:
    """Processes of one test's cluster; each can be killed and started again."""

    start: Callable[..., harness.ServiceProcess]
    data_dir: Path
    etcd: str
    postgres: str = ""
    env: dict[str, str] = field(default_factory=dict)
    directories: list[harness.ServiceProcess | None] = field(default_factory=list)
    stores: dict[int, harness.ServiceProcess | None] = field(default_factory=dict)
    store_ports: dict[int, tuple[int, int, int]] = field(default_factory=dict)
    """(gRPC, metrics, HTTP) ports of each machine id, kept across its restarts."""
    directory_ports: list[tuple[int, int]] = field(default_factory=list)
    router: harness.ServiceProcess | None = None
    caches: list[harness.ServiceProcess | None] = field(default_factory=list)
    cache_ports: list[tuple[int, int]] = field(default_factory=list)
    cache_http_ports: list[int] = field(default_factory=list)

    @property
    def gateway(self) -> str:
        """https://host:port where cache 1 serves photo URLs (what the CDN pulls from; read
        with ``harness.https_session``)."""
        return self.gateways()[0]

    def gateways(self) -> list[str]:
        """https://host:port of every cache's photo HTTP port, cache id i + 1 at position i."""
        return [f"https://127.0.0.1:{p}" for p in self.cache_http_ports]

    redis: str = ""
    redis_cluster: bool = False
    """Whether ``redis`` names a node of a Redis Cluster (redis.cluster)."""
    feed: harness.ServiceProcess | None = None
    fanout: list[harness.ServiceProcess | None] = field(default_factory=list)
    transformers: list[harness.ServiceProcess | None] = field(default_factory=list)
    transformer_ports: list[tuple[int, int]] = field(default_factory=list)
    """(gRPC, metrics) port of transformer i, given out before the caches start (they send
    resizes on read to every transformer)."""
    _launched: list[harness.ServiceProcess] = field(default_factory=list, init=False, repr=False)
    config: configmod.Config = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.env = {
            **FAST,
            "TRENCHCOAT_CLUSTER__NAME": f"t{uuid.uuid4().hex[:12]}",
            "TRENCHCOAT_CLUSTER__DATA_DIR": str(self.data_dir),
            "TRENCHCOAT_ETCD__ENDPOINTS": self.etcd,
            **({"TRENCHCOAT_POSTGRES__DSN": self.postgres} if self.postgres else {}),
            **({"TRENCHCOAT_REDIS__URL": self.redis} if self.redis else {}),
            **({"TRENCHCOAT_REDIS__CLUSTER": "true"} if self.redis_cluster else {}),
            **self.env,
        }
        self.config = configmod.load(env={**self.env, "HOSTNAME": "suite"})
        """What this cluster's processes read, but for their own ports and identity."""

    def redis_client(self) -> redisio.Client:
        """A client of this cluster's Redis, as its services connect (``aclose()`` it)."""
        return redisio.connect(self.redis, timeout_s=30.0, cluster=self.redis_cluster)

    def _process_env(self, section: str, index: int, **ports_by_key: int) -> dict[str, str]:
        """This cluster's environment with what makes process ``index`` of ``section`` itself,
        derived as ``trenchcoat up`` derives it (``launcher.process_env``), with this test's
        free ports: one for each of the section's port keys."""
        service = getattr(self.config, section)
        missing = set(service.port_keys()) - set(ports_by_key)
        assert not missing, f"{section} also listens on {sorted(missing)}: give each a free port"
        return {**self.env, **launcher.process_env(section, service, index, ports_by_key)}

    def directory_endpoints(self) -> list[str]:
        return [f"127.0.0.1:{p}" for p, _ in self.directory_ports]

    def start_directory(self, i: int | None = None, *, wait: bool = True, **extra: str) -> harness.ServiceProcess:
        """Starts directory ``i`` (a new one when None), with ``extra`` settings of its own."""
        if i is None:
            self.directory_ports.append((ports.free_port(), ports.free_port()))
            self.directories.append(None)
            i = len(self.directories) - 1
        port, mport = self.directory_ports[i]
        proc = self.start(f"directory-{i + 1}", harness.python_module("directory"), port=port, metrics_port=mport,
                          env={**self._process_env("directory", i, port=port, metrics_port=mport), **extra}, wait=wait)
        self.directories[i] = proc
        return proc

    def start_store(self, machine_id: int, rack: str, *, name: str = "", wait: bool = True,
                    **extra: str) -> harness.ServiceProcess:
        if name:  # another process claiming this machine id: its own ports
            port, mport, hport = ports.free_port(), ports.free_port(), ports.free_port()
        else:
            port, mport, hport = self.store_ports.setdefault(
                machine_id, (ports.free_port(), ports.free_port(), ports.free_port()))
        proc = self.start(name or f"store-{machine_id}", harness.python_module("store"), port=port, metrics_port=mport,
                          env={**self._process_env("store", machine_id - 1, port=port, metrics_port=mport,
                                                   http_port=hport),
                               env_key("store", "rack"): rack, **extra}, wait=wait)
        self.stores[machine_id] = proc
        return proc

    def start_cache(self, i: int | None = None, *, wait: bool = True) -> harness.ServiceProcess:
        if i is None:
            self.cache_ports.append((ports.free_port(), ports.free_port()))
            self.cache_http_ports.append(ports.free_port())
            self.caches.append(None)
            i = len(self.caches) - 1
        port, mport = self.cache_ports[i]
        proc = self.start(f"cache-{i + 1}", harness.python_module("cache"), port=port, metrics_port=mport,
                          env={**self._process_env("cache", i, port=port, metrics_port=mport,
                                                   http_port=self.cache_http_ports[i]),
                               env_key("cache", "transformer_endpoints"): ",".join(
                                   f"127.0.0.1:{p}" for p, _ in self.transformer_ports),
                               env_key("directory", "endpoints"): ",".join(self.directory_endpoints())},
                          wait=wait)
        self.caches[i] = proc
        return proc

    def start_router(self, *, wait: bool = True) -> harness.ServiceProcess:
        port, mport = ports.free_port(), ports.free_port()
        self.router = self.start("router", harness.python_module("router"), port=port, metrics_port=mport,
                                 env={**self._process_env("router", 0, port=port, metrics_port=mport),
                                      env_key("directory", "endpoints"): ",".join(self.directory_endpoints()),
                                      env_key("router", "cache_endpoints"): ",".join(
                                          f"127.0.0.1:{p}" for p, _ in self.cache_ports)}, wait=wait)
        return self.router

    def start_feed(self, *, wait: bool = True, **extra: str) -> harness.ServiceProcess:
        """The feed process, talking to this cluster's router(s)."""
        assert self.router is not None, "start the router first: the feed checks posts through it"
        port, mport = ports.free_port(), ports.free_port()
        self.feed = self.start("feed", harness.python_module("feedsvc"), port=port, metrics_port=mport,
                               env={**self._process_env("feed", 0, port=port, metrics_port=mport),
                                    env_key("router", "endpoints"): self.router.address, **extra}, wait=wait)
        return self.feed

    def start_fanout(self, i: int | None = None, *, wait: bool = True, **extra: str) -> harness.ServiceProcess:
        """A fan-out worker process (worker ``i`` again, or a new one)."""
        if i is None:
            self.fanout.append(None)
            i = len(self.fanout) - 1
        port, mport = ports.free_port(), ports.free_port()
        proc = self.start(f"fanout-{i + 1}", harness.python_module("feedsvc.worker"), port=port, metrics_port=mport,
                          env={**self._process_env("fanout", i, port=port, metrics_port=mport), **extra}, wait=wait)
        self.fanout[i] = proc
        return proc

    def start_f4_front(self, port: int) -> harness.ServiceProcess:
        """The front of the f4 cell this cluster's environment names (``small_cell``),
        listening on ``port`` (the one the cell's settings give) and following this
        cluster's directories."""
        mport = ports.free_port()
        return self.start("f4", harness.python_module("f4"), port=port, metrics_port=mport,
                          env={**self._process_env("f4", 0, port=port, metrics_port=mport),
                               env_key("directory", "endpoints"): ",".join(self.directory_endpoints())})

    def start_transformer(self, i: int | None = None, *, wait: bool = True, **extra: str) -> harness.ServiceProcess:
        """A transformer worker process (worker ``i`` again, or a new one), reading and
        writing through this cluster's router."""
        assert self.router is not None, "start the router first: transformers read sources and store through it"
        if i is None:
            self.transformers.append(None)
            i = len(self.transformers) - 1
        while len(self.transformer_ports) <= i:
            self.transformer_ports.append((ports.free_port(), ports.free_port()))
        port, mport = self.transformer_ports[i]
        proc = self.start(f"transformer-{i + 1}", harness.python_module("transformer"), port=port,
                          metrics_port=mport,
                          env={**self._process_env("transformer", i, port=port, metrics_port=mport),
                               env_key("router", "endpoints"): self.router.address, **extra}, wait=wait)
        self.transformers[i] = proc
        return proc

    def start_all(self, *, directories: int = 1, stores: int = 3, racks: tuple[str, ...] = ("a", "b", "c"),
                  router: bool = False, feed: bool = False, fanout: int = 0, transformers: int = 0,
                  wait: bool = True) -> MediaCluster:
        """Starts the processes all at once (each waits for what it needs: etcd, a
        directory's map), then waits until every one is SERVING (unless ``wait`` is false:
        ``wait_all`` then). The smallest cluster by default, a directory and a store on each
        of 3 racks: a test that needs a leader's failover or volumes avoiding a store asks
        for more."""
        launched = [self.start_directory(wait=False) for _ in range(directories)]
        launched += [self.start_store(m, racks[(m - 1) % len(racks)], wait=False) for m in range(1, stores + 1)]
        if router or feed or transformers:
            while len(self.transformer_ports) < transformers:  # the caches send resizes to every one
                self.transformer_ports.append((ports.free_port(), ports.free_port()))
            launched += [self.start_cache(wait=False), self.start_router(wait=False)]
        if feed:
            launched.append(self.start_feed(wait=False))
        launched += [self.start_fanout(wait=False) for _ in range(fanout)]
        launched += [self.start_transformer(wait=False) for _ in range(transformers)]
        self._launched = launched
        if wait:
            self.wait_all()
        return self

    def wait_all(self) -> None:
        """Waits until every process ``start_all`` started is SERVING."""
        harness.wait_all(self._launched, timeout=90)

    def directory_address(self) -> str:
        return next(p.address for p in self.directories if p is not None and p.process.running())

    def running_directories(self) -> list[str]:
        """Addresses of the directories still running, in start order."""
        return [p.address for p in self.directories if p is not None and p.process.running()]

    def directory(self, pool: rpc.ChannelPool) -> DirectoryClient:
        """A client of the running directories (the first one asked first) over ``pool``."""
        return DirectoryClient(pool, self.running_directories(), timeout_s=DIRECTORY_TIMEOUT_S)

    @asynccontextmanager
    async def clients(self) -> AsyncIterator[Clients]:
        """Typed clients of this cluster over one channel pool, closed on leaving the block:
        ``async with cluster.clients() as c: await c.media.upload(...)``."""
        async with rpc.ChannelPool() as pool:
            yield Clients(self, pool)

    async def volumes(self) -> list[VolumeView]:
        async with polling_pool() as pool:
            return await self.directory(pool).list_volumes()

    async def stores_seen(self) -> list[StoreView]:
        async with polling_pool() as pool:
            return await self.directory(pool).list_stores()

    async def leader(self) -> tuple[str, str] | None:
        """(name, address) of the leading directory, or None (an election, no directory)."""
        async with polling_pool() as pool:
            try:
                return await self.directory(pool).leader()
            except TrenchcoatError:
                return None


class Clients:
    """The typed clients of one cluster's processes, sharing one channel pool."""

    def __init__(self, cluster: MediaCluster, pool: rpc.ChannelPool) -> None:
        self.cluster = cluster
        self.pool = pool
        self.store = StoreClient(pool, timeout_s=CALL_TIMEOUT_S)

    @property
    def directory(self) -> DirectoryClient:
        """The running directories (asked at each use: one may have been killed)."""
        return self.cluster.directory(self.pool)

    @property
    def media(self) -> MediaClient:
        """The router's MediaService."""
        assert self.cluster.router is not None, "the cluster has no router"
        return MediaClient(self.pool, self.cluster.router.address, timeout_s=60.0)

    @property
    def feed(self) -> FeedClient:
        assert self.cluster.feed is not None, "the cluster has no feed"
        return FeedClient(self.pool, self.cluster.feed.address, timeout_s=CALL_TIMEOUT_S)

    @property
    def transformer(self) -> TransformerClient:
        """The first running transformer worker's TransformerService."""
        address = next(p.address for p in self.cluster.transformers if p is not None and p.process.running())
        return TransformerClient(self.pool, address, timeout_s=CALL_TIMEOUT_S)

    @property
    def cache(self) -> CacheClient:
        """The caches, as the router is given them (cache i is cache_ports[i - 1])."""
        return CacheClient(self.pool, [f"127.0.0.1:{p}" for p, _ in self.cluster.cache_ports],
                           timeout_s=CALL_TIMEOUT_S)


_POLLING_POOLS: dict[asyncio.AbstractEventLoop, rpc.ChannelPool | None] = {}
"""The channel pool of each test's event loop (``polling_pools``): what the cluster's polls
(``volumes``, ``stores_seen``, ``leader``) use, instead of a pool, and channels, each."""


@asynccontextmanager
async def polling_pools() -> AsyncIterator[None]:
    """One channel pool for every poll of the running loop (a test), made at its first poll
    (so it presents the identity the test set by then, ``rpc.use_tls``), closed at its end."""
    loop = asyncio.get_running_loop()
    _POLLING_POOLS[loop] = None
    try:
        yield
    finally:
        pool = _POLLING_POOLS.pop(loop, None)
        if pool is not None:
            await pool.close()


@asynccontextmanager
async def polling_pool() -> AsyncIterator[rpc.ChannelPool]:
    """The running test's polling pool, or (outside one) a pool for this call alone."""
    loop = asyncio.get_running_loop()
    if loop in _POLLING_POOLS:
        pool = _POLLING_POOLS[loop]
        if pool is None:
            pool = _POLLING_POOLS[loop] = rpc.ChannelPool()
        yield pool
        return
    async with rpc.ChannelPool() as own:
        yield own


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float = 30.0, what: str = "") -> Any:
    """Polls ``check`` until it returns something truthy (a typed error it raises counts as
    falsy); fails with ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = await check()
        except TrenchcoatError as exc:
            last = exc
        if last and not isinstance(last, Exception):
            return last
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or check}: last saw {last!r}")


async def metric(proc: harness.ServiceProcess, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples on ``proc``'s /metrics that carry ``labels``."""
    async with harness.https_session() as session, session.get(proc.metrics_url) as r:
        text = await r.text()
    total = 0.0
    for found in re.finditer(rf"^{name}(?:{{([^}}]*)}})? (\S+)$", text, re.MULTILINE):
        if all(f'{k}="{v}"' in (found.group(1) or "") for k, v in labels.items()):
            total += float(found.group(2))
    return total


async def fresh_database(dsn: str) -> str:
    """A new empty database on the PostgreSQL at ``dsn``; returns its DSN."""
    import asyncpg

    name = f"t{uuid.uuid4().hex[:16]}"
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return urllib.parse.urlsplit(dsn)._replace(path=f"/{name}").geturl()  # its TLS and password settings kept


async def writable_volumes(cluster: MediaCluster, n: int) -> list[VolumeView] | None:
    volumes = [v for v in await cluster.volumes() if v.state == "writable"]
    return volumes if len(volumes) >= n else None


async def full_media_cluster(service: Callable[..., harness.ServiceProcess], etcd: harness.Dependency,
                             postgres: harness.Dependency, tmp_path: Path, *, directories: int = 1,
                             stores: int = 3, env: Mapping[str, str] | None = None) -> MediaCluster:
    """Directories (1), stores on 3 racks (3), a cache and a router, with writable volumes
    (``env``: settings of this cluster's own, over ``FAST``)."""
    cluster = MediaCluster(service, tmp_path / "data", etcd.endpoint, postgres=await fresh_database(postgres.endpoint),
                           env=dict(env or {}))
    cluster.start_all(directories=directories, stores=stores, router=True)
    await eventually(lambda: writable_volumes(cluster, 2), what="2 writable volumes")
    return cluster


def shared(build: Awaitable[MediaCluster]) -> MediaCluster:
    """Builds a cluster a whole module shares, from a sync module-scoped fixture (its own
    event loop for the build: each test then talks to it from its own loop)."""
    return asyncio.run(build)  # type: ignore[arg-type]


async def flushed(redis_url: str, *, cluster: bool = False) -> None:
    """Empties the Redis at ``redis_url`` (each primary of a cluster): every test starts
    from nothing there."""
    client = redisio.connect(redis_url, timeout_s=30.0, cluster=cluster)
    try:
        await client.flushall()
    finally:
        await client.aclose()


async def feed_cluster(service: Callable[..., harness.ServiceProcess], etcd: harness.Dependency,
                       postgres: harness.Dependency, redis_url: str, tmp_path: Path, *, fanout_workers: int = 2,
                       directories: int = 1, stores: int = 3, env: Mapping[str, str] | None = None,
                       redis_cluster: bool = False) -> MediaCluster:
    """A media cluster (a directory, 3 stores, a cache, a router) plus the feed and its
    fan-out workers, on a fresh database and the given Redis (flushed first: every cluster
    starts from empty timelines; ``redis_cluster``: a node of a Redis Cluster). ``env``:
    config overrides (TRENCHCOAT_FEED__...), a mapping rather than ``**`` keywords, which
    could land on the counts above."""
    await flushed(redis_url, cluster=redis_cluster)
    cluster = MediaCluster(service, tmp_path / "data", etcd.endpoint, postgres=await fresh_database(postgres.endpoint),
                           redis=redis_url, redis_cluster=redis_cluster, env=dict(env or {}))
    cluster.start_all(directories=directories, stores=stores, router=True, feed=True, fanout=fanout_workers)
    await eventually(lambda: writable_volumes(cluster, 2), what="2 writable volumes")
    return cluster


async def rendition_cluster(service: Callable[..., harness.ServiceProcess], etcd: harness.Dependency,
                            postgres: harness.Dependency, redis_url: str, tmp_path: Path, *, transformers: int = 2,
                            directories: int = 1, stores: int = 3,
                            env: Mapping[str, str] | None = None, redis_cluster: bool = False) -> MediaCluster:
    """A media cluster (a directory, 3 stores, a cache, a router enqueueing rendition jobs)
    and ``transformers`` workers, on a fresh database and the given Redis (flushed first).
    ``env``: config overrides (TRENCHCOAT_TRANSFORMER__...), as for ``feed_cluster``."""
    await flushed(redis_url, cluster=redis_cluster)
    cluster = MediaCluster(service, tmp_path / "data", etcd.endpoint, postgres=await fresh_database(postgres.endpoint),
                           redis=redis_url, redis_cluster=redis_cluster,
                           env={"TRENCHCOAT_ROUTER__RENDITIONS": "true", **(env or {})})
    cluster.transformer_ports = [(ports.free_port(), ports.free_port()) for _ in range(max(transformers, 1))]
    cluster.start_all(directories=directories, stores=stores, router=True, transformers=transformers)
    await eventually(lambda: writable_volumes(cluster, 2), what="2 writable volumes")
    return cluster


async def fanned_out(cluster: MediaCluster, entry: FeedEntry) -> bool:
    """Whether the post row of ``entry`` records its fan-out as finished."""
    import asyncpg

    from trenchcoat.ids import to_signed

    conn = await asyncpg.connect(cluster.postgres)
    try:
        return await conn.fetchval("SELECT fanned_out_at IS NOT NULL FROM feed_posts WHERE post_id = $1",
                                   to_signed(entry.media_id))
    finally:
        await conn.close()
