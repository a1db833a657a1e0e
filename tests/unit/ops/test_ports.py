"""trenchcoat/ops/ports.py: free ports, never handed out twice, claimed machine-wide."""

from __future__ import annotations

from trenchcoat.ops import ports, proc_tree


def test_free_port_never_hands_out_the_same_port_twice():
    # The OS may pick a just-released port again; a service asking for its gRPC and metrics
    # ports one after the other once got the same port for both.
    handed = [ports.free_port() for _ in range(2000)]
    assert len(set(handed)) == len(handed)


def test_a_port_another_live_process_handed_out_is_not_handed_out_here(monkeypatch, tmp_path):
    """Two suites (or a benchmark beside one) on one machine: the claim files make the
    second skip the first's ports, and a dead process's claim is taken over."""
    import os
    import subprocess
    import sys

    monkeypatch.setattr(ports, "PORT_CLAIMS", tmp_path)
    other = subprocess.Popen([sys.executable, "-c", "import sys, time; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        (tmp_path / "40001").write_text(f"{other.pid} {proc_tree.start_time(other.pid)}")
        assert not ports._claim(40001)  # the other suite's
        (tmp_path / "40002").write_text(f"{os.getpid()} {proc_tree.start_time(os.getpid())}")
        assert ports._claim(40002)  # our own, again
    finally:
        assert other.stdin is not None
        other.stdin.close()
        other.wait()
    assert ports._claim(40001)  # its holder is gone: taken over
    assert (tmp_path / "40001").read_text() == f"{os.getpid()} {proc_tree.start_time(os.getpid())}"
    (tmp_path / "40003").write_text(f"{os.getpid()} 1")  # our pid, but another start time: a stranger before us
    assert ports._claim(40003)
    port = ports.free_port()
    assert (tmp_path / str(port)).read_text().split()[0] == str(os.getpid())
