"""``python -m trenchcoat.ops.cdn``: the pull CDN as its own process — nginx, and its metrics.

Writes nginx's config from the cluster config (``[cdn]``: port, TTLs, size, and the caches'
photo HTTP addresses, cache id i + 1 at position i) under ``<cluster.data_dir>/cdn``, waits
until every cache's host name resolves (nginx resolves them once, at start, and refuses to
start on a name it cannot), then runs nginx in the foreground as its child. nginx sends one
access-log line per request over syslog (UDP, loopback) to this process, which counts them
for Prometheus on ``cdn.metrics_port`` (HTTPS, as every process's /metrics): requests by
cache status (hit, miss, expired, ...) and status class, bytes sent, request seconds.
nginx open source exports no cache counters of its own; its log line is where the cache status is.

Over mutual TLS (the default) nginx reads the caches' photo ports as role ``cdn`` (this
process's identity), checking their certificates against the cluster CA; when the
identity's files change (a rotation) this process has nginx reload them (SIGHUP), with no
restart. The CDN's own port stays plain HTTP: photo URLs are public reads.

SIGTERM (or SIGINT) asks nginx to finish what it is serving and stop (SIGQUIT); this process
exits with nginx's exit code. ``trenchcoat up`` and the Kubernetes workload both run it.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import ssl
import sys
import threading
import time
from pathlib import Path
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from trenchcoat import httpsite, retry, server, tls
from trenchcoat.config import Config
from trenchcoat.errors import Unavailable
from trenchcoat.ops import dependencies, processes

log = logging.getLogger("trenchcoat.ops.cdn")

LOG_FORMAT = "$upstream_cache_status $status $body_bytes_sent $request_time $uri"
"""What nginx sends for each request (the syslog message after its tag)."""
TAG = "cdn"
TAG_BYTES = f"{TAG}: ".encode()

REQUESTS = Counter("trenchcoat_cdn_requests_total",
                   "Requests the CDN answered, by its cache status (hit, miss, expired, stale, updating, "
                   "revalidated, bypass; none: not a cacheable location) and status class.",
                   ["cache_status", "code"])
BYTES = Counter("trenchcoat_cdn_response_bytes_total", "Body bytes the CDN sent, by cache status.", ["cache_status"])
SECONDS = Histogram("trenchcoat_cdn_request_duration_seconds", "Seconds from a request's first byte to its "
                    "last byte sent, by cache status.", ["cache_status"],
                    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
DROPPED = Gauge("trenchcoat_cdn_log_lines_dropped", "Access-log lines the kernel dropped since start (the "
                "counting fell behind a burst): the request counts are short by this many.")
ROTATIONS = Counter("trenchcoat_cdn_certificate_reloads_total", "Times nginx was asked to take up a rotated "
                    "certificate (SIGHUP).")
UNPARSED = Counter("trenchcoat_cdn_log_lines_unparsed_total", "Access-log lines from nginx this process could not read.")


_children: dict[tuple[str, int], tuple[Any, Any, Any]] = {}
"""(nginx cache status, status class) -> its three metric children (labels() costs more
than the increment itself)."""


def record(message: bytes) -> bool:
    """Counts one syslog datagram from nginx; False if it is not an access-log line."""
    _, sep, line = message.partition(TAG_BYTES)
    fields = line.split(b" ", 4) if sep else []
    try:
        status, code, sent, seconds = fields[0], int(fields[1]) // 100, int(fields[2]), float(fields[3])
    except (IndexError, ValueError):
        UNPARSED.inc()
        return False
    if len(fields) > 4 and fields[4] == b"/cdn-health":
        return True  # probes are not traffic
    key = (status.decode("ascii", "replace"), code)
    children = _children.get(key)
    if children is None:
        cache_status = "none" if key[0] == "-" else key[0].lower()
        children = _children[key] = (REQUESTS.labels(cache_status, f"{code}xx"), BYTES.labels(cache_status),
                                     SECONDS.labels(cache_status))
    requests, sent_bytes, duration = children
    requests.inc()
    sent_bytes.inc(sent)
    duration.observe(seconds)
    return True


DRAIN_EVERY_S = 0.002
"""Under load, how long the reader lets lines queue before reading them all: one wake-up
per this many lines instead of one a line (a thread's wake-up costs more than counting)."""


def _receive(sock: socket.socket) -> None:
    """Counts every datagram the socket receives until it is closed (a thread of its own).
    Idle, it sleeps in a blocking receive; once lines flow, it reads what queued every
    DRAIN_EVERY_S until a pass finds none."""
    while True:
        try:
            record(sock.recv(4096))
            while True:
                time.sleep(DRAIN_EVERY_S)
                drained = 0
                while True:
                    try:
                        record(sock.recv(4096, socket.MSG_DONTWAIT))
                    except BlockingIOError:
                        break
                    drained += 1
                if not drained:
                    break
        except OSError:
            return


def udp_drops(port: int) -> float:
    """Datagrams the kernel dropped for the IPv4 UDP socket bound to ``port`` (/proc/net/udp)."""
    try:
        lines = Path("/proc/net/udp").read_text().splitlines()[1:]
    except OSError:
        return 0.0
    for line in lines:
        fields = line.split()
        if len(fields) > 12 and int(fields[1].rsplit(":", 1)[1], 16) == port:
            return float(fields[-1])
    return 0.0


async def resolvable(endpoints: tuple[str, ...]) -> None:
    """Returns once every endpoint's host resolves; Unavailable naming those that do not
    (in Kubernetes, a cache's Service name before its pods exist)."""
    missing = []
    for endpoint in endpoints:
        host = endpoint.rpartition(":")[0]
        try:
            await asyncio.get_running_loop().getaddrinfo(host, None)
        except OSError:
            missing.append(host)
    if missing:
        raise Unavailable(f"{', '.join(missing)} do not resolve (check cdn.cache_endpoints and the caches' Services)")


async def serve(config: Config) -> int:
    cdn, caches = config.cdn, config.cache_http_endpoints()
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)  # bursts wait here, not lost
    sock.bind(("127.0.0.1", 0))
    log_port = sock.getsockname()[1]
    DROPPED.set_function(lambda: udp_drops(log_port))
    threading.Thread(target=_receive, args=(sock,), name="access-log", daemon=True).start()
    root = await asyncio.to_thread(Path(config.cluster.data_dir).resolve)
    identity = server.process_identity()
    conf = dependencies.nginx_conf(root / "cdn", config.cluster.host, cdn.port, caches,
                                   ttl_s=cdn.ttl_s, not_found_ttl_s=cdn.not_found_ttl_s, max_bytes=cdn.max_bytes,
                                   identity=identity,
                                   access_log=f"syslog:server=127.0.0.1:{log_port},tag={TAG},nohostname",
                                   log_format=LOG_FORMAT)
    metrics = server.metrics_site(server.metrics_app(), config.cluster.host, cdn.metrics_port, "cdn", identity)
    await metrics.start()
    serving_metrics = asyncio.create_task(metrics.run())
    argv = dependencies.nginx_argv(conf)
    nginx = await asyncio.create_subprocess_exec(*argv)
    log.info("nginx (pid %d) on %s:%d in front of %s; metrics on %s:%d", nginx.pid, config.cluster.host, cdn.port,
             ", ".join(caches), config.cluster.host, cdn.metrics_port)

    def stop() -> None:
        if nginx.returncode is None:
            nginx.send_signal(signal.SIGQUIT)  # graceful: finish the requests in flight

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop)
    rotation = asyncio.create_task(reload_on_rotation(nginx, identity)) if identity is not None else None
    code = await nginx.wait()
    if rotation is not None:
        rotation.cancel()
    await asyncio.sleep(0.2)  # the last requests' log lines
    sock.close()
    await metrics.shutdown()
    await asyncio.gather(serving_metrics, return_exceptions=True)
    log.info("nginx exited with %s", processes.describe_exit(code))
    return 0 if code in (0, -signal.SIGQUIT) else 1


