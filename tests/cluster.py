"""A media cluster of real processes for integration and fault tests: directories,
stores on racks and a router, sharing one private etcd (and PostgreSQL for the router),
with timings shortened so liveness, elections and repairs happen in seconds."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from tests import harness
from trenchcoat import procs
from trenchcoat.v1 import directory_pb2 as dpb
from trenchcoat.v1 import directory_pb2_grpc

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
    "TRENCHCOAT_CLUSTER__LOG_LEVEL": "INFO",
}
for _section in ("DIRECTORY", "STORE", "CACHE", "ROUTER"):
    FAST[f"TRENCHCOAT_{_section}__DRAIN_NOTICE_S"] = "0"
    FAST[f"TRENCHCOAT_{_section}__GRACE_PERIOD_S"] = "1"
    # Each process gets its own free ports; with count > 1 the config would also claim
    # port + 1.. for siblings and could find them clashing with another free port.
    FAST[f"TRENCHCOAT_{_section}__COUNT"] = "1"


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
    store_ports: dict[int, tuple[int, int]] = field(default_factory=dict)
    directory_ports: list[tuple[int, int]] = field(default_factory=list)
    router: harness.ServiceProcess | None = None
    caches: list[harness.ServiceProcess | None] = field(default_factory=list)
    cache_ports: list[tuple[int, int]] = field(default_factory=list)
    gateway: str = ""
    """http://host:port of the router's photo gateway."""

    def __post_init__(self) -> None:
        self.env = {
            **FAST,
            "TRENCHCOAT_CLUSTER__NAME": f"t{uuid.uuid4().hex[:12]}",
            "TRENCHCOAT_CLUSTER__DATA_DIR": str(self.data_dir),
            "TRENCHCOAT_ETCD__ENDPOINTS": self.etcd,
            **({"TRENCHCOAT_POSTGRES__DSN": self.postgres} if self.postgres else {}),
            **self.env,
        }

    def directory_endpoints(self) -> list[str]:
        return [f"127.0.0.1:{p}" for p, _ in self.directory_ports]

    def start_directory(self, i: int | None = None) -> harness.ServiceProcess:
        if i is None:
            self.directory_ports.append((procs.free_port(), procs.free_port()))
            self.directories.append(None)
            i = len(self.directories) - 1
        port, mport = self.directory_ports[i]
        proc = self.start(f"directory-{i + 1}", harness.python_module("directory"), port=port, metrics_port=mport,
                          env={**self.env, "TRENCHCOAT_DIRECTORY__PORT": str(port),
                               "TRENCHCOAT_DIRECTORY__METRICS_PORT": str(mport)})
        self.directories[i] = proc
        return proc

    def start_store(self, machine_id: int, rack: str, *, name: str = "", **extra: str) -> harness.ServiceProcess:
        if name:  # another process claiming this machine id: its own ports
            port, mport = procs.free_port(), procs.free_port()
        else:
            port, mport = self.store_ports.setdefault(machine_id, (procs.free_port(), procs.free_port()))
        proc = self.start(name or f"store-{machine_id}", harness.python_module("store"), port=port, metrics_port=mport,
                          env={**self.env, "TRENCHCOAT_STORE__PORT": str(port),
                               "TRENCHCOAT_STORE__METRICS_PORT": str(mport),
                               "TRENCHCOAT_STORE__MACHINE_ID": str(machine_id),
                               "TRENCHCOAT_STORE__RACK": rack, **extra})
        self.stores[machine_id] = proc
        return proc

    def start_cache(self, i: int | None = None) -> harness.ServiceProcess:
        if i is None:
            self.cache_ports.append((procs.free_port(), procs.free_port()))
            self.caches.append(None)
            i = len(self.caches) - 1
        port, mport = self.cache_ports[i]
        proc = self.start(f"cache-{i + 1}", harness.python_module("cache"), port=port, metrics_port=mport,
                          env={**self.env, "TRENCHCOAT_CACHE__PORT": str(port), "TRENCHCOAT_CACHE__METRICS_PORT": str(mport),
                               "TRENCHCOAT_ROUTER__DIRECTORY_ENDPOINTS": ",".join(self.directory_endpoints())})
        self.caches[i] = proc
        return proc

    def start_router(self) -> harness.ServiceProcess:
        port, mport, http = procs.free_port(), procs.free_port(), procs.free_port()
        self.router = self.start("router", harness.python_module("router"), port=port, metrics_port=mport,
                                 env={**self.env, "TRENCHCOAT_ROUTER__PORT": str(port),
                                      "TRENCHCOAT_ROUTER__METRICS_PORT": str(mport),
                                      "TRENCHCOAT_ROUTER__HTTP_PORT": str(http),
                                      "TRENCHCOAT_ROUTER__DIRECTORY_ENDPOINTS": ",".join(self.directory_endpoints()),
                                      "TRENCHCOAT_ROUTER__CACHE_ENDPOINTS": ",".join(
                                          f"127.0.0.1:{p}" for p, _ in self.cache_ports)})
        self.gateway = f"http://127.0.0.1:{http}"
        return self.router

    def start_all(self, *, directories: int = 2, stores: int = 6, racks: tuple[str, ...] = ("a", "b", "c"),
                  router: bool = False) -> MediaCluster:
        for _ in range(directories):
            self.start_directory()
        for m in range(1, stores + 1):
            self.start_store(m, racks[(m - 1) % len(racks)])
        if router:
            self.start_cache()
            self.start_router()
        return self

    def directory_address(self) -> str:
        return next(p.address for p in self.directories if p is not None and p.process.running())

    async def directory(self) -> directory_pb2_grpc.DirectoryServiceStub:
        channel = grpc.aio.insecure_channel(self.directory_address())
        return directory_pb2_grpc.DirectoryServiceStub(channel)

    async def volumes(self) -> list[dpb.LogicalVolume]:
        async with grpc.aio.insecure_channel(self.directory_address()) as channel:
            stub = directory_pb2_grpc.DirectoryServiceStub(channel)
            return list((await stub.ListVolumes(dpb.ListVolumesRequest())).volumes)

    async def stores_seen(self) -> list[dpb.StoreMachine]:
        async with grpc.aio.insecure_channel(self.directory_address()) as channel:
            stub = directory_pb2_grpc.DirectoryServiceStub(channel)
            return list((await stub.ListStores(dpb.ListStoresRequest())).stores)

    async def leader(self) -> dpb.GetLeaderResponse | None:
        async with grpc.aio.insecure_channel(self.directory_address()) as channel:
            stub = directory_pb2_grpc.DirectoryServiceStub(channel)
            try:
                return await stub.GetLeader(dpb.GetLeaderRequest())
            except grpc.aio.AioRpcError:
                return None


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float = 30.0, what: str = "") -> Any:
    """Polls ``check`` until it returns something truthy; fails with ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = await check()
        except grpc.aio.AioRpcError as exc:
            last = exc
        if last and not isinstance(last, Exception):
            return last
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or check}: last saw {last!r}")


async def fresh_database(dsn: str) -> str:
    """A new empty database on the PostgreSQL at ``dsn``; returns its DSN."""
    import asyncpg

    name = f"t{uuid.uuid4().hex[:16]}"
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return dsn.rsplit("/", 1)[0] + "/" + name


async def writable_volumes(cluster: MediaCluster, n: int) -> list[Any] | None:
    from trenchcoat.v1 import directory_pb2 as dpb

    volumes = [v for v in await cluster.volumes() if v.state == dpb.VOLUME_STATE_WRITABLE]
    return volumes if len(volumes) >= n else None


async def full_media_cluster(service: Callable[..., harness.ServiceProcess], etcd: harness.Dependency,
                             postgres: harness.Dependency, tmp_path: Path) -> MediaCluster:
    """2 directories, 6 stores on 3 racks and a router, with writable volumes."""
    cluster = MediaCluster(service, tmp_path / "data", etcd.endpoint, postgres=await fresh_database(postgres.endpoint))
    cluster.start_all(router=True)
    await eventually(lambda: writable_volumes(cluster, 2), what="2 writable volumes")
    return cluster
