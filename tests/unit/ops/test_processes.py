"""trenchcoat/ops/processes.py: the pieces of process management that need no process."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from trenchcoat.ops import processes


def test_exit_codes_are_described_for_people():
    assert processes.describe_exit(-9) == "signal SIGKILL"
    assert processes.describe_exit(2) == "exit code 2"


STARTER = """
import sys
import time
from pathlib import Path
from trenchcoat.ops.processes import ManagedProcess
p = ManagedProcess(name="sleeper", argv=["sh", "-c", "id -un; exec sleep 300"], log_path=Path(sys.argv[1]),
                   ready=lambda: True, user="nobody")
p.start()
deadline = time.monotonic() + 60
while not Path(sys.argv[1]).read_text() and time.monotonic() < deadline:  # it said who it runs as
    time.sleep(0.05)
print(p.pid, flush=True)
"""


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="switching users takes root and setpriv")
def test_a_process_run_as_another_user_runs_as_it_and_still_dies_with_the_process_that_started_it(tmp_path):
    # (as_user: one setpriv switches the user and then sets the parent-death signal,
    # which a switch made after it would clear; and Popen never forks with user= itself.)
    log = tmp_path / "sleeper.log"
    started = subprocess.run([sys.executable, "-c", STARTER, str(log)], capture_output=True, text=True, check=True,
                             env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[3])})
    pid = int(started.stdout)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.1)
    assert not _alive(pid), "the process outlived the one that started it"
    assert log.read_text().split() == ["nobody"]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"
