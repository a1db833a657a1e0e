"""The private dependencies, built from the Debian packages: ``etcd_process``
(etcd-server), ``postgres_process`` (postgresql: initdb in a directory of ours, run as
user ``postgres`` when we are root, since PostgreSQL refuses to run as root),
``redis_process`` (redis-server), ``redis_cluster_processes`` (a Redis Cluster of
redis-servers), nginx as the pull CDN, Prometheus. Each listens on 127.0.0.1 only."""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import pwd
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from trenchcoat import tls
from trenchcoat.ops import ports
from trenchcoat.ops.processes import (
    ManagedProcess,
    ProcessError,
    RedisTls,
    as_user,
    http_probe,
    redis_command,
    redis_probe,
    wait_all_ready,
)


def etcd_process(data_dir: Path, log_path: Path, port: int, peer_port: int, *, tls_dir: Path | None) -> ManagedProcess:
    """A private single-member etcd on 127.0.0.1. With ``tls_dir`` (the cluster's
    identities) clients speak TLS and must present a certificate of the cluster CA
    (``--client-cert-auth``): the services present their own; its server certificate is
    ``etcd.crt`` there, issued on first use."""
    binary = _require_binary("etcd", "etcd-server")
    scheme = "http" if tls_dir is None else "https"
    client = f"{scheme}://127.0.0.1:{port}"
    peer = f"http://127.0.0.1:{peer_port}"  # a single member: its peer port listens on loopback for no one
    data_dir.mkdir(parents=True, exist_ok=True)
    argv = [
        binary,
        "--name", "trenchcoat",
        "--data-dir", str(data_dir),
        "--listen-client-urls", client,
        "--advertise-client-urls", client,
        "--listen-peer-urls", peer,
        "--initial-advertise-peer-urls", peer,
        "--initial-cluster", f"trenchcoat={peer}",
        "--logger", "zap",
        "--log-level", "warn",
    ]
    context = None
    if tls_dir is not None:
        cert, key = dependency_identity(tls_dir, "etcd")
        ca = tls_dir / tls.CA_FILE
        argv += ["--cert-file", str(cert), "--key-file", str(key), "--client-cert-auth", "--trusted-ca-file", str(ca)]
        # Its own certificate, which is also a client certificate of the CA, for the probe.
        context = tls.ClientTls(tls.Identity(tls_dir, "etcd")).http_context()
    return ManagedProcess(
        name="etcd",
        kind="etcd",
        argv=argv,
        log_path=log_path,
        ready=http_probe(f"{client}/health", b'"health":"true"', context=context),
        endpoint=f"127.0.0.1:{port}",
    )


REDIS_USER = "trenchcoat"
"""The one Redis ACL user the services log in as (the ``default`` user is turned off)."""


def _redis_argv(data_dir: Path, persistent: bool) -> list[str]:
    """A redis-server on 127.0.0.1 keeping its data in ``data_dir`` (made here)."""
    binary = _require_binary("redis-server", "redis-server")
    data_dir.mkdir(parents=True, exist_ok=True)
    return [
        binary,
        "--bind", "127.0.0.1",
        "--dir", str(data_dir),
        "--daemonize", "no",
        "--save", "",
        "--appendonly", "yes" if persistent else "no",
        # Persistent: every write on disk before it is acknowledged. With the default
        # (once a second) a crash would lose the last timeline writes of fan-outs that
        # PostgreSQL already records as done, while the timelines stay marked built.
        "--appendfsync", "always",
        "--protected-mode", "no",
    ]


def redis_process(data_dir: Path, log_path: Path, port: int, *, persistent: bool,
                  tls_dir: Path | None) -> ManagedProcess:
    """A private Redis on 127.0.0.1:port. With ``tls_dir`` (the cluster's identities) it
    speaks TLS only (its certificate ``redis.crt``, issued there on first use) and takes
    only the ACL user ``trenchcoat`` with the password ``redis.password`` there; its
    endpoint is then a ``rediss://`` URL carrying both and the CA to verify it with."""
    argv = _redis_argv(data_dir, persistent)
    if tls_dir is None:
        argv += ["--port", str(port)]
        return ManagedProcess(name="redis", kind="redis", argv=argv, log_path=log_path,
                              ready=redis_probe("127.0.0.1", port), endpoint=f"redis://127.0.0.1:{port}/0")
    cert, key = dependency_identity(tls_dir, "redis")
    password = tls.password(tls_dir, "redis")
    ca = tls_dir / tls.CA_FILE
    argv += ["--port", "0", "--tls-port", str(port), "--tls-cert-file", str(cert), "--tls-key-file", str(key),
             "--tls-ca-cert-file", str(ca), "--tls-auth-clients", "no",
             "--user", "default", "off",
             "--user", REDIS_USER, "on", f">{password}", "~*", "&*", "+@all"]
    return ManagedProcess(
        name="redis", kind="redis", argv=argv, log_path=log_path,
        ready=redis_probe("127.0.0.1", port, tls=RedisTls(ca, REDIS_USER, password)),
        endpoint=f"rediss://{REDIS_USER}:{password}@127.0.0.1:{port}/0?ssl_ca_certs={quote(str(ca))}",
    )