async def reload_on_rotation(nginx: asyncio.subprocess.Process, identity: tls.Identity) -> None:
    """Asks nginx to read its certificate again (SIGHUP: new workers take it up, the old
    ones finish what they serve) whenever the identity's files change, once they hold a
    certificate and its key (not a rotation half-written)."""
    stamp = identity.stamp()
    while nginx.returncode is None:
        await asyncio.sleep(httpsite.TLS_RECHECK_S)
        if identity.stamp() == stamp:
            continue
        try:
            tls.ClientTls(identity).http_context()  # the pair matches, the CA parses
        except (OSError, ssl.SSLError):
            continue
        stamp = identity.stamp()
        if nginx.returncode is None:
            nginx.send_signal(signal.SIGHUP)
            ROTATIONS.inc()
            log.info("%s changed: nginx reloads it", identity.cert)


def main(argv: list[str] | None = None) -> int:
    config = server.load_config("trenchcoat.ops.cdn", "The pull CDN (nginx) in front of the caches.", argv)

    async def run() -> int:
        try:  # the caches' names, waited for as any dependency is (cluster.start_wait_s)
            await retry.until(lambda: resolvable(config.cache_http_endpoints()), config.cluster.start_wait_s,
                              what="the caches' names")
        except Unavailable as exc:
            log.error("%s", exc)
            return 1
        return await serve(config)

    return asyncio.run(run())


if __name__ == "__main__":
    sys.exit(main())
