"""``trenchcoat up``: the whole cluster on one machine, one process per service.

Starts private etcd, PostgreSQL and Redis (unless the config names external ones), then
every implemented service (a package with a ``__main__``) ``count`` times, each as its own
process with its identity given through the same environment overrides Kubernetes uses.
Reports any process that dies, and on stop takes everything down — services first, then
the dependencies — leaving no process behind.

All state lives under ``cluster.data_dir``: ``etcd/``, ``postgres/``, ``redis/``, per-service
directories, ``logs/<process>.log`` and ``cluster.json``, which ``trenchcoat status`` reads.
"""

from __future__ import annotations

import asyncio
import fcntl
import importlib.util
import json
import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from trenchcoat import pgmigrate, rpc, shards, tls
from trenchcoat.config import (
    Config,
    F4StorageConfig,
    ServiceConfig,
    StoreConfig,
    env_key,
)
from trenchcoat.errors import FailedPrecondition, TrenchcoatError
from trenchcoat.etcd import Etcd
from trenchcoat.ops import admin, dependencies, ports, processes
from trenchcoat.redact import redact

#: Config section -> the module ``python -m`` runs for it, in start order (dependencies
#: of later ones come first).
SERVICE_PACKAGES = {
    "directory": "directory",
    "store": "store",
    "cache": "cache",
    "transformer": "transformer",
    "f4_storage": "f4.storage",
    "f4_keystore": "f4.keystore",
    "f4_backoff": "f4.backoff",
    "f4": "f4",
    "f4_rebuilder": "f4.rebuilder",
    "feed": "feedsvc",
    "fanout": "feedsvc.worker",
    "router": "router",
}
STATE_FILE = "cluster.json"
DEPENDENCY_KINDS = ("etcd", "postgres", "redis")
"""Process kinds the services depend on: stopped only after every service has."""
RULES = Path(__file__).resolve().parents[2] / "k8s" / "observability" / "rules.yml"
"""The recording and alert rules the local Prometheus loads (in a checkout of the repository)."""


class LauncherError(FailedPrecondition):
    """Raised when the cluster cannot start: a port taken, a cluster already running here,
    a dependency missing."""


def implemented_services() -> dict[str, str]:
    """Config section -> module, for the services that can run (a module, or a package
    with a ``__main__``)."""
    return {section: module for section, module in SERVICE_PACKAGES.items() if _runnable(module)}


def _runnable(module: str) -> bool:
    spec = importlib.util.find_spec(module)
    if spec is None:
        return False
    if spec.submodule_search_locations is not None:  # a package: runs its __main__
        return importlib.util.find_spec(f"{module}.__main__") is not None
    return True


@dataclass(frozen=True, slots=True)
class ProcessStatus:
    """One line of ``trenchcoat status``."""

    name: str
    kind: str
    endpoint: str
    pid: int | None
    health: str


