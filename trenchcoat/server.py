"""The service chassis: boots any servicer on grpc.aio the same way.

Every service process gets, from ``ServiceHost``:

- the standard health service (``grpc.health.v1.Health``): SERVING once started,
  NOT_SERVING from the moment it starts draining;
- server reflection, so ``grpcurl list`` / ``grpcurl describe`` work;
- Prometheus ``/metrics`` over HTTP, fed by ``trenchcoat.interceptor`` (per-method
  requests by code, latency, in-flight) plus whatever the service registers;
- error mapping from ``trenchcoat.errors`` to gRPC status codes;
- readiness: health says NOT_SERVING until the service's ``ready`` conditions hold
  (a cache or router is not ready before its first copy of the volume map arrives);
- graceful SIGTERM/SIGINT: report NOT_SERVING for ``drain_notice_s``, stop accepting,
  give in-flight RPCs ``grace_period_s`` to finish, stop background workers, run the
  closers (final checkpoints, closing files), exit 0;
- a background worker that ends while the service runs (it cannot go on: a bug) makes
  the service report NOT_SERVING for good, with the reason in the log (ERROR, with the
  traceback) and ``trenchcoat_worker_failed{worker}`` = 1, and keeps the process up
  (in-flight and new RPCs are still answered): the supervisor's health probe (a
  Kubernetes liveness probe) sees it and restarts the process whole. A dependency's
  outage never ends a worker (``trenchcoat.workers``), so never the process either.

A service's ``__main__`` builds its servicers and workers and calls ``run_service``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import grpc
from aiohttp import web
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Gauge,
    generate_latest,
    multiprocess,
)

from trenchcoat import config as configmod
from trenchcoat import permissions, pgmigrate, retry, rpc, shards, siblings, tls, tokens
from trenchcoat.config import ClusterConfig, Config, ServiceConfig
from trenchcoat.errors import ConfigError, TrenchcoatError
from trenchcoat.etcd import Etcd
from trenchcoat.httpsite import HttpSite
from trenchcoat.interceptor import ServerInterceptor
from trenchcoat.permissions import contract
from trenchcoat.rpc import SERVER_OPTIONS

log = logging.getLogger(__name__)
T = TypeVar("T")

WORKER_FAILED = Gauge(
    "trenchcoat_worker_failed",
    "1 when a background worker (by class) ended while the service ran: the service reports NOT_SERVING "
    "until it is restarted; its log says why.",
    ["worker"],
    multiprocess_mode="livemax",
)


@dataclass(frozen=True, slots=True)
class Binding:
    """One gRPC service to serve: the servicer, its generated ``add_*_to_server`` and the
    full service name (e.g. ``trenchcoat.v1.StoreService``) for health and reflection."""

    name: str
    servicer: object
    add_to_server: Callable[[Any, grpc.aio.Server], None]


class Worker(Protocol):
    """A background loop owned by the service (compaction, heartbeats, ...). One that
    sets a true ``stops_service`` attribute stops the whole process if it ends while the
    service runs (instead of turning it NOT_SERVING): for a loss health cannot report."""

    async def run(self) -> None: ...

    async def shutdown(self) -> None: ...


class ServiceHost:
    """One gRPC server with health, reflection, metrics, workers and graceful drain."""

    def __init__(
        self,
        *,
        name: str,
        host: str,
        port: int,
        metrics_port: int,
        grace_period_s: float = 10.0,
        drain_notice_s: float = 0.5,
        bindings: Sequence[Binding] = (),
        generic_handlers: Sequence[grpc.GenericRpcHandler] = (),
        workers: Sequence[Worker] = (),
        closers: Sequence[Callable[[], Awaitable[None]]] = (),
        ready: Sequence[Callable[[], Awaitable[object]]] = (),
        reuse_port: bool = False,
        tls: tls.ServerTls | None = None,
        permissions: Mapping[str, frozenset[str]] | None = None,
    ) -> None:
        """``metrics_port`` 0 picks a free port, -1 serves no metrics (a worker whose first
        sibling serves them for all); ``reuse_port`` shares the gRPC port with sibling
        processes (``trenchcoat.siblings``) instead of failing when it is taken; ``tls``
        serves gRPC over mutual TLS only (clients must present a certificate of the cluster CA),
        every call checked against ``permissions`` (the contract's table,
        ``trenchcoat.permissions.contract()``, unless given) by the caller's role."""
        self.name = name
        self._tls = tls
        self._ready = tuple(ready)
        self._closers = tuple(closers)
        self._host = host
        self._port = port
        self._metrics_port = metrics_port
        self._grace = grace_period_s
        self._drain_notice = drain_notice_s
        self._bindings = tuple(bindings)
        self._workers = tuple(workers)
        self._health = health.aio.HealthServicer()
        self._serving = False
        """What the health service answers for the whole server: SERVING or not (/readyz)."""
        self._readiness: asyncio.Task[None] | None = None
        self._server = grpc.aio.server(
            interceptors=[ServerInterceptor(
                None if tls is None else (permissions if permissions is not None else contract()),
                None if tls is None else tokens.Verifier(tls.identity.directory / tokens.PUBLIC_FILE))],
            options=[*SERVER_OPTIONS, ("grpc.so_reuseport", 1)] if reuse_port else list(SERVER_OPTIONS),
        )
        for binding in self._bindings:
            binding.add_to_server(binding.servicer, self._server)
        if generic_handlers:
            self._server.add_generic_rpc_handlers(tuple(generic_handlers))
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        reflection.enable_server_reflection(
            [b.name for b in self._bindings]
            + [health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME],
            self._server,
        )
        self._metrics_site: HttpSite | None = None
        self._metrics_task: asyncio.Task[None] | None = None
        self._worker_tasks: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()
        self._failed = False
        self.broken: dict[str, str] = {}
        """Workers that ended while the service ran (by class) and why: NOT_SERVING for good."""
        self._health_lock = asyncio.Lock()
        """Held while health changes, so a worker failing during start or readiness is never
        overwritten by a SERVING decided before it failed."""
        self.port = 0
        self.metrics_port = 0

    async def start(self) -> None:
        """Binds both ports, starts workers, and reports SERVING once ready."""
        try:
            address = f"{self._host}:{self._port}"
            self.port = (self._server.add_secure_port(address, self._tls.credentials()) if self._tls is not None
                         else self._server.add_insecure_port(address))
        except RuntimeError as exc:  # grpc.aio reports a failed bind this way
            raise OSError(
                f"{self.name}: cannot bind gRPC port {self._host}:{self._port} (in use?): {exc}"
            ) from None
        await self._start_metrics()
        await self._server.start()
        for worker in self._workers:
            WORKER_FAILED.labels(type(worker).__name__).set(0)
            task = asyncio.create_task(self._run_worker(worker), name=f"{self.name}:{type(worker).__name__}")
            self._worker_tasks.append(task)
        log.info(
            "%s listening for gRPC on %s:%d, metrics on %s://%s:%d/metrics",
            self.name, self._host, self.port, "https" if self._tls else "http", self._host, self.metrics_port,
        )
        if self._ready:
            await self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
            self._readiness = asyncio.create_task(self._serve_when_ready(), name=f"{self.name}:readiness")
        else:
            await self._set_health(health_pb2.HealthCheckResponse.SERVING)

    async def _serve_when_ready(self) -> None:
        try:
            await asyncio.gather(*(condition() for condition in self._ready))
        except Exception:
            # A readiness condition that cannot hold leaves the service unready for good:
            # stop and say why, so the supervisor restarts it.
            log.exception("%s: a readiness condition failed; stopping", self.name)
            self._failed = True
            self._stopping.set()
            return
        if not self._stopping.is_set() and await self._set_health(health_pb2.HealthCheckResponse.SERVING):
            log.info("%s ready: SERVING", self.name)

    async def _set_health(self, status: int) -> bool:
        """Reports ``status`` for the server and each service; False (and nothing changed)
        for SERVING once a worker has failed."""
        async with self._health_lock:
            if status == health_pb2.HealthCheckResponse.SERVING and self.broken:
                return False
            await self._health.set("", status)
            self._serving = status == health_pb2.HealthCheckResponse.SERVING
            for binding in self._bindings:
                await self._health.set(binding.name, status)
            return True

    def request_stop(self) -> None:
        """Asks ``serve`` to drain and return (signal handlers call this)."""
        self._stopping.set()

    async def serve(self) -> int:
        """Starts, runs until SIGTERM/SIGINT or ``request_stop``, drains; returns the exit code."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        await self.start()
        await self._stopping.wait()
        await self.drain()
        return 1 if self._failed else 0

    async def drain(self) -> None:
        """NOT_SERVING, then stop accepting and let in-flight RPCs finish, then stop workers."""
        log.info("%s draining: NOT_SERVING for %.1fs, then %.1fs grace", self.name, self._drain_notice, self._grace)
        if self._readiness is not None:
            self._readiness.cancel()
            await asyncio.gather(self._readiness, return_exceptions=True)
        for worker in self._workers:
            begin = getattr(worker, "begin_drain", None)
            if begin is not None:
                begin()  # sibling processes drain alongside
        await self._health.enter_graceful_shutdown()
        self._serving = False
        if self._drain_notice > 0:
            await asyncio.sleep(self._drain_notice)
        await self._server.stop(self._grace)
        for worker in self._workers:
            await worker.shutdown()
        for task in self._worker_tasks:
            task.cancel()
        await asyncio.gather(*self._worker_tasks, return_exceptions=True)
        for close in self._closers:
            await close()
        if self._metrics_site is not None:
            await self._metrics_site.shutdown()
        if self._metrics_task is not None:
            await asyncio.gather(self._metrics_task, return_exceptions=True)
        log.info("%s stopped", self.name)

    async def _run_worker(self, worker: Worker) -> None:
        """Runs one worker; if it ends while the service runs, says so (``_worker_ended``)."""
        try:
            await worker.run()
        except Exception as exc:
            if self._stopping.is_set():
                raise  # drain gathers it
            await self._worker_ended(worker, exc)
        else:
            if not self._stopping.is_set():
                await self._worker_ended(worker, None)

    async def _worker_ended(self, worker: Worker, exc: Exception | None) -> None:
        # A background loop that is gone leaves the service half-working (deletes never
        # finished, sweeps never run) while its RPCs still answer. The process stays up
        # (a silent exit loses what it was doing and hides why) and reports NOT_SERVING,
        # so the supervisor's health probe restarts it whole.
        name = type(worker).__name__
        reason = f"{type(exc).__name__}: {exc}" if exc is not None else "run() returned"
        self._failed = True
        if getattr(worker, "stops_service", False):
            log.error("%s: worker %s ended unexpectedly (%s); stopping", self.name, name, reason, exc_info=exc)
            self._stopping.set()
            return
        self.broken[name] = reason
        WORKER_FAILED.labels(name).set(1)
        log.error("%s: worker %s ended unexpectedly (%s); the service reports NOT_SERVING from now on, for its "
                  "supervisor to restart it", self.name, name, reason, exc_info=exc)
        await self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)

    async def _start_metrics(self) -> None:
        if self._metrics_port < 0:
            return
        registry = REGISTRY
        if os.environ.get(siblings.MULTIPROC_ENV):  # every worker's samples, from their files
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)

        async def ready(_: web.Request) -> web.Response:
            return web.Response(text="SERVING\n" if self._serving else "NOT_SERVING\n", status=200 if self._serving else 503)

        async def live(_: web.Request) -> web.Response:
            broken = ", ".join(f"{name}: {why}" for name, why in self.broken.items())
            return web.Response(text=f"worker failed: {broken}\n" if broken else "ok\n", status=503 if broken else 200)

        app = metrics_app(registry)
        # What the gRPC health service says, for probes that cannot speak mutual TLS (the
        # kubelet's probes have no client certificate): /readyz is the server's status,
        # /livez fails only once a worker has failed (restart me).
        app.router.add_get("/readyz", ready)
        app.router.add_get("/livez", live)
        self._metrics_site = metrics_site(app, self._host, self._metrics_port, self.name,
                                          self._tls.identity if self._tls is not None else None)
        await self._metrics_site.start()
        self.metrics_port = self._metrics_site.port
        self._metrics_task = asyncio.create_task(self._metrics_site.run(), name=f"{self.name}:metrics")


PROBE_PATHS = frozenset({"/readyz", "/livez"})


def metrics_app(registry: CollectorRegistry = REGISTRY) -> web.Application:
    """An app serving ``registry`` at /metrics (for ``metrics_site``)."""

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    return app


def metrics_site(app: web.Application, host: str, port: int, name: str, identity: tls.Identity | None) -> HttpSite:
    """A process's metrics listener serving ``app``: with ``identity``, HTTPS whose /metrics
    answers the roles that read metrics (``permissions.METRICS_READERS``: Prometheus, the
    operator) and whose probe paths answer anyone (a client certificate is checked when
    presented, not required: the kubelet has none); without, plain HTTP (cluster.insecure)."""
    return HttpSite(app, host, port, what=f"{name} metrics",
                    tls=tls.HttpServerTls(identity, clients_may_be_anonymous=True) if identity is not None else None,
                    callers=permissions.METRICS_READERS, open_paths=PROBE_PATHS)


def setup_logging(level: str) -> None:
    """One log format for every process: time, level, logger, message, to stderr."""
    logging.basicConfig(
        level=level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def host_for(
    name: str,
    cluster: ClusterConfig,
    service: ServiceConfig,
    *,
    bindings: Sequence[Binding] = (),
    workers: Sequence[Worker] = (),
    closers: Sequence[Callable[[], Awaitable[None]]] = (),
    ready: Sequence[Callable[[], Awaitable[object]]] = (),
) -> ServiceHost:
    """A ServiceHost configured from a service's config section. A section with
    ``workers`` > 1 runs that many processes on its port (``trenchcoat.siblings``): the
    first also starts the others and serves the metrics of all."""
    count = int(getattr(service, "workers", 1))
    index = siblings.worker_index()
    if count > 1 and index == 0:
        workers = [*workers, siblings.Siblings(service.grace_period_s + service.drain_notice_s)]
    return ServiceHost(
        name=name if count == 1 else f"{name}#{index}",
        host=cluster.host,
        port=service.port,
        metrics_port=service.metrics_port if index == 0 else -1,
        grace_period_s=service.grace_period_s,
        drain_notice_s=service.drain_notice_s,
        bindings=bindings,
        workers=workers,
        closers=closers,
        ready=ready,
        reuse_port=count > 1,
        tls=_server_tls,
    )


async def until_reachable(what: str, attempt: Callable[[], Awaitable[T]], wait_s: float) -> T:
    """``attempt()``, retried while it fails Unavailable (its dependency away) for up to
    ``wait_s`` seconds (cluster.start_wait_s), saying what it waits for; then its error."""
    return await retry.until(attempt, wait_s, what=what)


DB = TypeVar("DB", bound=pgmigrate.Database)


@dataclass
class Sharded(Generic[DB]):
    """A service's rows over the PostgreSQL instances (``db``), with the workers keeping
    it routing by the operator's current map (none without etcd or a map: one instance)."""

    db: DB
    workers: list[Worker]
    _etcd: Etcd | None

    async def close(self) -> None:
        await self.db.close()
        if self._etcd is not None:
            await self._etcd.close()


