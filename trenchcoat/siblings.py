"""``workers = N``: N processes of one stateless service sharing its ports, so it uses N cores.

Python runs one core per process, so a stateless tier (the router, the feed) scales on a
machine by running the same server several times on the same port with SO_REUSEPORT: the
kernel spreads connections over them. The process started (by ``trenchcoat up``, a pod
spec, a shell) is worker 0; it starts workers 1..N-1 as its children, with the same
command and ``TRENCHCOAT_WORKER=<i>``, and owns them:

- every worker serves gRPC (and health) on the shared port; only worker 0 serves
  ``/metrics``, for all of them (prometheus_client's multiprocess mode: each worker writes
  its samples under ``PROMETHEUS_MULTIPROC_DIR``; worker 0 re-executes itself once at start
  so that is set before any metric exists);
- SIGTERM to worker 0 is passed on to every child at the start of its drain, so all drain
  together; a child that exits on its own stops worker 0 with an error (the supervisor
  then restarts the whole set), and a child dies with its parent (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile

log = logging.getLogger(__name__)

WORKER_ENV = "TRENCHCOAT_WORKER"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
_OWNED_ENV = "TRENCHCOAT_METRICS_DIR_OWNED"


def worker_index() -> int:
    """This process's worker number (0: the first, which starts the others)."""
    return int(os.environ.get(WORKER_ENV, "0"))


def prepare(workers: int) -> None:
    """In worker 0 of a service with ``workers`` > 1, before anything else runs: makes sure
    prometheus_client runs in multiprocess mode (re-executing this process once with a
    fresh metrics directory if it does not yet: metrics are created when modules are
    imported, before any config is read), then starts workers 1..N-1. They are started
    here, before gRPC has started a thread, because forking a process whose gRPC is busy
    can abort the child."""
    if workers <= 1 or worker_index() != 0:
        return
    spec = getattr(sys.modules["__main__"], "__spec__", None)
    if spec is None or not spec.parent:
        raise RuntimeError("workers > 1 needs the service started as `python -m <package>`")
    command = [sys.executable, "-m", spec.parent, *sys.argv[1:]]
    if not os.environ.get(MULTIPROC_ENV):
        directory = tempfile.mkdtemp(prefix="trenchcoat-metrics-")
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(sys.executable, command, {**os.environ, MULTIPROC_ENV: directory, _OWNED_ENV: "1"})
    for i in range(1, workers):
        # setpriv (util-linux) sets PR_SET_PDEATHSIG, then execs: a child dies with worker 0.
        _children.append(subprocess.Popen(["setpriv", "--pdeathsig=SIGTERM", "--", *command],
                                          env={**os.environ, WORKER_ENV: str(i)}))
    log.info("started %d more workers sharing the port: pids %s", workers - 1,
             ", ".join(str(c.pid) for c in _children))


_children: list[subprocess.Popen[bytes]] = []


class Siblings:
    """Worker 0's children (started by ``prepare``) as one of its service workers."""

    stops_service = True
    """A child gone ends the set (the supervisor restarts it whole) rather than turning it
    NOT_SERVING: health probes reach whichever process the kernel picks on the shared
    port, and the others would go on answering SERVING."""

    def __init__(self, grace_s: float) -> None:
        self._grace_s = grace_s
        self._children = list(_children)
        self._stopping = False

    async def run(self) -> None:
        while True:
            for child in self._children:
                if child.poll() is not None and not self._stopping:
                    raise RuntimeError(f"worker process {child.pid} exited with code {child.returncode}")
            if all(c.returncode is not None for c in self._children):
                return
            await asyncio.sleep(0.2)

    def begin_drain(self) -> None:
        """Passes SIGTERM on, so the children drain while this process does."""
        self._stopping = True
        for child in self._children:
            if child.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    child.send_signal(signal.SIGTERM)

    async def shutdown(self) -> None:
        self.begin_drain()
        for child in self._children:
            try:
                await asyncio.wait_for(asyncio.to_thread(child.wait), self._grace_s + 5)
            except TimeoutError:
                log.error("worker %d did not stop within %.0fs; killing it", child.pid, self._grace_s + 5)
                with contextlib.suppress(ProcessLookupError):
                    child.kill()
                await asyncio.to_thread(child.wait)
        if os.environ.get(_OWNED_ENV):
            shutil.rmtree(os.environ[MULTIPROC_ENV], ignore_errors=True)
