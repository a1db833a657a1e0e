"""Benchmark of the upload path: ``python -m bench.upload [--quick] [--json]``.

A real cluster on this machine (private etcd and PostgreSQL, one directory, three stores
on three racks, a cache, one router, each its own process) takes uploads over gRPC from
CONCURRENCY concurrent clients:

- uploads_per_s_1k / _100k, p50_ms_*, p99_ms_*   with 3 replicas (every upload is
  written to three stores and fdatasync'd on each before the answer)
- replicated_vs_single_1k / _100k   throughput with 3 replicas over the same cluster
  run with 1 replica (directory.replicas = 1), measured in the same run
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench import common
from bench.store import start
from trenchcoat import procs, rpc
from trenchcoat.errors import TrenchcoatError
from trenchcoat.media_client import MediaClient

CONCURRENCY = 16


def cluster_env(tmp: Path, name: str, etcd: str, dsn: str, replicas: int) -> dict[str, str]:
    return {
        **os.environ,
        "TRENCHCOAT_CLUSTER__NAME": name,
        "TRENCHCOAT_CLUSTER__DATA_DIR": str(tmp / name),
        "TRENCHCOAT_CLUSTER__LOG_LEVEL": "WARNING",
        "TRENCHCOAT_ETCD__ENDPOINTS": etcd,
        "TRENCHCOAT_POSTGRES__DSN": dsn,
        "TRENCHCOAT_DIRECTORY__REPLICAS": str(replicas),
        "TRENCHCOAT_DIRECTORY__MIN_WRITABLE_VOLUMES": "4",
        "TRENCHCOAT_DIRECTORY__PROBE_INTERVAL_S": "0.5",
        # One process per section on its own free ports (count > 1 would claim port + i).
        **{f"TRENCHCOAT_{s}__COUNT": "1" for s in ("DIRECTORY", "STORE", "CACHE", "ROUTER")},
    }


@dataclass
class BenchCluster:
    processes: list[procs.ManagedProcess]
    router: str
    gateway: str
    stores: list[str]
    router_metrics: str = ""
    """http://.../metrics of the router."""

    def stop(self) -> None:
        for p in reversed(self.processes):
            p.stop()


def start_cluster(tmp: Path, env: dict[str, str]) -> BenchCluster:
    """One directory, three stores on three racks, one cache (serving photo URLs), one router."""
    name = env["TRENCHCOAT_CLUSTER__NAME"]
    started: list[procs.ManagedProcess] = []

    metrics: dict[int, int] = {}

    def launch(module: str, section: str, log: str, extra: dict[str, str] | None = None) -> int:
        port, mport = procs.free_port(), procs.free_port()
        started.append(start([sys.executable, "-m", module], tmp / f"{name}-{log}.log", port, {
            **env, f"TRENCHCOAT_{section}__PORT": str(port), f"TRENCHCOAT_{section}__METRICS_PORT": str(mport),
            **(extra or {})}))
        metrics[port] = mport
        return port

    try:
        dport = launch("directory", "DIRECTORY", "dir")
        env = {**env, "TRENCHCOAT_ROUTER__DIRECTORY_ENDPOINTS": f"127.0.0.1:{dport}"}
        stores = [launch("store", "STORE", f"store{m}", {"TRENCHCOAT_STORE__MACHINE_ID": str(m),
                                                          "TRENCHCOAT_STORE__RACK": rack})
                  for m, rack in ((1, "a"), (2, "b"), (3, "c"))]
        http = procs.free_port()
        cport = launch("cache", "CACHE", "cache", {"TRENCHCOAT_CACHE__HTTP_PORT": str(http)})
        rport = launch("router", "ROUTER", "router", {"TRENCHCOAT_ROUTER__CACHE_ENDPOINTS": f"127.0.0.1:{cport}"})
    except BaseException:
        for p in reversed(started):
            p.stop()
        raise
    return BenchCluster(started, f"127.0.0.1:{rport}", f"http://127.0.0.1:{http}",
                        [f"127.0.0.1:{p}" for p in stores], f"http://127.0.0.1:{metrics[rport]}/metrics")


async def measure(address: str, size: int, seconds: float) -> tuple[float, list[float]]:
    """Uploads/s and per-upload latencies (s) from CONCURRENCY concurrent uploaders."""
    data = os.urandom(size)
    latencies: list[float] = []
    async with rpc.ChannelPool() as pool:
        media = MediaClient(pool, address, timeout_s=60.0)

        async def one(owner: int) -> None:
            began = time.perf_counter()
            await media.upload(data, owner_id=owner, content_type="image/jpeg")  # one header, one chunk
            latencies.append(time.perf_counter() - began)

        for attempt in range(100):  # the first volumes may still be growing
            try:
                await one(0)
                break
            except TrenchcoatError:
                await asyncio.sleep(0.2)
        latencies.clear()
        stop = time.perf_counter() + seconds

        async def worker(owner: int) -> None:
            while time.perf_counter() < stop:
                await one(owner)

        began = time.perf_counter()
        await asyncio.gather(*(worker(i) for i in range(CONCURRENCY)))
        return len(latencies) / (time.perf_counter() - began), latencies


def pct(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100)[q - 1] * 1000 if len(values) >= 2 else float("nan")


async def main() -> int:
    args = common.arguments(__doc__)
    seconds = 4.0 if args.quick else 15.0
    figures: dict[str, float] = {}
    with common.private_dependencies("bench-upload-") as (tmp, etcd, dsn):
        rates: dict[tuple[int, str], float] = {}
        for replicas in (3, 1):
            cluster = start_cluster(tmp, cluster_env(tmp, f"r{replicas}", etcd, dsn, replicas))
            try:
                for size, label in ((1024, "1k"), (100 * 1024, "100k")):
                    rate, latencies = await measure(cluster.router, size, seconds)
                    rates[replicas, label] = rate
                    if replicas == 3:
                        figures[f"uploads_per_s_{label}"] = rate
                        figures[f"p50_ms_{label}"] = pct(latencies, 50)
                        figures[f"p99_ms_{label}"] = pct(latencies, 99)
                    else:
                        figures[f"single_replica_uploads_per_s_{label}"] = rate
            finally:
                cluster.stop()
        for label in ("1k", "100k"):
            figures[f"replicated_vs_single_{label}"] = rates[3, label] / rates[1, label]
    common.report(figures, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
