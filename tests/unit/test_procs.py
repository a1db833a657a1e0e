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
