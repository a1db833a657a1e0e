"""trenchcoat/ops/processes.py: the pieces of process management that need no process."""

from __future__ import annotations

from trenchcoat.ops import processes


def test_exit_codes_are_described_for_people():
    assert processes.describe_exit(-9) == "signal SIGKILL"
    assert processes.describe_exit(2) == "exit code 2"