async def sharded_database(cls: type[DB], config: Config, *, migrate: bool = True, max_size: int = 16,
                           process: str = "") -> Sharded[DB]:
    """``cls`` connected to every PostgreSQL instance of the config (postgres.dsn and
    postgres.shard_dsns), routing by the operator's shard map in etcd, its migrations
    applied: each waited for up to cluster.start_wait_s (a process started before the map
    or the databases), then their error (a map naming an instance without a DSN: at once).
    With a map, the workers that follow it as the operator moves shards and say the version
    this process (``process``, its name) routes by (``shards.MapFollower``).
    ``migrate``: False for a process whose service's main process applies them."""
    instances = await until_reachable("PostgreSQL", lambda: pgmigrate.connect_instances(
        config.postgres.instances(), timeout_s=config.postgres.timeout_s, max_size=max_size),
        config.cluster.start_wait_s)
    etcd = Etcd(config.etcd.endpoints, config.cluster.name, timeout_s=config.etcd.timeout_s) \
        if config.etcd.endpoints else None
    try:
        reached = {name: where for name, (_, where) in instances.items()}
        shard_map = await until_reachable("the shard map", lambda: shards.for_process(etcd, reached),
                                          config.cluster.start_wait_s)
        db = cls(instances, config.postgres.timeout_s, shard_map)
    except BaseException:
        await pgmigrate.close_instances(instances)
        if etcd is not None:
            await etcd.close()
        raise
    sharded = Sharded(db, [], etcd)
    if migrate:
        try:
            await db.migrate()
        except BaseException:
            await sharded.close()
            raise
    if etcd is not None:
        name = f"{process or cls.__name__}@{socket.gethostname()}-{os.getpid()}"
        follower = shards.MapFollower(etcd, db, name)
        sharded.workers += [follower, follower.seen]
    return sharded


