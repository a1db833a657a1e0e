"""Child processes the launcher and the test harness start, watch and stop.

``ManagedProcess`` runs one program in its own process group with its output in a log
file, waits until a readiness probe passes, and stops it (its stop signal, then SIGKILL
to the whole group) so nothing is left behind. Children get a parent-death signal
(``setpriv --pdeathsig``) so they go down even if their parent is killed with -9.

The private dependencies are built here from the Debian packages: ``etcd_process``
(etcd-server), ``postgres_process`` (postgresql: initdb in a directory of ours, run as
user ``postgres`` when we are root, since PostgreSQL refuses to run as root) and
``redis_process`` (redis-server). Each listens on 127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from trenchcoat.errors import TrenchcoatError


class ProcessError(TrenchcoatError):
    """Raised when a child process cannot start, exits early, or never becomes ready."""


_handed_out: set[int] = set()
PORT_CLAIMS = Path(os.environ.get("TRENCHCOAT_PORT_CLAIMS", "/tmp/trenchcoat-ports"))
"""Where ``free_port`` records, machine-wide, which process holds each port it handed out
(a file per port naming the holder's pid), so two test suites, or a benchmark beside one,
never hand out the same port: the OS knows only what is listening now, and a port handed
out is not listened on until its service has started."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the OS picks it), never one handed out before
    by this process or by another that still runs (claimed in ``PORT_CLAIMS``): the OS may
    pick a just-released port again, and two of a service's ports (gRPC and metrics, asked
    for one after the other) must differ."""
    for _ in range(1000):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port = int(s.getsockname()[1])
        if port not in _handed_out and _claim(port):
            _handed_out.add(port)
            return port
    raise OSError("no free TCP port that was not handed out already")


def _claim(port: int) -> bool:
    """Claims ``port`` for this process machine-wide: True unless a live process holds it.
    Claims are read and written under one lock (``PORT_CLAIMS/.lock``), so two processes
    never both take a port, nor see a claim half written. A claim outlives its process only
    as a file naming a dead pid, which the next claim of that port takes over (the pid is
    checked with its start time, so a pid given out again to a stranger does not hold a
    port for ever)."""
    PORT_CLAIMS.mkdir(mode=0o777, parents=True, exist_ok=True)
    path = PORT_CLAIMS / str(port)
    mine = f"{os.getpid()} {_start_time(os.getpid())}"
    with open(PORT_CLAIMS / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        try:
            holder = path.read_text()
        except FileNotFoundError:
            holder = ""
        if holder and holder != mine and _holder_alive(holder):
            return False
        path.write_text(mine)
        return True


def _holder_alive(holder: str) -> bool:
    pid, _, started = holder.partition(" ")
    try:
        return _start_time(int(pid)) == started
    except ValueError:
        return False


def _start_time(pid: int) -> str:
    """When ``pid`` started (clock ticks since boot), "" if there is no such process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return ""


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True if a server could listen on ``port`` now. Connections of a process that just
    exited linger in TIME_WAIT on it; servers bind with SO_REUSEADDR and so does this."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


