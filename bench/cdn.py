"""Benchmark of the CDN's metrics: ``python -m bench.cdn [--quick] [--json]``.

The CDN runs as ``python -m trenchcoat.ops.cdn``: nginx, whose access log goes over syslog
(UDP on loopback) to the Python process that counts it for Prometheus. What does that cost
against nginx with no access log, serving the same cached photos (every request a HIT)?
Both in front of the same upstream (an aiohttp server in this process standing in for a
cache, over mutual TLS as by default), loaded in turns by CONCURRENCY aiohttp clients in this process over URLS photos of
BODY_BYTES:

- rps_logged_vs_plain            requests a second with the metrics over without (the client
                                 shares the machine's two cores, so this is the whole box's view)
- cpu_per_request_logged_vs_plain  CPU seconds per request of the CDN's processes (nginx, and
                                 the counting process with it) with the metrics over without
- counting_cpu_us_per_request    CPU microseconds the counting process spends a request (the
                                 part of the difference that is Python; the rest is nginx's
                                 sending the log line)
- counted_vs_served              requests the metrics counted over requests the clients had
                                 answered (1.0: no log line lost; UDP may drop under load)
- plain_rps, logged_rps          the absolute rates (for context; they vary between days)
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from bench import common
from trenchcoat import tls
from trenchcoat.ops import dependencies, ports, proc_tree

URLS = 100
BODY_BYTES = 30_000
CONCURRENCY = 32


async def upstream(port: int, identity: tls.Identity) -> web.AppRunner:
    """A stand-in for a cache's photo port: HTTPS with client certificates, as by default."""
    body = os.urandom(BODY_BYTES)

    async def photo(_: web.Request) -> web.Response:
        return web.Response(body=body, content_type="image/jpeg")

    app = web.Application()
    app.router.add_get("/{tail:.*}", photo)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=tls.HttpServerTls(identity).context).start()
    return runner


def cpu_seconds(pid: int, *, descendants: bool = True) -> float:
    """User + system CPU of ``pid`` (and its descendants) so far."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for p in [pid, *(proc_tree.descendants(pid) if descendants else ())]:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks
    return total


async def load(port: int, seconds: float) -> int:
    """Requests answered 200 in ``seconds`` by CONCURRENCY clients cycling over the URLs."""
    done = 0
    deadline = time.monotonic() + seconds
    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
    async with aiohttp.ClientSession(connector=connector) as session:
        async def client(offset: int) -> None:
            nonlocal done
            i = offset
            while time.monotonic() < deadline:
                async with session.get(f"http://127.0.0.1:{port}/1/1/{i % URLS}") as r:
                    await r.read()
                    done += r.status == 200
                i += 1

        await asyncio.gather(*(client(k) for k in range(CONCURRENCY)))
    return done


async def counted(metrics_port: int) -> float:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=common.https_context())) as session, \
            session.get(f"https://127.0.0.1:{metrics_port}/metrics") as r:
        text = await r.text()
    return sum(s.value for f in text_string_to_metric_families(text) if f.name == "trenchcoat_cdn_requests"
               for s in f.samples if s.name == "trenchcoat_cdn_requests_total")


async def measure(seconds: float, rounds: int) -> dict[str, float]:
    tmp = Path(tempfile.mkdtemp(prefix="tc-bench-cdn-"))
    up_port, plain_port, logged_port, metrics_port = (ports.free_port() for _ in range(4))
    identities = Path(os.environ[common.TLS_DIR_KEY])  # the run's (common.identities)
    runner = await upstream(up_port, tls.Identity(identities, "cache"))
    plain = dependencies.nginx_process(tmp / "plain", tmp / "plain.log", "127.0.0.1", plain_port, [f"127.0.0.1:{up_port}"],
                                       ttl_s=600, not_found_ttl_s=1, max_bytes=256 << 20,
                                       identity=tls.Identity(identities, "cdn"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRENCHCOAT_")} | {
        common.TLS_DIR_KEY: str(identities),
        "TRENCHCOAT_CLUSTER__DATA_DIR": str(tmp / "logged"), "TRENCHCOAT_CDN__PORT": str(logged_port),
        "TRENCHCOAT_CDN__METRICS_PORT": str(metrics_port), "TRENCHCOAT_CDN__CACHE_ENDPOINTS": f"127.0.0.1:{up_port}",
        "TRENCHCOAT_CDN__TTL_S": "600", "TRENCHCOAT_CDN__MAX_BYTES": str(256 << 20), "TRENCHCOAT_CLUSTER__LOG_LEVEL": "WARNING"}
    logged = dependencies.cdn_process(tmp / "logged.log", "127.0.0.1", logged_port, metrics_port, env)
    served = {"plain": 0, "logged": 0}
    wall = {"plain": 0.0, "logged": 0.0}
    cpu = {"plain": 0.0, "logged": 0.0}
    counting = 0.0
    try:
        for process in (plain, logged):
            process.start()
        for process in (plain, logged):
            await asyncio.to_thread(process.wait_ready, 30)
        for port in (plain_port, logged_port):
            await load(port, 1.0)  # every URL cached (a miss each), the connections warm
        before_count = await counted(metrics_port)
        for _ in range(rounds):
            for name, process, port in (("plain", plain, plain_port), ("logged", logged, logged_port)):
                assert process.pid is not None
                cpu0, t0 = cpu_seconds(process.pid), time.monotonic()
                own0 = cpu_seconds(process.pid, descendants=False)
                served[name] += await load(port, seconds)
                wall[name] += time.monotonic() - t0
                cpu[name] += cpu_seconds(process.pid) - cpu0
                if name == "logged":
                    counting += cpu_seconds(process.pid, descendants=False) - own0
        await asyncio.sleep(1.0)  # the last log lines
        logged_count = await counted(metrics_port) - before_count
    finally:
        for process in (logged, plain):
            process.stop()
        await runner.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)
    rps = {k: served[k] / wall[k] for k in served}
    per_request = {k: cpu[k] / served[k] for k in served}
    return {
        "rps_logged_vs_plain": rps["logged"] / rps["plain"],
        "cpu_per_request_logged_vs_plain": per_request["logged"] / per_request["plain"],
        "counted_vs_served": logged_count / served["logged"],
        "plain_rps": rps["plain"],
        "logged_rps": rps["logged"],
        "plain_cpu_us_per_request": per_request["plain"] * 1e6,
        "logged_cpu_us_per_request": per_request["logged"] * 1e6,
        "counting_cpu_us_per_request": counting / served["logged"] * 1e6,
    }


async def main() -> int:
    args = common.arguments(__doc__)
    figures = await measure(seconds=3.0 if args.quick else 10.0, rounds=2 if args.quick else 4)
    common.report(figures, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