REDIS_CLUSTER_SLOTS = 16384
"""Every Redis Cluster has this many hash slots; a key lives in slot CRC16(key) mod it."""


def redis_cluster_processes(data_dir: Path, log_dir: Path, *, persistent: bool, tls_dir: Path | None,
                            masters: int = 3, replicas_per_master: int = 1,
                            addresses: Sequence[tuple[int, int]] | None = None) -> RedisCluster:
    """A private Redis Cluster on 127.0.0.1: ``masters`` masters with ``replicas_per_master``
    replicas each, one redis-server per node (``redis-<i>``, data and ``nodes.conf`` in
    ``data_dir/node-<i>``, log ``log_dir/redis-<i>.log``), secured as ``redis_process``'s
    Redis: with ``tls_dir``, TLS only on the client port, the cluster bus and replication
    alike, and only the ACL user ``trenchcoat``, which the replicas log in to their masters
    as. Not started: ``start()`` then ``create()``. ``addresses``: each node's (port, cluster
    bus port), as a cluster restarted from its directory must have again (its nodes find
    each other where ``nodes.conf`` says); None: free ones. The bus port is given
    (``--cluster-port``) rather than left at port + 10000, which may be taken or beyond 65535."""
    count = masters * (1 + replicas_per_master)
    if masters < 3:
        raise ValueError("a Redis Cluster needs at least 3 masters")
    if addresses is None:
        addresses = [(ports.free_port(), ports.free_port()) for _ in range(count)]
    if len(addresses) != count:
        raise ValueError(f"{count} nodes need {count} (port, bus port) pairs, not {len(addresses)}")
    auth: RedisTls | None = None
    secure: list[str] = []
    if tls_dir is not None:
        cert, key = dependency_identity(tls_dir, "redis")
        auth = RedisTls(tls_dir / tls.CA_FILE, REDIS_USER, tls.password(tls_dir, "redis"))
        secure = ["--tls-cert-file", str(cert), "--tls-key-file", str(key), "--tls-ca-cert-file", str(auth.ca),
                  "--tls-auth-clients", "no", "--tls-cluster", "yes", "--tls-replication", "yes",
                  "--user", "default", "off",
                  "--user", REDIS_USER, "on", f">{auth.password}", "~*", "&*", "+@all",
                  # How a replica logs in to its master (replication runs as a client).
                  "--masteruser", REDIS_USER, "--masterauth", auth.password]
    nodes = []
    for i, (port, bus_port) in enumerate(addresses):
        node_dir = data_dir / f"node-{i}"
        argv = [
            *_redis_argv(node_dir, persistent),
            "--cluster-enabled", "yes",
            "--cluster-config-file", str(node_dir / "nodes.conf"),
            "--cluster-port", str(bus_port),
            "--cluster-announce-ip", "127.0.0.1",
            # A master the others have not heard from in 2 s is failed over to its replica.
            "--cluster-node-timeout", "2000",
            # A replica takes over however long it was cut off from its primary: what Redis
            # holds here is rebuilt from PostgreSQL when lost (the feed's sweeper runs the
            # last fan-outs again after a failover), so serving beats refusing.
            "--cluster-replica-validity-factor", "0",
            # A replica's full sync starts at once, not after the default 5 s wait for more
            # replicas to share the transfer (each master here has its one or two).
            "--repl-diskless-sync-delay", "0",
        ]
        argv += ["--port", str(port)] if auth is None else ["--port", "0", "--tls-port", str(port), *secure]
        nodes.append(ManagedProcess(name=f"redis-{i}", kind="redis", argv=argv, log_path=log_dir / f"redis-{i}.log",
                                    ready=redis_probe("127.0.0.1", port, tls=auth), endpoint=_redis_url(port, auth)))
    return RedisCluster(nodes=nodes, ports=[p for p, _ in addresses], bus_ports=[b for _, b in addresses],
                        endpoint=_redis_url(addresses[0][0], auth), masters=masters,
                        replicas_per_master=replicas_per_master, tls=auth)


def _redis_url(port: int, auth: RedisTls | None) -> str:
    """``redis_process``'s endpoint for a Redis on 127.0.0.1:port (db 0, the only one a
    cluster has: redis-py's RedisCluster takes ``/0`` but refuses any other)."""
    if auth is None:
        return f"redis://127.0.0.1:{port}/0"
    return f"rediss://{auth.user}:{auth.password}@127.0.0.1:{port}/0?ssl_ca_certs={quote(str(auth.ca))}"