_server_tls: tls.ServerTls | None = None
"""This process's server credentials when ``cluster.tls_dir`` is set (``load_config``)."""


def process_identity() -> tls.Identity | None:
    """This service process's identity (None with cluster.insecure): what its HTTP
    listeners serve with, as its gRPC server does."""
    return _server_tls.identity if _server_tls is not None else None


def load_config(prog: str, description: str, argv: Sequence[str] | None = None) -> Config:
    """A service's ``main`` preamble: ``--config``, then the file and the environment;
    a bad config exits 2 with the message (naming the key), before anything starts."""
    parser = argparse.ArgumentParser(prog=f"python -m {prog}", description=description)
    parser.add_argument("--config", help="cluster config file (TOML)")
    args = parser.parse_args(argv)
    try:
        config = configmod.load(args.config or configmod.default_path(os.environ), os.environ)
    except ConfigError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    setup_logging(config.cluster.log_level)
    global _server_tls
    role = tls.ROLE_OF_MODULE.get(prog)
    directory = config.cluster.tls_directory()
    if directory is None:
        tls.warn_insecure(prog)
    elif role is not None:
        identity = tls.Identity(directory, role)
        try:
            identity.read()
        except tls.TlsError as exc:
            print(f"{prog}: cluster.tls_dir: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
        _server_tls = tls.ServerTls(identity)
        rpc.use_tls(tls.ClientTls(identity))
    return config



def run(host_factory: Callable[[], Awaitable[ServiceHost]]) -> int:
    """Runs a service to completion on a fresh event loop; returns the exit code.

    The host is built inside the loop (by an async factory, which may open connections
    first) because grpc.aio servers bind to the running loop.
    """

    async def main() -> int:
        try:
            host = await host_factory()
            return await host.serve()
        except (OSError, TrenchcoatError) as exc:  # cannot start: say why, exit 2
            log.error("%s", exc)
            return 2

    return asyncio.run(main())