@dataclass
class ManagedProcess:
    """One child process: how to start it, how to know it is ready, how to stop it."""

    name: str
    """Short name used in logs and status (e.g. ``etcd``, ``store-3``)."""
    argv: Sequence[str]
    """Program and arguments."""
    log_path: Path
    """File receiving stdout and stderr (appended)."""
    ready: Callable[[], bool]
    """Readiness probe; True once the process serves."""
    endpoint: str = ""
    """Where it serves (host:port or URL), for people and for other processes."""
    kind: str = "process"
    """What it is: ``etcd``, ``postgres``, ``redis``, ``grpc``."""
    env: Mapping[str, str] | None = None
    """Environment (None: inherit ours)."""
    user: str | None = None
    """Run as this user (we must be root)."""
    stop_signal: int = signal.SIGTERM
    """Signal asking for a clean stop."""
    metrics: str = ""
    """Prometheus /metrics URL, if it has one."""
    popen: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> None:
        if self.running():
            raise ProcessError(f"{self.name} is already running (pid {self.pid})")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        argv = list(self.argv)
        if shutil.which("setpriv"):
            argv = ["setpriv", f"--pdeathsig={signal.Signals(self.stop_signal).name}", "--", *argv]
        with open(self.log_path, "ab") as log:
            try:
                self.popen = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=dict(self.env) if self.env is not None else None,
                    user=self.user,
                    start_new_session=True,
                )
            except OSError as exc:
                raise ProcessError(f"cannot start {self.name} ({argv[0]}): {exc}") from exc
        _STARTED.append(self)

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def exit_code(self) -> int | None:
        """The exit code once it has exited (negative: killed by that signal)."""
        return self.popen.poll() if self.popen else None

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Waits until the probe passes; raises ProcessError if it exits or times out."""
        deadline = time.monotonic() + timeout
        while True:
            code = self.exit_code()
            if code is not None:
                raise ProcessError(
                    f"{self.name} exited with {describe_exit(code)} while starting; "
                    f"last lines of {self.log_path}:\n{self.log_tail()}"
                )
            try:
                if self.ready():
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise ProcessError(
                    f"{self.name} not ready after {timeout:.0f}s; last lines of "
                    f"{self.log_path}:\n{self.log_tail()}"
                )
            time.sleep(0.05)

    def stop(self, timeout: float = 15.0) -> int | None:
        """Asks it to stop, waits up to ``timeout``, then SIGKILLs its process group.
        Returns its exit code (None if it was never started)."""
        self.ask_to_stop()
        return self.finish_stopping(timeout)

    def ask_to_stop(self) -> None:
        """Sends its stop signal (if it runs) without waiting: ``stop_all`` asks every
        process first, then waits for them together."""
        if self.popen is not None and self.popen.poll() is None:
            try:
                os.kill(self.popen.pid, self.stop_signal)
            except ProcessLookupError:
                pass

    def finish_stopping(self, timeout: float) -> int | None:
        """Waits up to ``timeout`` for it to exit after ``ask_to_stop``, then SIGKILLs its
        process group; its exit code (None if it was never started)."""
        if self.popen is None:
            return None
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
        self.kill_group()
        return self.popen.wait()

    def kill(self) -> None:
        """kill -9 the process itself (fault tests); its children may linger until stop()."""
        if self.running():
            assert self.popen is not None
            os.kill(self.popen.pid, signal.SIGKILL)
            self.popen.wait()

    def kill_group(self) -> None:
        """SIGKILL everything left in its process group (only if it is still the group this
        process led: once it is reaped, its pid may be another's, leading a group of its own)."""
        if self.popen is None:
            return
        if self.popen.poll() is None or group_members({self.popen.pid}):
            try:
                os.killpg(self.popen.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if self.popen.poll() is None:
            self.popen.wait()

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


def stop_all(processes: Sequence[ManagedProcess], timeout: float = 15.0) -> None:
    """Asks every process to stop at once, then waits for them together (each up to
    ``timeout`` from now), then SIGKILLs what is left of each: as long as the slowest, not
    the sum."""
    for process in processes:
        process.ask_to_stop()
    deadline = time.monotonic() + timeout
    for process in processes:
        process.finish_stopping(max(0.0, deadline - time.monotonic()))


def wait_all_ready(processes: Sequence[ManagedProcess], timeout: float = 60.0) -> None:
    """Waits until every process's probe passes, polling them in turn (processes started
    together become ready together: the wait is the slowest's, not the sum); raises
    ProcessError naming the first that exits or is not ready in time."""
    deadline = time.monotonic() + timeout
    waiting = list(processes)
    while waiting:
        for process in list(waiting):
            code = process.exit_code()
            if code is not None:
                raise ProcessError(f"{process.name} exited with {describe_exit(code)} while starting; "
                                   f"last lines of {process.log_path}:\n{process.log_tail()}")
            try:
                ready = process.ready()
            except OSError:
                ready = False
            if ready:
                waiting.remove(process)
        if waiting and time.monotonic() > deadline:
            late = waiting[0]
            raise ProcessError(f"{late.name} not ready after {timeout:.0f}s (nor {len(waiting) - 1} others); last "
                               f"lines of {late.log_path}:\n{late.log_tail()}")
        if waiting:
            time.sleep(0.05)


_STARTED: list[ManagedProcess] = []


def started() -> list[ManagedProcess]:
    """Every ManagedProcess started in this interpreter, in order."""
    return list(_STARTED)


def group_members(pgids: set[int]) -> list[tuple[int, str]]:
    """Live (pid, command line) of every process in one of the process groups ``pgids``
    that a ManagedProcess began: each began a session of its own, so its group is also its
    session. A group of the same id in another session is a stranger's: the id is a pid
    the kernel gave out again after our process was gone."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat_text = (entry / "stat").read_text()
            fields = stat_text[stat_text.rindex(")") + 2:].split()
            state, pgrp, session = fields[0], int(fields[2]), int(fields[3])
            if pgrp in pgids and session == pgrp and state != "Z":
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                found.append((int(entry.name), cmd.strip()))
        except (FileNotFoundError, ProcessLookupError, ValueError, IndexError):
            continue
    return found


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


# --- readiness probes -----------------------------------------------------------------


def http_probe(url: str, expect: bytes = b"") -> Callable[[], bool]:
    def probe() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                return response.status == 200 and expect in response.read()
        except (OSError, ValueError):
            return False

    return probe


def redis_probe(host: str, port: int) -> Callable[[], bool]:
    def probe() -> bool:
        with socket.create_connection((host, port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")

    return probe


def grpc_health_probe(address: str, service: str = "") -> Callable[[], bool]:
    def probe() -> bool:
        return grpc_health(address, service) == "SERVING"

    return probe


def grpc_health(address: str, service: str = "", timeout: float = 1.0) -> str:
    """The health status name of a gRPC server (``UNREACHABLE`` if it does not answer)."""
    from trenchcoat import rpc  # grpc loads only when a probe runs

    return rpc.health_blocking(address, service=service, timeout=timeout)


# --- the private dependencies ---------------------------------------------------------


def etcd_process(data_dir: Path, log_path: Path, port: int, peer_port: int) -> ManagedProcess:
    binary = _require_binary("etcd", "etcd-server")
    client = f"http://127.0.0.1:{port}"
    peer = f"http://127.0.0.1:{peer_port}"
    data_dir.mkdir(parents=True, exist_ok=True)
    return ManagedProcess(
        name="etcd",
        kind="etcd",
        argv=[
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
        ],
        log_path=log_path,
        ready=http_probe(f"{client}/health", b'"health":"true"'),
        endpoint=f"127.0.0.1:{port}",
    )


def redis_process(data_dir: Path, log_path: Path, port: int, *, persistent: bool) -> ManagedProcess:
    binary = _require_binary("redis-server", "redis-server")
    data_dir.mkdir(parents=True, exist_ok=True)
    return ManagedProcess(
        name="redis",
        kind="redis",
        argv=[
            binary,
            "--port", str(port),
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
        ],
        log_path=log_path,
        ready=redis_probe("127.0.0.1", port),
        endpoint=f"redis://127.0.0.1:{port}/0",
    )


NGINX_CONF = """\
# Written by trenchcoat: the local cluster's pull CDN (a caching reverse proxy).
daemon off;
master_process off;
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
    }}
    server {{
        listen {host}:{port};
        location = /cdn-health {{ return 200 "ok\\n"; }}
        location / {{
            proxy_pass http://$photo_cache;
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
                  ttl_s: int, not_found_ttl_s: int, max_bytes: int) -> ManagedProcess:
    """nginx as a caching reverse proxy in front of the caches' photo HTTP ports (a pull
    CDN; ``caches[i]`` is cache id i + 1): one process (master_process off), its config,
    cache and temp files under ``root``. A URL goes to the cache it names; when that cache
    is down, to the next one (which reads the same stores)."""
    conf = nginx_conf(root, host, port, caches, ttl_s=ttl_s, not_found_ttl_s=not_found_ttl_s, max_bytes=max_bytes)
    return ManagedProcess(
        name="cdn",
        kind="http",
        argv=nginx_argv(conf),
        log_path=log_path,
        ready=http_probe(f"http://{host}:{port}/cdn-health", b"ok"),
        endpoint=f"http://{host}:{port}",
    )


def cdn_process(log_path: Path, host: str, port: int, metrics_port: int, env: Mapping[str, str]) -> ManagedProcess:
    """``python -m trenchcoat.cdn``: nginx as the pull CDN with its metrics, configured by the
    cluster config ``env`` names (TRENCHCOAT_CONFIG and TRENCHCOAT_* overrides)."""
    return ManagedProcess(
        name="cdn",
        kind="http",
        argv=[sys.executable, "-m", "trenchcoat.cdn"],
        log_path=log_path,
        ready=http_probe(f"http://{host}:{port}/cdn-health", b"ok"),
        endpoint=f"http://{host}:{port}",
        metrics=f"http://{host}:{metrics_port}/metrics",
        env=dict(env),
    )


def nginx_conf(root: Path, host: str, port: int, caches: Sequence[str], *,
               ttl_s: int, not_found_ttl_s: int, max_bytes: int, access_log: str = "", log_format: str = "") -> Path:
    """Writes the CDN's nginx config (and its cache and temp directories) under ``root``;
    returns the config file. ``access_log``: where nginx logs each request in
    ``log_format`` (e.g. ``syslog:server=127.0.0.1:5140``); empty: no access log."""
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
        routes="\n".join(f"        ~^/{i + 1}/ cache_{i + 1};" for i in range(len(caches)))))
    return conf


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
                       scrape_interval_s: float, retention_hours: int,
                       rule_files: Sequence[Path] = ()) -> ManagedProcess:
    """Prometheus (Debian's ``prometheus``) scraping ``jobs`` (job name -> host:port of
    each process's /metrics), its samples and config under ``root``."""
    binary = _require_binary("prometheus", "prometheus")
    (root / "data").mkdir(parents=True, exist_ok=True)
    interval = f"{scrape_interval_s:g}s"
    config = {
        "global": {"scrape_interval": interval, "evaluation_interval": interval, "scrape_timeout": interval},
        "rule_files": [str(path) for path in rule_files],
        "scrape_configs": [{"job_name": job, "static_configs": [{"targets": list(targets)}]}
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


def postgres_process(
    data_dir: Path, log_path: Path, port: int, *, durable: bool
) -> ManagedProcess:
    """A private PostgreSQL on 127.0.0.1:port with its cluster in ``data_dir`` (created by
    initdb on first use) and a database named ``trenchcoat``. ``durable=False`` turns off
    fsync for test speed."""
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
    argv = [str(bindir / "postgres"), "-D", str(data_dir), "-p", str(port)]
    for key, value in settings.items():
        argv += ["-c", f"{key}={value}"]
    dsn = f"postgresql://{POSTGRES_USER}@127.0.0.1:{port}/{POSTGRES_DATABASE}"
    return ManagedProcess(
        name="postgres",
        kind="postgres",
        argv=argv,
        log_path=log_path,
        ready=_postgres_ready(bindir, port),
        endpoint=dsn,
        user=user,
        # SIGINT is PostgreSQL's "fast shutdown": roll back open transactions, checkpoint, exit.
        stop_signal=signal.SIGINT,
    )


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
        result = subprocess.run(
            [str(bindir / "initdb"), "-D", str(data_dir), "-U", POSTGRES_USER,
             "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync"],
            stdout=log, stderr=subprocess.STDOUT, user=user, check=False,
        )
    if result.returncode != 0:
        raise ProcessError(f"initdb of {data_dir} failed (exit {result.returncode}); see {log_path}")


def _postgres_ready(bindir: Path, port: int) -> Callable[[], bool]:
    created = False

    def probe() -> bool:
        nonlocal created
        base = ["-h", "127.0.0.1", "-p", str(port), "-U", POSTGRES_USER]
        if not postgres_isready("127.0.0.1", port):
            return False
        if not created:
            exists = subprocess.run(
                [str(bindir / "psql"), *base, "-d", "postgres", "-tAc",
                 f"SELECT 1 FROM pg_database WHERE datname = '{POSTGRES_DATABASE}'"],
                capture_output=True, check=False,
            )
            if exists.returncode != 0:
                return False
            if exists.stdout.strip() != b"1":
                made = subprocess.run(
                    [str(bindir / "createdb"), *base, POSTGRES_DATABASE],
                    capture_output=True, check=False,
                )
                if made.returncode != 0:
                    return False
            created = True
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


@contextlib.contextmanager
def frozen(root: int) -> Iterator[None]:
    """Process ``root`` and all its descendants stopped (SIGSTOP) for the block, and
    continued (SIGCONT) after it, whatever happens in it."""
    family = [root]
    try:
        os.kill(root, signal.SIGSTOP)  # first, so it forks no one new meanwhile
        family += descendants(root)
        for pid in family[1:]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
        yield
    finally:
        for pid in family:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


def descendants(root: int) -> list[int]:
    """Every live descendant of process ``root`` (from /proc)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue  # gone meanwhile
    found, frontier = [], [root]
    while frontier:
        children = [pid for pid, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found
