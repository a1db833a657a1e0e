"""Benchmark of the upload path: ``python -m bench.upload [--quick] [--json]``.

A real cluster on this machine (private etcd and PostgreSQL, one directory, three stores
on three racks, a cache, one router, each its own process) takes uploads over gRPC from
CONCURRENCY concurrent clients:

- uploads_per_s_1k / _100k, p50_ms_*, p99_ms_*   with 3 replicas (every upload is
  written to three stores and fdatasync'd on each before the answer)
- replicated_vs_single_1k / _100k   throughput with 3 replicas over the same cluster
  run with 1 replica (directory.replicas = 1), measured in the same run
- cluster_cpu_ms_per_upload_1k / _100k   CPU (utime + stime from /proc/<pid>/stat) of
  every trenchcoat process of the 3-replica cluster (router, stores, directory, cache)
  over the uploads done in the timed window; router_ and stores_ show its two big parts
- postgres_cpu_ms_per_upload_1k / _100k   the same for the PostgreSQL server (postmaster,
  backends and background processes; backends that exited through the postmaster's
  cutime), kept apart from the cluster's own
- bare_relay_cpu_ms_per_call_1k / _100k   the baseline: CPU per call of a bare grpc.aio
  relay that sends each request's bytes to three bare echo servers (``bench.relay_server``:
  the gRPC calls of a replicated upload and nothing else), measured in the same run;
  cluster_cpu_vs_bare_relay_* is the ratio
- reads_with_postgres_up_per_s / reads_with_postgres_down_per_s   first GETs of stored
  1 KiB photos' URLs from the cache (marked as from the CDN, so never admitted: each reads
  a store), 1,000 photos (4,000 in a full run) with PostgreSQL running, as many others with
  every PostgreSQL process stopped by SIGSTOP (a hung database); reads_postgres_down_vs_up
  is their ratio (reads never touch the database, so it should be about 1)
- cluster_idle_cpu_ms_per_s   the same processes with no uploads (the directory's probes
  at its default interval, heartbeats, checkpoints), measured after the uploads: every
  per-upload figure includes this background, divided by the uploads a second

``--profile DIR`` also records the router and one store with py-spy (the dev extra)
during the 1 KiB uploads: collapsed stacks with native frames in DIR/router.txt and
DIR/store1.txt, and prints the frames where each spent the most samples.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import grpc

from bench import common
from bench.relay_server import METHOD
from bench.store import cpu_seconds, start
from trenchcoat import rpc
from trenchcoat.clients.media import MediaClient
from trenchcoat.errors import TrenchcoatError
from trenchcoat.ops import dependencies, ports, proc_tree, processes

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
        "TRENCHCOAT_F4__MIGRATE": "false",  # no f4 cell here: full volumes stay hot
        "TRENCHCOAT_ROUTER__RENDITIONS": "false",  # no transformers here: uploads get no rendition jobs
        # One process per section on its own free ports (count > 1 would claim port + i).
        **{f"TRENCHCOAT_{s}__COUNT": "1" for s in ("DIRECTORY", "STORE", "CACHE", "ROUTER")},
    }


@dataclass
class BenchCluster:
    processes: list[processes.ManagedProcess]
    router: str
    gateway: str
    """http(s)://... of the cache's photo port (https unless the cluster is insecure)."""
    stores: list[str]
    router_metrics: str = ""
    """http(s)://.../metrics of the router."""

    def stop(self) -> None:
        for p in reversed(self.processes):
            p.stop()