class Cluster:
    """A local cluster: start, supervise, stop."""

    def __init__(
        self,
        config: Config,
        *,
        config_path: str | None = None,
        durable: bool = True,
        out: IO[str] = sys.stdout,
        overrides: dict[str, str] | None = None,
    ) -> None:
        self.config = config
        self.overrides = dict(overrides or {})
        """TRENCHCOAT_<SECTION>__<KEY> settings every service process gets (the demo's)."""
        self.config_path = os.path.abspath(config_path) if config_path else None
        self.data_dir = Path(config.cluster.data_dir).resolve()
        self.durable = durable
        self.out = out
        self.processes: list[processes.ManagedProcess] = []
        self.reported: set[str] = set()
        self._lock: IO[str] | None = None
        self._env: dict[str, str] = {}
        """The environment every service process gets (the CDN's too)."""
        self._tls_dir: Path | None = None
        """The cluster's identities (None: cluster.insecure)."""

    # --- lifecycle ---------------------------------------------------------------------

    def start(self, ready_timeout: float = 60.0) -> None:
        """Starts every process and waits until each is ready; on failure stops what started."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._take_lock()
        try:
            self._identities()
            self._check_ports()
            env = self._start_dependencies(ready_timeout)
            self._start_services(env, ready_timeout)
            self._start_cdn(ready_timeout)
            self._start_prometheus(ready_timeout)
            self._write_state()
            self._wait_for_volumes(ready_timeout)
        except BaseException:
            self.stop()
            raise

    def _identities(self) -> None:
        """The cluster CA, every service identity and the user-token keys, made where
        missing (the first start); this process calls the cluster as its operator (admin)
        and mints the tokens of the users its verbs act for. With cluster.insecure: none."""
        directory = self.config.cluster.tls_directory()
        if directory is None:
            return
        if not directory.is_absolute():
            directory = Path.cwd() / directory
        self._tls_dir = directory
        made = tls.ensure(directory)
        if made:
            self._say(f"made the cluster CA and identities in {directory} ({len(made)} certificates)")
        rpc.use_tls(tls.ClientTls(tls.Identity(directory, "admin")), user_keys=directory)

    def stop(self) -> None:
        """Stops the services (with the CDN and Prometheus), all at once, given the longest
        drain and grace among them; then the dependencies, at once; removes the state file.
        At once, not one after another: a stop takes the slowest process's drain, not their
        sum (a local cluster going down whole: an upload in flight at Ctrl-C may fail, as a
        client retrying with its idempotency key sees)."""
        started = [p for p in self.processes if p.popen is not None]
        services = [p for p in started if p.kind not in DEPENDENCY_KINDS]
        for group in (services, [p for p in started if p.kind in DEPENDENCY_KINDS]):
            for process in group:
                process.ask_to_stop()
            deadline = time.monotonic() + max((self._grace(p) for p in group), default=0.0)
            for process in reversed(group):
                code = process.finish_stopping(max(0.0, deadline - time.monotonic()))
                if process.name not in self.reported:
                    how = "" if code is None or code in (0, -process.stop_signal) else f" ({processes.describe_exit(code)})"
                    self._say(f"stopped {process.name}{how}")
        (self.data_dir / STATE_FILE).unlink(missing_ok=True)
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def supervise(self, should_stop: Callable[[], bool], poll_s: float = 0.5) -> bool:
        """Watches the processes until ``should_stop()``; reports each one that exits.
        Returns True when none died."""
        while not should_stop():
            self.check()
            time.sleep(poll_s)
        return not self.reported

    def check(self) -> list[processes.ManagedProcess]:
        """Reports processes that exited since the last check; returns all exited ones."""
        dead = [p for p in self.processes if p.popen is not None and not p.running()]
        for process in dead:
            if process.name in self.reported:
                continue
            self.reported.add(process.name)
            code = process.exit_code()
            assert code is not None
            self._say(
                f"!! {process.name} (pid {process.pid}) exited with {processes.describe_exit(code)}; "
                f"last lines of {process.log_path}:\n{_indent(process.log_tail(10))}"
            )
        return dead

    def status(self) -> list[ProcessStatus]:
        return [_probe(p.name, p.kind, p.endpoint, p.pid) for p in self.processes]

    # --- the pieces --------------------------------------------------------------------

    def _take_lock(self) -> None:
        lock = open(self.data_dir / "launcher.lock", "w")  # noqa: SIM115 - held open: the lock lives as long as the launcher
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise LauncherError(
                f"a cluster is already running on {self.data_dir} (its launcher holds "
                f"{self.data_dir / 'launcher.lock'}); stop it first or use another cluster.data_dir"
            ) from None
        lock.write(str(os.getpid()))
        lock.flush()
        self._lock = lock

    def _check_ports(self) -> None:
        for key, enabled, port in (("cdn.port", self.config.cdn.enabled, self.config.cdn.port),
                                   ("cdn.metrics_port", self.config.cdn.enabled, self.config.cdn.metrics_port),
                                   ("prometheus.port", self.config.prometheus.enabled, self.config.prometheus.port)):
            if enabled and not ports.port_is_free(port, self.config.cluster.host):
                raise LauncherError(f"{key} = {port} is in use on {self.config.cluster.host}; "
                                    f"free it or change {key} in the config")
        for section in implemented_services():
            service: ServiceConfig = getattr(self.config, section)
            for i in range(service.count):
                for key in service.port_keys():
                    port = _nth_port(getattr(service, key), i)
                    if port > 0 and not ports.port_is_free(port, self.config.cluster.host):
                        raise LauncherError(
                            f"{section}.{key}{f' + {i}' if i else ''} = {port} is in use on "
                            f"{self.config.cluster.host}; free it or change {section}.{key} in the config"
                        )

    def _start_dependencies(self, timeout: float) -> dict[str, str]:
        """Starts the private dependencies the config leaves empty; returns the environment
        overrides that point services at every dependency."""
        logs = self.data_dir / "logs"
        # With TLS on, each speaks TLS with a certificate of the cluster CA and takes only
        # credentials: etcd a client certificate, PostgreSQL and Redis a password.
        tls_dir = self._tls_dir
        deps: list[processes.ManagedProcess] = []
        env: dict[str, str] = {}
        if not self.config.etcd.endpoints:
            etcd = dependencies.etcd_process(
                self.data_dir / "etcd", logs / "etcd.log", ports.free_port(), ports.free_port(), tls_dir=tls_dir
            )
            deps.append(etcd)
            env[env_key("etcd", "endpoints")] = etcd.endpoint
        postgres: list[processes.ManagedProcess] = []
        if not self.config.postgres.dsn:
            for i in range(self.config.postgres.local_instances):
                name = "postgres" if i == 0 else f"postgres-{i + 1}"
                process = dependencies.postgres_process(
                    dependencies.postgres_data_dir(self.data_dir / name), logs / f"{name}.log", ports.free_port(),
                    durable=self.durable, tls_dir=tls_dir)
                process.name = name
                postgres.append(process)
            deps += postgres
            env[env_key("postgres", "dsn")] = postgres[0].endpoint
            if len(postgres) > 1:
                env[env_key("postgres", "shard_dsns")] = ",".join(p.endpoint for p in postgres[1:])
        redis_cluster = None
        if not self.config.redis.url and self.config.redis.local_cluster:
            redis_cluster = self._redis_cluster(logs, tls_dir)
            deps += redis_cluster.nodes
            env[env_key("redis", "url")] = redis_cluster.endpoint
            env[env_key("redis", "cluster")] = "true"
        elif not self.config.redis.url:
            redis = dependencies.redis_process(
                self.data_dir / "redis", logs / "redis.log", ports.free_port(), persistent=self.durable,
                tls_dir=tls_dir,
            )
            deps.append(redis)
            env[env_key("redis", "url")] = redis.endpoint
        for process in deps:
            self.processes.append(process)
            process.start()
        for process in deps:
            process.wait_ready(timeout)
            self._say(f"started {process.name:<12} {redact(process.endpoint)}")
        if redis_cluster is not None:
            redis_cluster.create(timeout)
            self._say(f"redis cluster: {redis_cluster.masters} primaries, each with a replica")
        if postgres:
            self._shard_map(env[env_key("etcd", "endpoints")] if not self.config.etcd.endpoints
                            else ",".join(self.config.etcd.endpoints), [p.endpoint for p in postgres])
        return env

    def _redis_cluster(self, logs: Path, tls_dir: Path | None) -> dependencies.RedisCluster:
        """The local Redis Cluster: three primaries and a replica each, on the ports they had
        the first time (each node's ``nodes.conf`` records where the others are)."""
        root = self.data_dir / "redis-cluster"
        kept = root / "addresses.json"
        addresses = [(int(p), int(b)) for p, b in json.loads(kept.read_text())] if kept.exists() else None
        cluster = dependencies.redis_cluster_processes(root, logs, persistent=self.durable, tls_dir=tls_dir,
                                                       addresses=addresses)
        if addresses is None:
            kept.write_text(json.dumps(list(zip(cluster.ports, cluster.bus_ports, strict=True))))
        for i, node in enumerate(cluster.nodes):  # named as the PostgreSQL instances are
            node.name = "redis" if i == 0 else f"redis-{i + 1}"
        return cluster

    def _shard_map(self, etcd_endpoints: str, dsns: list[str]) -> None:
        """The operator's first act on a cluster whose PostgreSQL instances it runs
        (``admin.make_shard_map``): the shards split evenly over them when the cluster is new;
        a cluster whose first instance holds rows already keeps every shard on it (where its
        rows are). A stored map is never replaced."""
        async def init() -> tuple[shards.ShardMap, bool]:
            timeout_s = self.config.postgres.timeout_s
            async with pgmigrate.reaching(dsns, timeout_s=timeout_s) as instances:
                etcd = Etcd(etcd_endpoints.split(","), self.config.cluster.name, timeout_s=self.config.etcd.timeout_s)
                try:
                    return await admin.make_shard_map(etcd, instances, timeout_s=timeout_s)
                finally:
                    await etcd.close()

        shard_map, made = asyncio.run(init())
        self._say(f"shard map {'made' if made else 'kept'} (v{shard_map.version}): {'; '.join(shard_map.rows())}")

    def _start_services(self, deps_env: dict[str, str], timeout: float) -> None:
        base_env = {
            **os.environ,
            **self.overrides,
            **deps_env,
            env_key("cluster", "data_dir"): str(self.data_dir),
        }
        if self.config_path:
            base_env["TRENCHCOAT_CONFIG"] = self.config_path
        self._env = base_env
        host = self.config.cluster.host
        started = []
        for section, package in implemented_services().items():
            service: ServiceConfig = getattr(self.config, section)
            for i in range(service.count):
                name = section if service.count == 1 else f"{section}-{i + 1}"
                port, metrics_port = service.port + i, service.metrics_port + i
                env = {**base_env, **process_env(section, service, i)}
                process = processes.ManagedProcess(
                    name=name,
                    kind="grpc",
                    argv=[sys.executable, "-m", package],
                    log_path=self.data_dir / "logs" / f"{name}.log",
                    ready=processes.grpc_health_probe(f"{host}:{port}"),
                    endpoint=f"{host}:{port}",
                    metrics=f"{self._http_scheme()}://{host}:{metrics_port}/metrics",
                    env=env,
                )
                self.processes.append(process)
                process.start()
                started.append(process)
        for process in started:
            process.wait_ready(timeout)
            self._say(f"started {process.name:<12} grpc {process.endpoint}  metrics {process.metrics}")

    def _start_cdn(self, timeout: float) -> None:
        """nginx in front of the caches' photo HTTP ports, when caches run."""
        cdn = self.config.cdn
        if not self._cdn_runs():
            return
        host = self.config.cluster.host
        process = dependencies.cdn_process(self.data_dir / "logs" / "cdn.log", host, cdn.port, cdn.metrics_port, self._env,
                                           metrics_scheme=self._http_scheme())
        self.processes.append(process)
        process.start()
        process.wait_ready(timeout)
        self._say(f"started {process.name:<12} {process.endpoint}  (pull CDN: nginx in front of the caches)  metrics {process.metrics}")

    def _start_prometheus(self, timeout: float) -> None:
        """Prometheus scraping every service process's /metrics (a job per config section),
        with the rules of k8s/observability/rules.yml when the repository is at hand."""
        prom = self.config.prometheus
        if not prom.enabled:
            return
        host = self.config.cluster.host
        jobs = {section: [f"{host}:{getattr(self.config, section).metrics_port + i}"
                          for i in range(getattr(self.config, section).count)]
                for section in implemented_services()}
        if self._cdn_runs():
            jobs["cdn"] = [f"{host}:{self.config.cdn.metrics_port}"]
        rules = [RULES] if RULES.is_file() else []
        process = dependencies.prometheus_process(
            self.data_dir / "prometheus", self.data_dir / "logs" / "prometheus.log", host, prom.port, jobs,
            scrape_interval_s=prom.scrape_interval_s, retention_hours=prom.retention_hours, rule_files=rules,
            identity=tls.Identity(self._tls_dir, "prometheus") if self._tls_dir is not None else None)
        self.processes.append(process)
        process.start()
        process.wait_ready(timeout)
        self._say(f"started {process.name:<12} {process.endpoint}  (scraping {sum(map(len, jobs.values()))} "
                  f"processes every {prom.scrape_interval_s:g}s; rules: {rules[0] if rules else 'none'})")

    def _http_scheme(self) -> str:
        """Of every /metrics (and the caches' photo ports): https unless cluster.insecure."""
        return "https" if self._tls_dir is not None else "http"

    def _cdn_runs(self) -> bool:
        return self.config.cdn.enabled and "cache" in implemented_services() and self.config.cache.count > 0

    def _wait_for_volumes(self, timeout: float) -> None:
        """With a Directory and stores running, waits until writable volumes exist, so an
        upload right after ``up`` has somewhere to go."""
        if "directory" not in implemented_services() or not self.config.store.count or not self.config.directory.count:
            return
        deadline = time.monotonic() + timeout
        why = ""
        while time.monotonic() < deadline:
            try:
                count = admin.writable_volumes(self.config)
            except TrenchcoatError as exc:
                count, why = 0, str(exc)
            if count:
                self._say(f"volumes ready: {count} writable")
                return
            time.sleep(0.25)
        self._say(f"!! no writable volume after {timeout:.0f}s{f': {why}' if why else ''}; "
                  "see `trenchcoat volumes` and the directory logs")

    def _write_state(self) -> None:
        state = {
            "launcher_pid": os.getpid(),
            "data_dir": str(self.data_dir),
            "processes": [
                {"name": p.name, "kind": p.kind, "endpoint": p.endpoint, "pid": p.pid, "metrics": p.metrics}
                for p in self.processes
            ],
        }
        path = self.data_dir / STATE_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(path)

    def _grace(self, process: processes.ManagedProcess) -> float:
        section = process.name.rsplit("-", 1)[0] if process.kind == "grpc" else ""
        service = getattr(self.config, section, None)
        if isinstance(service, ServiceConfig):
            return service.drain_notice_s + service.grace_period_s + 5
        return 30.0

    def _say(self, line: str) -> None:
        print(line, file=self.out, flush=True)


def process_env(section: str, service: ServiceConfig, index: int,
                ports: Mapping[str, int] | None = None) -> dict[str, str]:
    """The environment overrides that make process ``index`` (from 0) of ``section`` itself:
    each of its ports (``ports`` by key where given, else the section's port + index) and
    its identity (a store's machine id and rack, an f4 storage node's id). What ``up``
    gives each process, and what the suite's clusters give theirs (with free ports)."""
    given = ports or {}
    chosen = {key: given.get(key, _nth_port(getattr(service, key), index)) for key in service.port_keys()}
    return {**{env_key(section, key): str(port) for key, port in chosen.items()}, **_identity(service, index)}


def _nth_port(first: int, index: int) -> int:
    """Process ``index``'s port when the first has ``first``: first + index, except that
    0 (a free port each) and a negative value (none) stay as they are."""
    return first + index if first > 0 else first


def _identity(service: ServiceConfig, index: int) -> dict[str, str]:
    """Per-process identity overrides (a store's machine id and rack, an f4 storage node's id)."""
    if isinstance(service, F4StorageConfig):
        return {env_key("f4_storage", "node_id"): str(index + 1)}
    if not isinstance(service, StoreConfig):
        return {}
    racks = service.racks
    return {
        env_key("store", "machine_id"): str(index + 1),
        env_key("store", "rack"): racks[index % len(racks)],
    }


def read_state(data_dir: Path) -> dict[str, object] | None:
    """The running cluster's state file, or None when no launcher is running there."""
    path = data_dir / STATE_FILE
    try:
        state = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    pid = state.get("launcher_pid")
    if not isinstance(pid, int) or not _pid_alive(pid):
        return None
    return state


def status_from_state(state: dict[str, object]) -> list[ProcessStatus]:
    """Probes every process listed in a state file."""
    rows = state.get("processes", [])
    assert isinstance(rows, list)
    return [_probe(r["name"], r["kind"], r["endpoint"], r["pid"]) for r in rows]


def process_names(state: dict[str, object]) -> dict[str, str]:
    """Endpoint -> name of every process listed in a state file: what ``trenchcoat status``
    calls the process answering at an address (the leader the Directory names by address)."""
    rows = state.get("processes", [])
    assert isinstance(rows, list)
    return {r["endpoint"]: r["name"] for r in rows}


def _probe(name: str, kind: str, endpoint: str, pid: int | None) -> ProcessStatus:
    if pid is not None and not _pid_alive(pid):
        return ProcessStatus(name, kind, endpoint, pid, "EXITED")
    if kind == "grpc":
        health = processes.grpc_health(endpoint)
    else:
        identity = rpc.process_tls()  # the operator's, which etcd takes as a client certificate
        etcd = (processes.http_probe(f"http://{endpoint}/health", b'"health":"true"') if identity is None else
                processes.http_probe(f"https://{endpoint}/health", b'"health":"true"', context=identity.http_context()))
        probe = {
            "etcd": etcd,
            "redis": lambda: processes.redis_url_probe(endpoint)(),
            "postgres": lambda: dependencies.postgres_isready(*_host_port(endpoint)),
            "http": lambda: processes.http_probe(f"{endpoint}/cdn-health", b"ok")(),
            "prometheus": lambda: processes.http_probe(f"{endpoint}/-/ready", b"Ready")(),
        }[kind]
        try:
            health = "SERVING" if probe() else "NOT_SERVING"
        except OSError:
            health = "UNREACHABLE"
    return ProcessStatus(name, kind, endpoint, pid, health)


def _host_port(endpoint: str) -> tuple[str, int]:
    rest = endpoint.split("://", 1)[-1].split("@", 1)[-1].split("/", 1)[0]
    host, _, port = rest.rpartition(":")
    return host, int(port)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())