@dataclass(frozen=True)
class RedisClusterNode:
    """One node as a node of the cluster sees it (a line of ``CLUSTER NODES``)."""

    id: str
    port: int
    flags: frozenset[str]
    """``master`` or ``slave``, ``myself``, ``fail?`` (this node cannot reach it), ``fail``
    (the cluster agrees it is down), ..."""
    master_id: str
    """The master it replicates ("" for a master)."""
    slots: tuple[tuple[int, int], ...]
    """The slot ranges it serves (first, last), as a master."""
    connected: bool

    @property
    def master(self) -> bool:
        return "master" in self.flags

    @property
    def failing(self) -> bool:
        return bool(self.flags & {"fail", "fail?"})

    def serves(self, slot: int) -> bool:
        return any(first <= slot <= last for first, last in self.slots)

    @classmethod
    def parse(cls, line: str) -> RedisClusterNode:
        node_id, address, flags, master_id, _ping, _pong, _epoch, link, *slots = line.split()
        ranges = []
        for item in slots:
            if item.startswith("["):  # a slot being imported or migrated: still its owner's
                continue
            first, _, last = item.partition("-")
            ranges.append((int(first), int(last or first)))
        port = int(address.split("@", 1)[0].rpartition(":")[2])
        return cls(node_id, port, frozenset(flags.split(",")), "" if master_id == "-" else master_id,
                   tuple(ranges), link == "connected")


