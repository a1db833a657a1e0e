"""trenchcoat/ops/proc_tree.py: which process groups are ours."""

from __future__ import annotations

from trenchcoat.ops import proc_tree


def test_a_group_counts_as_ours_only_in_a_session_it_began():
    """A ManagedProcess begins a session, so its group id is its session id too. A process
    that only made a group of its own (as a shell's job does) under a pid the kernel gave
    out again is a stranger: never reported as left behind, never killed with our groups."""
    import subprocess
    import sys

    sleep = [sys.executable, "-c", "import time; time.sleep(30)"]
    ours = subprocess.Popen(sleep, start_new_session=True)
    stranger = subprocess.Popen(sleep, process_group=0)  # its own group, in our session
    try:
        assert [pid for pid, _ in proc_tree.group_members({ours.pid, stranger.pid})] == [ours.pid]
    finally:
        for p in (ours, stranger):
            p.kill()
            p.wait()
