"""Driving `trenchcoat up` and the CLI from tests as a person does: the command in a real
process (its output read line by line), the CLI's verbs as subprocesses with the cluster's
data directory in their environment."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from tests import harness

NO_F4_CELL = {**{f"TRENCHCOAT_{s}__COUNT": "0" for s in ("F4", "F4_STORAGE", "F4_KEYSTORE", "F4_BACKOFF",
                                                          "F4_REBUILDER")},
              "TRENCHCOAT_F4__MIGRATE": "false"}
"""The default cluster less its f4 cell (18 processes): for tests about the launcher
itself, so the suite stays quick on two cores; the demo and the first test run it whole."""
SMALL = {**NO_F4_CELL, "TRENCHCOAT_DIRECTORY__COUNT": "1", "TRENCHCOAT_STORE__COUNT": "3",
         "TRENCHCOAT_TRANSFORMER__COUNT": "1", "TRENCHCOAT_FANOUT__COUNT": "1"}
"""That, with one directory, transformer and fan-out worker and a store on each of 3 racks
(12 processes): for tests of how `trenchcoat up` starts, stops and reports, which need
every kind of process but not the numbers of them."""


TLS_DIR_KEY = harness.TLS_DIR_KEY


def cli(data_dir: Path, *args: str, timeout: float = 120, whole: bool = False) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trenchcoat", *args],
        env=env(data_dir, None if whole else NO_F4_CELL), capture_output=True, text=True, timeout=timeout, cwd=harness.REPO_ROOT, check=False,
    )


def env(data_dir: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    # The suite's TLS directory is kept: the test process calls the cluster with its identities.
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRENCHCOAT_") or k == TLS_DIR_KEY}
    return env | {"TRENCHCOAT_CLUSTER__DATA_DIR": str(data_dir)} | (extra or {})


class Up:
    """A running `trenchcoat up` whose output is read line by line."""

    def __init__(self, data_dir: Path, extra: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "trenchcoat", "up"],
            env=env(data_dir, extra), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            cwd=harness.REPO_ROOT,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self.lines.put(line.rstrip("\n"))

    def wait_for(self, text: str, timeout: float = 120) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                if self.popen.poll() is not None and self.lines.empty():
                    break
                continue
            self.seen.append(line)
            if text in line:
                return line
        raise AssertionError(f"{text!r} not printed; output so far:\n" + "\n".join(self.seen))

    def state(self) -> dict:
        return json.loads((self.data_dir / "cluster.json").read_text())

    def pids(self) -> set[int]:
        return {p["pid"] for p in self.state()["processes"]}

    def close(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()


@contextlib.contextmanager
def running_up(data_dir: Path, extra: dict[str, str] | None) -> Iterator[Up]:
    """`trenchcoat up` on ``data_dir`` with the ``extra`` settings, from "cluster up" to the
    end of the block; then it and everything it started are gone."""
    running = Up(data_dir, extra)
    groups: set[int] = set()
    try:
        running.wait_for("cluster up")
        groups = running.pids()
        yield running
    finally:
        running.close()
        for pid in groups:  # belt and braces: never leak a child into other tests
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
