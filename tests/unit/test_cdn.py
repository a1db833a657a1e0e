"""trenchcoat/ops/cdn.py: nginx's access-log lines (syslog datagrams) become the CDN's metrics."""

from __future__ import annotations

from prometheus_client import REGISTRY

from trenchcoat.ops import cdn


def sample(name: str, labels: dict[str, str] | None = None) -> float:
    """A metric's value now (0 before it is first counted)."""
    return REGISTRY.get_sample_value(name, labels) or 0


def count(cache_status: str, code: str) -> float:
    return sample("trenchcoat_cdn_requests_total", {"cache_status": cache_status, "code": code})


def test_access_log_lines_are_counted_by_cache_status_and_class():
    before = {key: count(*key) for key in (("hit", "2xx"), ("miss", "4xx"), ("none", "2xx"))}
    sent = sample("trenchcoat_cdn_response_bytes_total", {"cache_status": "hit"})
    unparsed = sample("trenchcoat_cdn_log_lines_unparsed_total")
    assert cdn.record(b"<190>Dec  4 16:00:00 cdn: HIT 200 30000 0.001 /1/2/abc")
    assert cdn.record(b"<190>Dec  4 16:00:00 cdn: HIT 206 10 0.000 /1/2/abc")
    assert cdn.record(b"<190>Dec  4 16:00:01 cdn: MISS 404 0 0.010 /1/9/zz")
    assert cdn.record(b"<190>Dec  4 16:00:01 cdn: - 200 3 0.000 /cdn-health")  # a probe: not traffic
    assert cdn.record(b"<190>Dec  4 16:00:01 cdn: - 200 3 0.000 /elsewhere")
    assert not cdn.record(b"<190>Dec  4 16:00:02 cdn: garbage")
    assert not cdn.record(b"not syslog at all")
    assert count("hit", "2xx") - before[("hit", "2xx")] == 2
    assert count("miss", "4xx") - before[("miss", "4xx")] == 1
    assert count("none", "2xx") - before[("none", "2xx")] == 1
    assert sample("trenchcoat_cdn_response_bytes_total", {"cache_status": "hit"}) - sent == 30010
    assert sample("trenchcoat_cdn_log_lines_unparsed_total") - unparsed == 2


def test_lines_the_kernel_dropped_are_reported():
    """When the counting falls behind a burst, the kernel drops datagrams: the gauge says how
    many the counts are short by."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as receiver, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # room for a few lines only
        receiver.bind(("127.0.0.1", 0))
        port = receiver.getsockname()[1]
        assert cdn.udp_drops(port) == 0
        for _ in range(500):
            sender.sendto(b"<190>cdn: HIT 200 10 0.001 /1/2/x", ("127.0.0.1", port))
        received = 0
        receiver.setblocking(False)
        while True:
            try:
                receiver.recv(4096)
            except BlockingIOError:
                break
            received += 1
        assert received + cdn.udp_drops(port) == 500 and cdn.udp_drops(port) > 0