@dataclass
class RedisCluster:
    """The nodes of a private Redis Cluster (``redis_cluster_processes``) and how to reach
    it: ``endpoint`` names the first node (a master once ``create`` has formed the cluster);
    a cluster client learns the others from it."""

    nodes: list[ManagedProcess]
    ports: list[int]
    """Each node's client port (TLS when the cluster has ``tls``)."""
    endpoint: str
    masters: int
    replicas_per_master: int
    tls: RedisTls | None = None
    """The CA and the ACL user the nodes are reached with (None: plaintext, no ACL)."""
    bus_ports: list[int] = field(default_factory=list)

    def start(self) -> None:
        """Starts every node that is not running (not waiting: ``create`` does)."""
        for node in self.nodes:
            if not node.running():
                node.start()

    def create(self, timeout: float = 60.0) -> None:
        """Once every node is ready, forms the cluster (``redis-cli --cluster create``: the
        first ``masters`` nodes the masters, the others their replicas), unless its nodes
        already form one (restarted with their ``nodes.conf``); then waits until it is
        whole (``wait_ok``). Raises ProcessError if that takes more than ``timeout``."""
        deadline = time.monotonic() + timeout
        wait_all_ready(self.nodes, timeout)
        if not self.formed():
            self._redis_cli_create(max(1.0, deadline - time.monotonic()))
        self.wait_ok(max(1.0, deadline - time.monotonic()))

    def formed(self) -> bool:
        """True if any node knows another or serves slots (met in a cluster before)."""
        for port in self.ports:
            info = self.cluster_info(port)
            if int(info.get("cluster_known_nodes", "1")) > 1 or int(info.get("cluster_slots_assigned", "0")) > 0:
                return True
        return False

    def _redis_cli_create(self, timeout: float) -> None:
        argv = [_require_binary("redis-cli", "redis-tools"), "--cluster", "create",
                *(f"127.0.0.1:{port}" for port in self.ports),
                "--cluster-replicas", str(self.replicas_per_master), "--cluster-yes"]
        env = dict(os.environ)
        if self.tls is not None:
            # The password in the environment, not on the command line (and no warning).
            argv += ["--tls", "--cacert", str(self.tls.ca), "--user", self.tls.user]
            env["REDISCLI_AUTH"] = self.tls.password
        try:
            result = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout, check=False)
        except subprocess.TimeoutExpired as exc:
            raise ProcessError(f"redis-cli --cluster create took more than {timeout:.0f}s") from exc
        if result.returncode != 0:
            raise ProcessError(f"redis-cli --cluster create failed ({result.returncode}):\n"
                               f"{_plain(result.stdout + result.stderr)}")

    def wait_ok(self, timeout: float = 60.0, *, replicas: bool = True) -> None:
        """Waits until ``unhealthy(replicas=replicas)`` has nothing to say; raises
        ProcessError with what was still wrong after ``timeout``."""
        deadline = time.monotonic() + timeout
        while (reason := self.unhealthy(replicas=replicas)) and time.monotonic() < deadline:
            time.sleep(0.1)
        if reason:
            raise ProcessError(f"Redis Cluster not ok after {timeout:.0f}s: {reason}")

    def unhealthy(self, *, replicas: bool = True) -> str:
        """What keeps the cluster from being whole ("" when nothing does): every running
        node says ``cluster_state:ok`` with every slot served, and sees every slot served
        by a master that runs and that no node takes for failing. With ``replicas``, also
        every node runs, and every master has its replicas, in sync (``master_link_status:up``).
        Without, a node killed (and failed over) is allowed: the cluster serves every key."""
        running = [(node, port) for node, port in zip(self.nodes, self.ports, strict=True) if node.running()]
        if replicas and len(running) < len(self.nodes):
            return ", ".join(node.name for node in self.nodes if not node.running()) + " not running"
        alive = {port for _, port in running}
        try:
            for node, port in running:
                info = self.cluster_info(port)
                if info.get("cluster_state") != "ok" or info.get("cluster_slots_ok") != str(REDIS_CLUSTER_SLOTS):
                    return f"{node.name}: cluster_state:{info.get('cluster_state')}, " \
                           f"cluster_slots_ok:{info.get('cluster_slots_ok')}"
                view = self.view(port)
                serving = [n for n in view if n.master and n.slots]
                covered = sum(last - first + 1 for n in serving for first, last in n.slots)
                if covered != REDIS_CLUSTER_SLOTS:
                    return f"{node.name} sees {covered} slots served"
                for master in serving:
                    if master.port not in alive or master.failing:
                        return f"{node.name} sees slots served by 127.0.0.1:{master.port}, " \
                               f"{'not running' if master.port not in alive else 'failing'}"
                if not replicas:
                    continue
                if len(view) != len(self.nodes) or any(n.failing for n in view):
                    return f"{node.name} sees {len(view)} nodes, failing: " \
                           f"{[n.port for n in view if n.failing]}"
                for master in serving:
                    followers = [n for n in view if n.master_id == master.id]
                    if len(followers) < self.replicas_per_master:
                        return f"{node.name} sees {len(followers)} replicas of 127.0.0.1:{master.port}"
                if not any(n.master for n in view if "myself" in n.flags):
                    link = self.info(port, "replication").get("master_link_status")
                    if link != "up":
                        return f"{node.name}: master_link_status:{link}"
        except (OSError, ProcessError) as exc:
            return f"{exc}"
        return ""

    def view(self, port: int | None = None) -> list[RedisClusterNode]:
        """The cluster as the node on ``port`` sees it (default: the first node running)."""
        if port is None:
            port = next((p for node, p in zip(self.nodes, self.ports, strict=True) if node.running()), self.ports[0])
        text = self.command(port, "CLUSTER", "NODES")
        assert isinstance(text, str)
        return [RedisClusterNode.parse(line) for line in text.splitlines() if line.strip()]

    def master_of(self, slot: int, port: int | None = None) -> RedisClusterNode:
        """The master serving ``slot``, as the node on ``port`` sees it."""
        for node in self.view(port):
            if node.master and node.serves(slot):
                return node
        raise ProcessError(f"no master serves slot {slot}")

    def wait_replicated(self, timeout: float = 60.0) -> None:
        """Waits until every running master has ``replicas_per_master`` replicas online
        that acknowledged every write it had taken when this was called."""
        targets: dict[int, int] = {}
        for node, port in zip(self.nodes, self.ports, strict=True):
            if node.running():
                info = self.info(port, "replication")
                if info.get("role") == "master":
                    targets[port] = int(info["master_repl_offset"])
        deadline = time.monotonic() + timeout
        while True:
            behind = {port: self._replica_offsets(port) for port in targets}
            behind = {port: offsets for port, offsets in behind.items()
                      if sum(offset >= targets[port] for offset in offsets) < self.replicas_per_master}
            if not behind:
                return
            if time.monotonic() > deadline:
                raise ProcessError(f"replicas not caught up after {timeout:.0f}s: master port -> "
                                   f"(offset, replicas' offsets) {[(p, targets[p], o) for p, o in behind.items()]}")
            time.sleep(0.05)

    def _replica_offsets(self, port: int) -> list[int]:
        """The acknowledged offsets of the master on ``port``'s online replicas."""
        offsets = []
        for key, value in self.info(port, "replication").items():
            if key.startswith("slave") and key[5:].isdigit():
                fields = dict(item.partition("=")[::2] for item in value.split(","))
                if fields.get("state") == "online":
                    offsets.append(int(fields.get("offset", "0")))
        return offsets

    def cluster_info(self, port: int) -> dict[str, str]:
        return _info_fields(self.command(port, "CLUSTER", "INFO"))

    def info(self, port: int, section: str) -> dict[str, str]:
        return _info_fields(self.command(port, "INFO", section))

    def command(self, port: int, *args: str) -> object:
        """One command to the node on ``port`` (logged in as the cluster's user), its reply."""
        return redis_command("127.0.0.1", port, *args, tls=self.tls)


def _info_fields(text: object) -> dict[str, str]:
    assert isinstance(text, str), text
    return dict(line.partition(":")[::2] for line in text.splitlines() if ":" in line and not line.startswith("#"))


def _plain(text: str) -> str:
    """redis-cli's output without its colours."""
    return re.sub(r"\x1b\[[0-9;]*m", "", text).strip()


