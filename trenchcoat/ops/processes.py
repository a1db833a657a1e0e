"""Child processes the launcher and the test harness start, watch and stop.

``ManagedProcess`` runs one program in its own process group with its output in a log
file, waits until a readiness probe passes, and stops it (its stop signal, then SIGKILL
to the whole group) so nothing is left behind. Children get a parent-death signal
(``setpriv --pdeathsig``) so they go down even if their parent is killed with -9.
``stop_all`` and ``wait_all_ready`` handle many at once; the probes say when one serves."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from trenchcoat.errors import TrenchcoatError
from trenchcoat.ops.proc_tree import group_members


class ProcessError(TrenchcoatError):
    """Raised when a child process cannot start, exits early, or never becomes ready."""


def as_user(argv: list[str], user: str | None, *setpriv: str) -> tuple[list[str], str | None]:
    """``argv`` run through setpriv (with the ``setpriv`` options, and as ``user`` if one
    is given), and the ``user`` to hand subprocess then: None, as setpriv switches to it.
    Popen's own ``user=`` makes it fork() rather than vfork(), and a fork() runs gRPC's
    fork handlers in the child, which crash it at times while gRPC threads of this process
    are busy (a private PostgreSQL died of SIGSEGV so in CI). One setpriv does it all: a
    parent-death signal set before a change of user would be cleared by it. Without
    setpriv, ``argv`` and ``user`` as they are."""
    if not shutil.which("setpriv") or not (user or setpriv):
        return argv, user
    switch = [f"--reuid={user}", f"--regid={pwd.getpwnam(user).pw_gid}", "--init-groups"] if user else []
    return ["setpriv", *switch, *setpriv, "--", *argv], None


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
        argv, user = as_user(list(self.argv), self.user, f"--pdeathsig={signal.Signals(self.stop_signal).name}")
        with open(self.log_path, "ab") as log:
            try:
                self.popen = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=dict(self.env) if self.env is not None else None,
                    user=user,
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
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.popen.pid, self.stop_signal)

    def finish_stopping(self, timeout: float) -> int | None:
        """Waits up to ``timeout`` for it to exit after ``ask_to_stop``, then SIGKILLs its
        process group; its exit code (None if it was never started)."""
        if self.popen is None:
            return None
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout)
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
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.popen.pid, signal.SIGKILL)
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


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


def http_probe(url: str, expect: bytes = b"", *, context: ssl.SSLContext | None = None) -> Callable[[], bool]:
    """``url`` answers 200 with ``expect`` in its body (over TLS with ``context``, which may
    carry a client certificate)."""
    def probe() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=1, context=context) as response:
                return response.status == 200 and expect in response.read()
        except (OSError, ValueError):
            return False

    return probe


@dataclass(frozen=True)
class RedisTls:
    """How a Redis with TLS and an ACL user is reached: the CA its certificate is checked
    against, and the user's name and password."""

    ca: Path
    user: str
    password: str


def redis_probe(host: str, port: int, *, tls: RedisTls | None = None) -> Callable[[], bool]:
    def probe() -> bool:
        try:
            return redis_command(host, port, "PING", tls=tls, timeout=1.0) == "PONG"
        except ProcessError:  # an error reply: loading, or not letting us in (yet)
            return False

    return probe


def redis_command(host: str, port: int, *args: str, tls: RedisTls | None = None, timeout: float = 5.0) -> object:
    """Sends one command to one Redis (over TLS logged in as ``tls``'s user when given) and
    returns its reply: str, int, None or a list of them; an error reply raises ProcessError.
    For the nodes of a cluster one by one, which a cluster client does not address."""
    commands = [args] if tls is None else [("AUTH", tls.user, tls.password), args]
    payload = b"".join(_resp_command(command) for command in commands)
    with socket.create_connection((host, port), timeout=timeout) as raw:
        if tls is None:
            raw.sendall(payload)
            with raw.makefile("rb") as reader:
                return _resp_reply(reader)
        context = ssl.create_default_context(cafile=str(tls.ca))
        with context.wrap_socket(raw, server_hostname=host) as s:
            s.sendall(payload)
            with s.makefile("rb") as reader:
                _resp_reply(reader)  # +OK, or the error raised
                return _resp_reply(reader)


def _resp_command(args: Sequence[str]) -> bytes:
    parts = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        data = arg.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def _resp_reply(reader: BinaryIO) -> object:
    line = reader.readline()
    if not line.endswith(b"\r\n"):
        raise ProcessError(f"Redis closed the connection (read {line!r})")
    kind, rest = line[:1], line[1:-2].decode(errors="replace")
    if kind == b"+":
        return rest
    if kind == b"-":
        raise ProcessError(f"Redis answered: {rest}")
    if kind == b":":
        return int(rest)
    if kind == b"$":
        if int(rest) < 0:
            return None
        data = reader.read(int(rest) + 2)
        return bytes(data[:-2]).decode(errors="replace")
    if kind == b"*":
        return None if int(rest) < 0 else [_resp_reply(reader) for _ in range(int(rest))]
    raise ProcessError(f"unexpected Redis reply {line!r}")


def redis_url_probe(url: str) -> Callable[[], bool]:
    """``redis_probe`` for a Redis URL (a ``rediss://user:password@host:port/0?ssl_ca_certs=...``
    one over TLS, logging in as the user)."""
    parts = urllib.parse.urlsplit(url)
    assert parts.hostname is not None and parts.port is not None, url
    if parts.scheme != "rediss":
        return redis_probe(parts.hostname, parts.port)
    ca = urllib.parse.parse_qs(parts.query).get("ssl_ca_certs", [""])[0]
    return redis_probe(parts.hostname, parts.port, tls=RedisTls(Path(ca), urllib.parse.unquote(parts.username or ""),
                                                                  urllib.parse.unquote(parts.password or "")))


def grpc_health_probe(address: str, service: str = "") -> Callable[[], bool]:
    def probe() -> bool:
        return grpc_health(address, service) == "SERVING"

    return probe


def grpc_health(address: str, service: str = "", timeout: float = 1.0) -> str:
    """The health status name of a gRPC server (``UNREACHABLE`` if it does not answer)."""
    from trenchcoat import rpc  # grpc loads only when a probe runs

    return rpc.health_blocking(address, service=service, timeout=timeout)
