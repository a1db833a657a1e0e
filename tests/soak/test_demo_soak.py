"""The demo's read-after-write checks, round after round, with the CPUs hogged: every
acknowledged upload reads back byte-exact on every read, every round. Run by
``make soak`` (not by ``make test``); ``SOAK_ROUNDS`` sets the rounds (default 10) and
``SOAK_HOGS`` the busy loops (default 2, one per core here).

Each round is a whole ``trenchcoat demo``: a fresh cluster whose processes all start at
once on a starved machine (where the 404 of issue 9 came from), uploads, CDN and direct
reads, a store killed with SIGKILL, uploads and reads with it down, a delete.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import pytest

from tests import harness

pytestmark = pytest.mark.soak

HOG = "while True: pass"


def test_every_acknowledged_upload_reads_back_every_round_with_the_cpus_hogged():
    rounds = int(os.environ.get("SOAK_ROUNDS", "10"))
    hogs = [subprocess.Popen([sys.executable, "-c", HOG]) for _ in range(int(os.environ.get("SOAK_HOGS", "2")))]
    root = harness.open_tempdir("tc-soak-")
    failures = []
    try:
        for r in range(1, rounds + 1):
            env = {k: v for k, v in os.environ.items() if not k.startswith("TRENCHCOAT_")}
            env["TRENCHCOAT_CLUSTER__DATA_DIR"] = str(root / f"round-{r}")
            started = time.monotonic()
            result = subprocess.run([sys.executable, "-m", "trenchcoat", "demo"], env=env, capture_output=True,
                                    text=True, timeout=900, cwd=harness.REPO_ROOT, check=False)
            checks = [line for line in result.stdout.splitlines() if line.startswith(("   ok", "!! FAILED"))]
            failed = [line for line in checks if line.startswith("!!")]
            print(f"round {r}/{rounds}: exit {result.returncode}, {len(checks) - len(failed)} checks ok, "
                  f"{len(failed)} failed, {time.monotonic() - started:.0f} s", flush=True)
            if result.returncode or failed:
                failures.append(f"round {r}:\n{result.stdout}\n{result.stderr[-3000:]}")
            shutil.rmtree(root / f"round-{r}", ignore_errors=True)
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
        shutil.rmtree(root, ignore_errors=True)
    assert not failures, "\n\n".join(failures)