def dependency_identity(tls_dir: Path, name: str) -> tuple[Path, Path]:
    """The server certificate and key of dependency ``name`` in ``tls_dir`` (issued for
    loopback on first use, by the cluster CA the clients trust)."""
    cert, key = tls_dir / f"{name}.crt", tls_dir / f"{name}.key"
    if not cert.exists() or not key.exists():
        tls.issue(tls_dir, name)
    return cert, key


NGINX_CONF = """\
# Written by trenchcoat: the local cluster's pull CDN (a caching reverse proxy).
daemon off;
# A master, which re-reads this file and the certificates on SIGHUP (a rotation), and a
# worker; started as root, the worker stays root: the cluster's data directory may be
# closed to other users.
{user}
error_log stderr warn;
pid {root}/nginx.pid;
events {{ worker_connections 1024; }}
http {{
{access_log}
    client_body_temp_path {root}/tmp/body;
    proxy_temp_path {root}/tmp/proxy;
    fastcgi_temp_path {root}/tmp/fastcgi;
    uwsgi_temp_path {root}/tmp/uwsgi;
    scgi_temp_path {root}/tmp/scgi;
    proxy_cache_path {root}/cache levels=1:2 keys_zone=photos:16m max_size={max_bytes} inactive={ttl}s use_temp_path=off;
{upstreams}
    # The URL's first component names the cache (/<cache_id>/...); ids no cache has go to
    # the first.
    map $uri $photo_cache {{
{routes}
        default cache_1;
    }}{names}
    server {{
        listen {host}:{port};
        location = /cdn-health {{ return 200 "ok\\n"; }}
        location / {{
            proxy_pass {scheme}://$photo_cache;{upstream_tls}
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Trenchcoat-Via-CDN 1;
            proxy_next_upstream error timeout http_503;
            proxy_cache photos;
            # The cache says "immutable" for clients; the CDN keeps a copy only ttl
            # seconds, so a deleted photo stops being served after at most that.
            proxy_ignore_headers Cache-Control Expires;
            proxy_cache_valid 200 206 {ttl}s;
            proxy_cache_valid 404 {not_found_ttl}s;
            proxy_cache_lock on;
            proxy_cache_lock_timeout 10s;
            add_header X-Cache-Status $upstream_cache_status always;
        }}
    }}
}}
"""


def nginx_process(root: Path, log_path: Path, host: str, port: int, caches: Sequence[str], *,
                  ttl_s: int, not_found_ttl_s: int, max_bytes: int, identity: tls.Identity | None) -> ManagedProcess:
    """nginx as a caching reverse proxy in front of the caches' photo HTTP ports (a pull
    CDN; ``caches[i]`` is cache id i + 1): a master and one worker, their config, cache and
    temp files under ``root``. A URL goes to the cache it names; when that cache
    is down, to the next one (which reads the same stores). ``identity``: as ``nginx_conf``."""
    conf = nginx_conf(root, host, port, caches, ttl_s=ttl_s, not_found_ttl_s=not_found_ttl_s, max_bytes=max_bytes,
                      identity=identity)
    return ManagedProcess(
        name="cdn",
        kind="http",
        argv=nginx_argv(conf),
        log_path=log_path,
        ready=http_probe(f"http://{host}:{port}/cdn-health", b"ok"),
        endpoint=f"http://{host}:{port}",
    )


def cdn_process(log_path: Path, host: str, port: int, metrics_port: int, env: Mapping[str, str], *,
                metrics_scheme: str = "https") -> ManagedProcess:
    """``python -m trenchcoat.ops.cdn``: nginx as the pull CDN with its metrics (over HTTPS
    unless the cluster is insecure), configured by the cluster config ``env`` names
    (TRENCHCOAT_CONFIG and TRENCHCOAT_* overrides)."""
    return ManagedProcess(
        name="cdn",
        kind="http",
        argv=[sys.executable, "-m", "trenchcoat.ops.cdn"],
        log_path=log_path,
        ready=http_probe(f"http://{host}:{port}/cdn-health", b"ok"),
        endpoint=f"http://{host}:{port}",
        metrics=f"{metrics_scheme}://{host}:{metrics_port}/metrics",
        env=dict(env),
    )


UPSTREAM_TLS = """
            # Mutual TLS to the caches: this CDN's certificate (role cdn), theirs checked
            # against the cluster CA and the name the URL's cache is dialled by.
            proxy_ssl_certificate {cert};
            proxy_ssl_certificate_key {key};
            proxy_ssl_trusted_certificate {ca};
            proxy_ssl_verify on;
            proxy_ssl_verify_depth 2;
            proxy_ssl_name $photo_cache_name;
            proxy_ssl_server_name on;
            proxy_ssl_session_reuse on;
            proxy_ssl_protocols TLSv1.2 TLSv1.3;"""