def start_cluster(tmp: Path, env: dict[str, str]) -> BenchCluster:
    """One directory, three stores on three racks, one cache (serving photo URLs), one router."""
    name = env["TRENCHCOAT_CLUSTER__NAME"]
    started: list[processes.ManagedProcess] = []

    metrics: dict[int, int] = {}

    def launch(module: str, section: str, log: str, extra: dict[str, str] | None = None) -> int:
        port, mport = ports.free_port(), ports.free_port()
        started.append(start([sys.executable, "-m", module], tmp / f"{name}-{log}.log", port, {
            **env, f"TRENCHCOAT_{section}__PORT": str(port), f"TRENCHCOAT_{section}__METRICS_PORT": str(mport),
            **(extra or {})}))
        metrics[port] = mport
        return port

    try:
        dport = launch("directory", "DIRECTORY", "dir")
        env = {**env, "TRENCHCOAT_DIRECTORY__ENDPOINTS": f"127.0.0.1:{dport}"}
        stores = [launch("store", "STORE", f"store{m}", {"TRENCHCOAT_STORE__MACHINE_ID": str(m),
                                                          "TRENCHCOAT_STORE__RACK": rack,
                                                          "TRENCHCOAT_STORE__HTTP_PORT": "0"})
                  for m, rack in ((1, "a"), (2, "b"), (3, "c"))]
        http = ports.free_port()
        cport = launch("cache", "CACHE", "cache", {"TRENCHCOAT_CACHE__HTTP_PORT": str(http)})
        rport = launch("router", "ROUTER", "router", {"TRENCHCOAT_ROUTER__CACHE_ENDPOINTS": f"127.0.0.1:{cport}"})
    except BaseException:
        for p in reversed(started):
            p.stop()
        raise
    scheme = "http" if env.get("TRENCHCOAT_CLUSTER__INSECURE") == "true" else "https"
    return BenchCluster(started, f"127.0.0.1:{rport}", f"{scheme}://127.0.0.1:{http}",
                        [f"127.0.0.1:{p}" for p in stores], f"{scheme}://127.0.0.1:{metrics[rport]}/metrics")


def server_cpu_seconds(pid: int) -> float:
    """User + system CPU of a server and its live children, plus what its exited children
    used (its cutime + cstime): PostgreSQL's postmaster, backends and background processes,
    including backends that came and went. (They call setsid(), so their process group
    does not find them; their parent does.)"""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:  # exited meanwhile
            continue
        if stat.parent.name == str(pid):
            total += sum(int(f) for f in fields[11:15]) / tick
        elif int(fields[1]) == pid:
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


class CpuMeter:
    """CPU seconds used so far by each of the named processes (``servers``: with their
    children, as ``server_cpu_seconds`` counts them)."""

    def __init__(self, pids: dict[str, int], servers: dict[str, int] | None = None) -> None:
        self.pids = pids
        self.servers = servers or {}

    def snapshot(self) -> dict[str, float]:
        return ({name: cpu_seconds(pid) for name, pid in self.pids.items()}
                | {name: server_cpu_seconds(pid) for name, pid in self.servers.items()})


def cluster_meter(cluster: BenchCluster) -> CpuMeter:
    """Every process of the cluster by name (``r3-router``, ``r3-store1``, ...), and the
    private PostgreSQL as ``postgres``."""
    pids = {p.name: p.pid for p in cluster.processes if p.pid is not None}
    postgres = [p.pid for p in processes.started() if p.kind == "postgres" and p.running() and p.pid]
    return CpuMeter(pids, {"postgres": postgres[-1]} if postgres else {})


async def measure(address: str, size: int, seconds: float,
                  meter: CpuMeter | None = None) -> tuple[float, list[float], dict[str, float]]:
    """Uploads/s, per-upload latencies (s) from CONCURRENCY concurrent uploaders, and the
    CPU seconds each process of ``meter`` used during the timed uploads."""
    data = os.urandom(size)
    latencies: list[float] = []
    async with rpc.ChannelPool() as pool:
        media = MediaClient(pool, address, timeout_s=60.0)

        async def one(owner: int) -> None:
            began = time.perf_counter()
            await media.upload(data, owner_id=owner, content_type="image/jpeg")  # one UploadBytes message
            latencies.append(time.perf_counter() - began)

        for _ in range(100):  # the first volumes may still be growing
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

        before = meter.snapshot() if meter else {}
        began = time.perf_counter()
        await asyncio.gather(*(worker(i) for i in range(CONCURRENCY)))
        elapsed = time.perf_counter() - began
        after = meter.snapshot() if meter else {}
        return len(latencies) / elapsed, latencies, {k: after[k] - before[k] for k in after}


async def calls_for(call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes], data: bytes, seconds: float) -> int:
    """Calls made one after another for ``seconds``."""
    stop = time.perf_counter() + seconds
    done = 0
    while time.perf_counter() < stop:
        await call(data, timeout=30)
        done += 1
    return done


