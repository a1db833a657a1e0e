"""trenchcoat/procs.py: the pieces of process management that need no process."""

from __future__ import annotations

from trenchcoat import procs


def test_free_port_never_hands_out_the_same_port_twice():
    # The OS may pick a just-released port again; a service asking for its gRPC and metrics
    # ports one after the other once got the same port for both.
    ports = [procs.free_port() for _ in range(2000)]
    assert len(set(ports)) == len(ports)


def test_exit_codes_are_described_for_people():
    assert procs.describe_exit(-9) == "signal SIGKILL"
    assert procs.describe_exit(2) == "exit code 2"


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
        assert [pid for pid, _ in procs.group_members({ours.pid, stranger.pid})] == [ours.pid]
    finally:
        for p in (ours, stranger):
            p.kill()
            p.wait()


def test_a_port_another_live_process_handed_out_is_not_handed_out_here(monkeypatch, tmp_path):
    """Two suites (or a benchmark beside one) on one machine: the claim files make the
    second skip the first's ports, and a dead process's claim is taken over."""
    import os
    import subprocess
    import sys

    monkeypatch.setattr(procs, "PORT_CLAIMS", tmp_path)
    other = subprocess.Popen([sys.executable, "-c", "import sys, time; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        (tmp_path / "40001").write_text(f"{other.pid} {procs._start_time(other.pid)}")
        assert not procs._claim(40001)  # the other suite's
        (tmp_path / "40002").write_text(f"{os.getpid()} {procs._start_time(os.getpid())}")
        assert procs._claim(40002)  # our own, again
    finally:
        assert other.stdin is not None
        other.stdin.close()
        other.wait()
    assert procs._claim(40001)  # its holder is gone: taken over
    assert (tmp_path / "40001").read_text() == f"{os.getpid()} {procs._start_time(os.getpid())}"
    (tmp_path / "40003").write_text(f"{os.getpid()} 1")  # our pid, but another start time: a stranger before us
    assert procs._claim(40003)
    port = procs.free_port()
    assert (tmp_path / str(port)).read_text().split()[0] == str(os.getpid())