def nginx_conf(root: Path, host: str, port: int, caches: Sequence[str], *,
               ttl_s: int, not_found_ttl_s: int, max_bytes: int, identity: tls.Identity | None,
               access_log: str = "", log_format: str = "") -> Path:
    """Writes the CDN's nginx config (and its cache and temp directories) under ``root``;
    returns the config file. ``identity``: the CDN's (role ``cdn``), presented to the
    caches' photo ports over mutual TLS; None (cluster.insecure): plain HTTP to them.
    ``access_log``: where nginx logs each request in ``log_format`` (e.g.
    ``syslog:server=127.0.0.1:5140``); empty: no access log."""
    if not caches:
        raise ValueError("the CDN needs at least one cache to pull from")
    for sub in ("cache", "tmp/body", "tmp/proxy", "tmp/fastcgi", "tmp/uwsgi", "tmp/scgi"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    conf = root / "nginx.conf"
    logging = (f"    log_format cdn '{log_format}';\n    access_log {access_log} cdn;" if access_log
               else "    access_log off;")
    conf.write_text(NGINX_CONF.format(
        access_log=logging, root=root, host=host, port=port, ttl=ttl_s, not_found_ttl=not_found_ttl_s, max_bytes=max_bytes,
        upstreams="\n".join(_nginx_upstream(i, caches) for i in range(len(caches))),
        routes="\n".join(f"        ~^/{i + 1}/ cache_{i + 1};" for i in range(len(caches))),
        user="user root;" if os.geteuid() == 0 else "",
        scheme="https" if identity else "http",
        upstream_tls=UPSTREAM_TLS.format(cert=identity.cert, key=identity.key, ca=identity.ca) if identity else "",
        names=_nginx_names(caches, identity.directory) if identity else ""))
    return conf


def _nginx_names(caches: Sequence[str], directory: Path) -> str:
    """The name each URL's cache's certificate must carry: the host it is dialled by (a
    backup cache presents the caches' one certificate, so it carries the name too). nginx
    checks DNS names only, so a cache dialled by address is checked by a DNS name of the
    caches' certificate when this directory holds it (``trenchcoat up``'s does), else by
    ``localhost``, which the certificates ``trenchcoat up`` makes carry."""
    by_name = next((n for n in tls.names_of(directory, "cache") if not _is_address(n)), "localhost")
    hosts = [endpoint.rpartition(":")[0].strip("[]") for endpoint in caches]
    hosts = [by_name if _is_address(host) else host for host in hosts]
    routes = "\n".join(f"        ~^/{i + 1}/ {host};" for i, host in enumerate(hosts))
    return f"\n    map $uri $photo_cache_name {{\n{routes}\n        default {hosts[0]};\n    }}"


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def nginx_argv(conf: Path) -> list[str]:
    """The command running nginx in the foreground on ``conf`` (from ``nginx_conf``)."""
    binary = _require_binary("nginx", "nginx-light", search=("/usr/sbin",))
    root = conf.parent
    return [binary, "-c", str(conf), "-p", str(root), "-e", "stderr"]


def _nginx_upstream(i: int, caches: Sequence[str]) -> str:
    backup = f"\n        server {caches[(i + 1) % len(caches)]} backup;" if len(caches) > 1 else ""
    return (f"    upstream cache_{i + 1} {{\n        server {caches[i]} max_fails=1 fail_timeout=2s;{backup}\n"
            f"        keepalive 16;\n    }}")


def prometheus_process(root: Path, log_path: Path, host: str, port: int, jobs: Mapping[str, Sequence[str]], *,
                       scrape_interval_s: float, retention_hours: int, identity: tls.Identity | None,
                       rule_files: Sequence[Path] = ()) -> ManagedProcess:
    """Prometheus (Debian's ``prometheus``) scraping ``jobs`` (job name -> host:port of
    each process's /metrics), its samples and config under ``root``. ``identity`` (role
    ``prometheus``): scraped over HTTPS presenting it, the targets checked against the
    cluster CA (Prometheus reads the files again as they change: a rotation needs no
    restart); None (cluster.insecure): plain HTTP."""
    binary = _require_binary("prometheus", "prometheus")
    (root / "data").mkdir(parents=True, exist_ok=True)
    interval = f"{scrape_interval_s:g}s"
    scheme: dict[str, object] = {"scheme": "https", "tls_config": {
        "ca_file": str(identity.ca), "cert_file": str(identity.cert), "key_file": str(identity.key)}} \
        if identity is not None else {}
    config = {
        "global": {"scrape_interval": interval, "evaluation_interval": interval, "scrape_timeout": interval},
        "rule_files": [str(path) for path in rule_files],
        "scrape_configs": [{"job_name": job, "static_configs": [{"targets": list(targets)}], **scheme}
                           for job, targets in jobs.items() if targets],
    }
    conf = root / "prometheus.yml"
    conf.write_text(json.dumps(config, indent=2) + "\n")  # JSON is YAML
    return ManagedProcess(
        name="prometheus",
        kind="prometheus",
        argv=[binary, f"--config.file={conf}", f"--storage.tsdb.path={root / 'data'}",
              f"--storage.tsdb.retention.time={retention_hours}h", f"--web.listen-address={host}:{port}",
              "--web.enable-lifecycle"],
        log_path=log_path,
        ready=http_probe(f"http://{host}:{port}/-/ready", b"Ready"),
        endpoint=f"http://{host}:{port}",
    )


POSTGRES_DATABASE = "trenchcoat"


POSTGRES_USER = "postgres"
POSTGRES_OWNER = "trenchcoat"
"""The role that owns the cluster's database and that the services log in as (with TLS)."""


def postgres_process(
    data_dir: Path, log_path: Path, port: int, *, durable: bool, tls_dir: Path | None, owner: str = POSTGRES_OWNER,
) -> ManagedProcess:
    """A private PostgreSQL on 127.0.0.1:port with its cluster in ``data_dir`` (created by
    initdb on first use) and a database named ``trenchcoat`` owned by role ``owner``.
    ``durable=False`` turns off fsync for test speed. With ``tls_dir`` (the cluster's
    identities) it takes TCP connections over TLS only (its certificate ``postgres.crt``,
    issued there on first use), each logging in with a SCRAM password (``postgres.password``
    there, for ``owner`` and the superuser alike); the endpoint is then a DSN carrying the
    password and asking to verify the server against the CA. The launcher's own
    housekeeping (the role, the database) goes through a socket in the data directory."""
    bindir = postgres_bindir()
    user = _postgres_os_user()
    if not (data_dir / "PG_VERSION").exists():
        _initdb(bindir, data_dir, user, log_path)
    settings = {
        "listen_addresses": "127.0.0.1",
        "unix_socket_directories": "",
        "max_connections": "200",
    }
    if not durable:
        settings |= {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
    password = None
    if tls_dir is not None:
        password = tls.password(tls_dir, "postgres")
        settings |= _postgres_tls(data_dir, tls_dir, user) | {
            "unix_socket_directories": str(data_dir), "unix_socket_permissions": "0700",
            "password_encryption": "scram-sha-256"}
    argv = [str(bindir / "postgres"), "-D", str(data_dir), "-p", str(port)]
    for key, value in settings.items():
        argv += ["-c", f"{key}={value}"]
    if password is None:
        dsn = f"postgresql://{POSTGRES_USER}@127.0.0.1:{port}/{POSTGRES_DATABASE}"
    else:
        assert tls_dir is not None
        dsn = (f"postgresql://{owner}:{password}@127.0.0.1:{port}/{POSTGRES_DATABASE}"
               f"?sslmode=verify-full&sslrootcert={quote(str(tls_dir / tls.CA_FILE))}")
    return ManagedProcess(
        name="postgres",
        kind="postgres",
        argv=argv,
        log_path=log_path,
        ready=_postgres_ready(bindir, port, socket_dir=data_dir if password else None, owner=owner,
                              password=password),
        endpoint=dsn,
        user=user,
        # SIGINT is PostgreSQL's "fast shutdown": roll back open transactions, checkpoint, exit.
        stop_signal=signal.SIGINT,
    )


POSTGRES_HBA = """\
# Written by trenchcoat at every start: the launcher's housekeeping over the socket in the
# data directory (closed to others); every TCP connection over TLS with a SCRAM password.
local     all  {superuser}  trust
hostssl   all  all   127.0.0.1/32  scram-sha-256
hostnossl all  all   all           reject
"""


def _postgres_tls(data_dir: Path, tls_dir: Path, user: str | None) -> dict[str, str]:
    """Settings for TLS: the server's certificate and key copied into the data directory
    (PostgreSQL wants its key owned by the user it runs as, readable by it alone), and the
    access rules (``POSTGRES_HBA``)."""
    cert, key = dependency_identity(tls_dir, "postgres")
    owner = pwd.getpwnam(user) if user is not None else None
    for source, name, mode in ((cert, "server.crt", 0o644), (key, "server.key", 0o600),
                               (tls_dir / tls.CA_FILE, "root.crt", 0o644)):
        target = data_dir / name
        target.write_bytes(source.read_bytes())
        os.chmod(target, mode)
        if owner is not None:
            os.chown(target, owner.pw_uid, owner.pw_gid)
    hba = data_dir / "pg_hba.conf"
    hba.write_text(POSTGRES_HBA.format(superuser=POSTGRES_USER))
    if owner is not None:
        os.chown(hba, owner.pw_uid, owner.pw_gid)
    return {"ssl": "on", "ssl_cert_file": "server.crt", "ssl_key_file": "server.key",
            "hba_file": str(hba)}


def postgres_bindir() -> Path:
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/postgres"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if not versions:
        raise ProcessError(
            "PostgreSQL server binaries not found under /usr/lib/postgresql; "
            "install the Debian package: apt-get install postgresql"
        )
    return versions[-1].parent


def postgres_data_dir(wanted: Path) -> Path:
    """Where a private PostgreSQL cluster for ``wanted`` can live. As root, PostgreSQL runs
    as user ``postgres``, which must be able to reach the directory; when ``wanted`` sits
    below a directory closed to others (say /root), a directory under /var/lib/trenchcoat
    named after it is used instead."""
    if os.geteuid() != 0 or _others_can_reach(wanted.parent):
        return wanted
    digest = hashlib.sha256(str(wanted.resolve()).encode()).hexdigest()[:12]
    return Path("/var/lib/trenchcoat") / f"postgres-{digest}"


def _others_can_reach(path: Path) -> bool:
    path = path.resolve()
    for part in [path, *path.parents]:
        if not part.exists():
            continue
        if not os.stat(part).st_mode & stat.S_IXOTH:
            return False
    return True


def _postgres_os_user() -> str | None:
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise ProcessError(
            "running as root, PostgreSQL needs the 'postgres' user, which the Debian "
            "package creates: apt-get install postgresql"
        ) from None
    return "postgres"


def _initdb(bindir: Path, data_dir: Path, user: str | None, log_path: Path) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(data_dir, 0o700)
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(data_dir, entry.pw_uid, entry.pw_gid)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        argv, run_as = as_user([str(bindir / "initdb"), "-D", str(data_dir), "-U", POSTGRES_USER,
                                "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync"], user)
        result = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, user=run_as, check=False)
    if result.returncode != 0:
        raise ProcessError(f"initdb of {data_dir} failed (exit {result.returncode}); see {log_path}")


def _postgres_ready(bindir: Path, port: int, *, socket_dir: Path | None = None, owner: str = POSTGRES_OWNER,
                    password: str | None = None) -> Callable[[], bool]:
    """Ready once it accepts connections, the database exists and (with a password) the
    owner's role logs in with it: the password set for it and the superuser, every start."""
    prepared = False
    host = str(socket_dir) if socket_dir is not None else "127.0.0.1"

    def run(tool: str, *args: str, database: str = "postgres") -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([str(bindir / tool), "-h", host, "-p", str(port), "-U", POSTGRES_USER, *args,
                               *(["-d", database] if tool == "psql" else [])],
                              capture_output=True, check=False)

    def sql(statement: str) -> bytes | None:
        done = run("psql", "-v", "ON_ERROR_STOP=1", "-tAc", statement)
        return done.stdout.strip() if done.returncode == 0 else None

    def _owned_by(role: str) -> bool:
        """The database and its tables handed to ``role`` (a cluster made before it logged
        in as its own role has them owned by the superuser)."""
        if sql(f"ALTER DATABASE {POSTGRES_DATABASE} OWNER TO {role}") is None:
            return False
        moved = run("psql", "-v", "ON_ERROR_STOP=1", "-tAc",
                    "DO $$DECLARE t record; BEGIN FOR t IN SELECT tablename FROM pg_tables "
                    f"WHERE schemaname = 'public' AND tableowner <> '{role}' LOOP "
                    f"EXECUTE format('ALTER TABLE public.%I OWNER TO {role}', t.tablename); END LOOP; END$$",
                    database=POSTGRES_DATABASE)
        return moved.returncode == 0

    def probe() -> bool:
        nonlocal prepared
        if not postgres_isready(host, port):
            return False
        if not prepared:
            if password is not None:
                quoted = password.replace("'", "''")
                exists = sql(f"SELECT 1 FROM pg_roles WHERE rolname = '{owner}'")
                if exists is None:
                    return False
                verb = "ALTER" if exists == b"1" else "CREATE"
                if sql(f"{verb} ROLE {owner} LOGIN PASSWORD '{quoted}'") is None:
                    return False
                if sql(f"ALTER ROLE {POSTGRES_USER} PASSWORD '{quoted}'") is None:
                    return False
            exists = sql(f"SELECT 1 FROM pg_database WHERE datname = '{POSTGRES_DATABASE}'")
            if exists is None:
                return False
            if exists != b"1":
                made = run("createdb", *(["-O", owner] if password is not None else []), POSTGRES_DATABASE)
                if made.returncode != 0:
                    return False
            elif password is not None and not _owned_by(owner):
                return False
            prepared = True
        return True

    return probe


def _require_binary(name: str, package: str, search: Sequence[str] = ()) -> str:
    path = shutil.which(name) or next((f"{d}/{name}" for d in search if os.access(f"{d}/{name}", os.X_OK)), None)
    if path is None:
        raise ProcessError(f"{name} not found on PATH; install the Debian package: apt-get install {package}")
    return path


def postgres_isready(host: str, port: int) -> bool:
    """True when a PostgreSQL server accepts connections there."""
    result = subprocess.run(
        [str(postgres_bindir() / "pg_isready"), "-h", host, "-p", str(port), "-t", "1"],
        capture_output=True, check=False,
    )
    return result.returncode == 0