async def bare_relay_cpu(tmp: Path, sizes: list[tuple[int, str]], seconds: float) -> dict[str, float]:
    """CPU seconds per call of a bare relay and its three echoes (``bench.relay_server``),
    CONCURRENCY calls at a time, for each size."""
    started: list[processes.ManagedProcess] = []
    out: dict[str, float] = {}
    try:
        echoes = []
        for i in range(3):
            port = ports.free_port()
            started.append(start([sys.executable, "-m", "bench.relay_server", str(port)],
                                 tmp / f"echo{i}.log", port))
            echoes.append(f"127.0.0.1:{port}")
        port = ports.free_port()
        started.append(start([sys.executable, "-m", "bench.relay_server", str(port), *echoes],
                             tmp / "relay.log", port))
        meter = CpuMeter({p.name: p.pid for p in started if p.pid is not None})
        async with rpc.ChannelPool() as pool:
            call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = pool.channel(f"127.0.0.1:{port}").unary_unary(METHOD)
            for size, label in sizes:
                data = os.urandom(size)
                for _ in range(CONCURRENCY):
                    await call(data, timeout=30)
                before = meter.snapshot()
                done = sum(await asyncio.gather(*(calls_for(call, data, seconds) for _ in range(CONCURRENCY))))
                after = meter.snapshot()
                out[label] = sum(after[k] - before[k] for k in after) / done
    finally:
        for p in reversed(started):
            p.stop()
    return out


