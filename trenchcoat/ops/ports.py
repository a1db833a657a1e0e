"""Free TCP ports for the processes the launcher, the tests and the benchmarks start,
claimed machine-wide so two of them running at once never hand out the same port."""

from __future__ import annotations

import fcntl
import os
import socket
from pathlib import Path

from trenchcoat.ops.proc_tree import start_time

_handed_out: set[int] = set()
"""Ports this process handed out (the OS may pick a just-released one again)."""
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
    mine = f"{os.getpid()} {start_time(os.getpid())}"
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
        return start_time(int(pid)) == started
    except ValueError:
        return False


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