def start_profiles(processes: dict[str, int], out: Path, seconds: float) -> list[subprocess.Popen[bytes]]:
    """py-spy recording each process (name: pid) for ``seconds`` into ``out/<name>.txt``:
    collapsed stacks (one line per stack and its sample count), native frames included."""
    out.mkdir(parents=True, exist_ok=True)
    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if spy is None:
        raise SystemExit("--profile needs py-spy: pip install -e '.[dev]'")
    return [subprocess.Popen([spy, "record", "--pid", str(pid), "--duration", str(max(1, int(seconds))),
                              "--rate", "200", "--native", "--threads", "--format", "raw",
                              "-o", str(out / f"{name}.txt")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for name, pid in processes.items()]


def top_frames(path: Path, count: int = 20) -> list[tuple[float, str]]:
    """Where the event-loop thread was busy, from a collapsed-stack file: the frames in
    the most of its busy samples (share, frame). Idle samples (waiting in epoll_wait),
    other threads, unnamed native frames and the loop's own scaffolding (under nearly
    every sample) are left out."""
    samples: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        frames = stack.split(";")
        if "MainThread" not in frames[0] or frames[-1].startswith("epoll_wait"):
            continue
        total += int(n)
        for frame in {re.sub(r":\d+\)$", ")", f) for f in frames[1:]}:
            samples[frame] = samples.get(frame, 0) + int(n)
    ranked = sorted(((n / total, f) for f, n in samples.items() if n / total < 0.95 and not f.startswith("0x")),
                    reverse=True)
    return ranked[:count]


async def reads_with_postgres_frozen(cluster: BenchCluster, tmp: Path, count: int) -> dict[str, float]:
    """Photo URL reads/s from the cache with PostgreSQL running, then frozen: ``count``
    photos read once each in either state (first reads: each one a store read, none
    answered from the cache's memory or its leases' kept answers)."""
    data = os.urandom(1024)
    paths: list[str] = []
    async with rpc.ChannelPool() as pool:
        media = MediaClient(pool, cluster.router, timeout_s=60.0)

        async def uploader() -> None:
            while len(paths) < 2 * count:
                paths.append("/" + (await media.upload(data, owner_id=len(paths), content_type="image/jpeg")
                                    ).url.split("/", 3)[3])

        await asyncio.gather(*(uploader() for _ in range(CONCURRENCY)))

    async def rate(batch: list[str]) -> float:
        todo = iter(batch)
        connector = aiohttp.TCPConnector(limit=CONCURRENCY, ssl=common.https_context())
        async with aiohttp.ClientSession(cluster.gateway, connector=connector) as session:
            async def reader() -> None:
                for path in todo:
                    async with session.get(path, headers={"X-Trenchcoat-Via-CDN": "1"}) as r:
                        if r.status != 200 or await r.read() != data:
                            raise AssertionError(f"a stored photo answered {r.status}")

            began = time.perf_counter()
            await asyncio.gather(*(reader() for _ in range(CONCURRENCY)))
            return len(batch) / (time.perf_counter() - began)

    up = await rate(paths[:count])
    postmaster = int((dependencies.postgres_data_dir(tmp / "pg") / "postmaster.pid").read_text().split()[0])
    with proc_tree.frozen(postmaster):
        down = await rate(paths[count:2 * count])
    return {"reads_with_postgres_up_per_s": up, "reads_with_postgres_down_per_s": down,
            "reads_postgres_down_vs_up": down / up}


def pct(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100)[q - 1] * 1000 if len(values) >= 2 else float("nan")


async def main() -> int:
    args = common.arguments(__doc__, lambda p: p.add_argument(
        "--profile", type=Path, metavar="DIR", help="record the router and a store with py-spy into DIR"))
    seconds = 4.0 if args.quick else 15.0
    figures: dict[str, float] = {}
    sizes = [(1024, "1k"), (100 * 1024, "100k")]
    with common.private_dependencies("bench-upload-") as (tmp, etcd, dsn):
        rates: dict[tuple[int, str], float] = {}
        for replicas in (3, 1):
            env = cluster_env(tmp, f"r{replicas}", etcd, dsn, replicas)
            # The directory probes every store at its default interval here, not
            # cluster_env's 0.5 s: the CPU figures include that background work, and should
            # count what a deployment's costs.
            del env["TRENCHCOAT_DIRECTORY__PROBE_INTERVAL_S"]
            cluster = start_cluster(tmp, env)
            meter = cluster_meter(cluster) if replicas == 3 else None
            try:
                for size, label in sizes:
                    rate, latencies, cpu = await measure(cluster.router, size, seconds, meter)
                    rates[replicas, label] = rate
                    if replicas == 3:
                        figures[f"uploads_per_s_{label}"] = rate
                        figures[f"p50_ms_{label}"] = pct(latencies, 50)
                        figures[f"p99_ms_{label}"] = pct(latencies, 99)
                        ms = 1000 / len(latencies)
                        own = {k: v for k, v in cpu.items() if k != "postgres"}
                        figures[f"cluster_cpu_ms_per_upload_{label}"] = sum(own.values()) * ms
                        figures[f"router_cpu_ms_per_upload_{label}"] = sum(
                            v for k, v in own.items() if k.endswith("-router")) * ms
                        figures[f"stores_cpu_ms_per_upload_{label}"] = sum(
                            v for k, v in own.items() if "-store" in k) * ms
                        figures[f"postgres_cpu_ms_per_upload_{label}"] = cpu.get("postgres", 0.0) * ms
                    else:
                        figures[f"single_replica_uploads_per_s_{label}"] = rate
                if replicas == 3:
                    figures.update(await reads_with_postgres_frozen(cluster, tmp, 1000 if args.quick else 4000))
                if meter is not None:
                    # The background (probes, heartbeats, checkpoints): part of every figure
                    # above, the more so the fewer uploads a second.
                    before = meter.snapshot()
                    await asyncio.sleep(seconds / 2)
                    after = meter.snapshot()
                    figures["cluster_idle_cpu_ms_per_s"] = sum(
                        after[k] - before[k] for k in after if k != "postgres") * 1000 / (seconds / 2)
                if args.profile and replicas == 3:  # a round of its own: the profiler slows what it watches
                    spies = start_profiles({p.name.split("-", 1)[1]: p.pid for p in cluster.processes
                                            if p.pid and p.name.endswith(("-router", "-store1"))},
                                           args.profile, seconds)
                    await measure(cluster.router, 1024, seconds)
                    for spy in spies:
                        spy.wait()
            finally:
                cluster.stop()
        for label in ("1k", "100k"):
            figures[f"replicated_vs_single_{label}"] = rates[3, label] / rates[1, label]
        bare = await bare_relay_cpu(tmp, sizes, seconds / 2)
        for _, label in sizes:
            figures[f"bare_relay_cpu_ms_per_call_{label}"] = bare[label] * 1000
            figures[f"cluster_cpu_vs_bare_relay_{label}"] = (
                figures[f"cluster_cpu_ms_per_upload_{label}"] / figures[f"bare_relay_cpu_ms_per_call_{label}"])
    if args.profile:
        for name in ("router", "store1"):
            print(f"py-spy, {name} during 1 KiB uploads ({args.profile / name}.txt), share of busy loop samples:")
            for share, frame in top_frames(args.profile / f"{name}.txt"):
                print(f"  {share:6.1%}  {frame}")
    common.report(figures, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
