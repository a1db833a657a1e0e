"""Benchmarks of the Haystack store: ``python -m bench.store [--quick] [--json]``.

Every figure is a ratio against a baseline measured in the same run, or a count:

- index_bytes_per_needle   traced allocation of a NeedleIndex of N needles / N
                           (N = 10M; 1M with --quick), against a dict of tuples
- index_load_needles_per_s checkpoint load rate (the restart path), and the tail scan rate
- group_commit_vs_naive    durable writes/s at concurrency 16 with group commit, over one
                           fdatasync per write
- read_vs_echo_1k / _64k   Store ReadNeedle RPCs/s at concurrency 16 over a bare grpc.aio
                           echo server returning the same payload: the same encoded
                           ReadNeedleResponse bytes, read by the same client call
                           (StoreClient.read, so both pay the same client-side cost;
                           both real processes)
- http_vs_grpc_read_1k / _64k  needle reads/s over the store's HTTP port (StoreHttpClient,
                           what a cache reads a miss with) over ReadNeedle RPCs
                           (StoreClient.read) of the same needles from the same store,
                           interleaved; with the store's CPU per read of each
- batch_vs_single          needles/s by BatchRead (100 a call) over single ReadNeedle
                           (StoreClient.batch_read over StoreClient.read)
- preads_per_read          pread calls counted by the store / reads served
- syscalls_per_read_vs_files  syscalls of one needle read (strace) over one read of a
                           photo kept as its own file in a directory tree
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
import urllib.request
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from bench import common
from store import checkpoint
from store.digest import ContentDigest
from store.index import NeedleIndex
from store.volume import VolumeLimits
from store.volume_load import create_volume, open_volume
from trenchcoat import needle, rpc
from trenchcoat.clients.store import StoreClient
from trenchcoat.clients.store_http import StoreHttpClient
from trenchcoat.needle_ref import NeedleRef
from trenchcoat.ops import ports, processes
from trenchcoat.store_types import Blob

CONCURRENCY = 16


def index_bytes(n: int) -> tuple[float, float]:
    rng = np.random.default_rng(1)
    keys = rng.integers(0, 2**63, n, dtype=np.uint64).tolist()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    index = NeedleIndex()
    for i, k in enumerate(keys):
        index.put(k, 0, 64 + i * 8, 1024)
    index.arrays()
    ours = (tracemalloc.get_traced_memory()[0] - base) / n
    tracemalloc.stop()
    del index
    sample = min(n, 200_000)  # the dict baseline is sampled: 10M tuples would take GBs
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    d = {(k, 0): (64 + i * 8, 1024, 0) for i, k in enumerate(keys[:sample])}
    dict_bytes = (tracemalloc.get_traced_memory()[0] - base) / sample
    tracemalloc.stop()
    del d
    return ours, dict_bytes


def load_rates(n: int, tmp: Path) -> tuple[float, float]:
    keys = np.sort(np.random.default_rng(2).integers(0, 2**63, n, dtype=np.uint64))
    arrays = (keys, np.zeros(n, np.uint32), np.arange(n, dtype=np.uint32) + 8, np.full(n, 1024, np.uint32))
    path = tmp / "vol-1.idx"
    checkpoint.write(path, 1, 0, 64, arrays, ContentDigest())
    began = time.perf_counter()
    loaded = checkpoint.load(path, 1, 0)
    load_rate = n / (time.perf_counter() - began)
    assert loaded is not None and len(loaded.index) == n
    # Tail scan: a volume with no checkpoint, small needles.
    m = min(n, 200_000)
    with ThreadPoolExecutor(4) as pool:
        vol = create_volume(tmp, 2, VolumeLimits(8 * 1024**3, 1 << 20), pool)
        with open(vol.path, "ab") as f:
            f.writelines(needle.pack(needle.Needle(i, 0, i), b"x" * 100) for i in range(m))
        began = time.perf_counter()
        volume, _ = open_volume(vol.path, vol.limits, pool)
        scan_rate = m / (time.perf_counter() - began)
        assert volume.stats.needles == m
    return load_rate, scan_rate


async def group_commit(tmp: Path, writes: int) -> tuple[float, float]:
    with ThreadPoolExecutor(16) as pool:
        vol = create_volume(tmp, 3, VolumeLimits(8 * 1024**3, 1 << 20), pool)
        data = os.urandom(4096)
        # Built before timing: the naive baseline builds nothing either.
        refs = iter([NeedleRef(logical_volume=3, key=i, cookie=1) for i in range(writes)])

        async def worker() -> None:
            for _ in range(writes // CONCURRENCY):
                await vol.write(next(refs), data)

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        grouped = writes / (time.perf_counter() - began)
        # Baseline: every write waits for its own fdatasync (serialized, as it must be).
        fd = os.open(tmp / "naive.dat", os.O_RDWR | os.O_CREAT, 0o644)
        lock = asyncio.Lock()
        loop = asyncio.get_running_loop()
        end = [0]

        def write_and_sync(offset: int) -> None:
            os.pwrite(fd, data, offset)
            os.fdatasync(fd)

        async def naive_worker() -> None:
            for _ in range(writes // CONCURRENCY):
                async with lock:
                    offset, end[0] = end[0], end[0] + len(data)
                    await loop.run_in_executor(pool, write_and_sync, offset)

        began = time.perf_counter()
        await asyncio.gather(*(naive_worker() for _ in range(CONCURRENCY)))
        naive = writes / (time.perf_counter() - began)
        os.close(fd)
    return grouped, naive


async def rate(call, seconds: float) -> float:
    """Calls per second of ``call()`` from CONCURRENCY concurrent tasks."""
    done = 0
    stop = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < stop:
            await call()
            done += 1

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return done / (time.perf_counter() - began)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def interleaved(call, baseline, seconds: float, pids: tuple[int, int], rounds: int = 4):
    """Rates of ``call`` and ``baseline`` measured in alternating rounds, so a burst of
    load from a neighbour on this shared machine lands on both sides; and the server CPU
    seconds each spent per call (steadier than rates when the client shares the cores)."""
    rates = [0.0, 0.0]
    cpu = [0.0, 0.0]
    calls = [0, 0]
    for _ in range(rounds):
        for side, fn in enumerate((call, baseline)):
            before = cpu_seconds(pids[side])
            r = await rate(fn, seconds / rounds)
            cpu[side] += cpu_seconds(pids[side]) - before
            rates[side] += r / rounds
            calls[side] += int(r * seconds / rounds)
    return rates[0], rates[1], cpu[0] / calls[0], cpu[1] / calls[1]


def start(argv: list[str], log: Path, port: int, env: dict[str, str] | None = None) -> processes.ManagedProcess:
    p = processes.ManagedProcess(name=log.stem, argv=argv, log_path=log, env=env,
                             ready=lambda: _port_open(port))
    p.start()
    p.wait_ready(30)
    return p


def _port_open(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def reader(client: StoreClient, address: str, refs: list[NeedleRef]) -> Callable[[], Awaitable[Blob]]:
    """One ReadNeedle of a random needle of ``refs`` from the server at ``address``."""
    return lambda: client.read(address, random.choice(refs))


async def rpc_figures(tmp: Path, seconds: float) -> dict[str, float]:
    out: dict[str, float] = {}
    port, mport, hport = ports.free_port(), ports.free_port(), ports.free_port()
    env = {**os.environ, "TRENCHCOAT_CLUSTER__DATA_DIR": str(tmp / "cluster"),
           "TRENCHCOAT_STORE__PORT": str(port), "TRENCHCOAT_STORE__METRICS_PORT": str(mport),
           "TRENCHCOAT_STORE__HTTP_PORT": str(hport),
           "TRENCHCOAT_STORE__COUNT": "1",
           "TRENCHCOAT_CLUSTER__LOG_LEVEL": "WARNING"}
    store = start([sys.executable, "-m", "store"], tmp / "store.log", port, env)
    address = f"127.0.0.1:{port}"
    try:
        async with rpc.ChannelPool() as pool:
            client = StoreClient(pool, timeout_s=30.0)
            await client.create(address, 1)
            for size, label in ((1024, "1k"), (65536, "64k")):
                base = size * 1000
                refs = [NeedleRef(logical_volume=1, key=k, cookie=7) for k in range(base, base + 200)]
                for ref in refs:
                    await client.write(address, ref, os.urandom(size))
                eport = ports.free_port()
                echo = start([sys.executable, "-m", "bench.echo_server", str(eport), str(size)],
                             tmp / f"echo-{label}.log", eport)
                echo_address = f"127.0.0.1:{eport}"
                try:
                    # The echo answers at the store's ReadNeedle path, so both sides are read
                    # by the same client call: same stub, request encoding, typed-error edge
                    # and reply decoding. Only the servers differ.
                    assert store.pid is not None and echo.pid is not None
                    store_rate, echo_rate, store_cpu, echo_cpu = await interleaved(
                        reader(client, address, refs), reader(client, echo_address, refs), seconds,
                        (store.pid, echo.pid))
                finally:
                    echo.stop()
                out[f"store_reads_per_s_{label}"] = store_rate
                out[f"echo_per_s_{label}"] = echo_rate
                out[f"read_vs_echo_{label}"] = store_rate / echo_rate
                out[f"server_cpu_us_per_read_{label}"] = store_cpu * 1e6
                out[f"server_cpu_us_per_echo_{label}"] = echo_cpu * 1e6
                http = StoreHttpClient(timeout_s=30.0)
                try:
                    async def http_read(refs: list[NeedleRef] = refs, http: StoreHttpClient = http) -> Blob:
                        return await http.read(f"127.0.0.1:{hport}", random.choice(refs))

                    http_rate, grpc_rate, http_cpu, grpc_cpu = await interleaved(
                        http_read, reader(client, address, refs), seconds, (store.pid, store.pid))
                finally:
                    await http.close()
                out[f"http_read_per_s_{label}"] = http_rate
                out[f"http_vs_grpc_read_{label}"] = http_rate / grpc_rate
                out[f"server_cpu_us_per_http_read_{label}"] = http_cpu * 1e6
                out[f"server_cpu_us_per_grpc_read_{label}"] = grpc_cpu * 1e6
            refs = [NeedleRef(logical_volume=1, key=k, cookie=7) for k in range(1024000, 1024200)]

            async def batch() -> None:
                got = await client.batch_read(address, random.sample(refs, 100))
                failed = [r for r in got if not isinstance(r, Blob)]
                assert len(got) == 100 and not failed, failed[:3]

            single = await rate(reader(client, address, refs), seconds)
            batched = await rate(batch, seconds) * 100
            out["batch_vs_single"] = batched / single
        text = await asyncio.to_thread(lambda: urllib.request.urlopen(
            f"https://127.0.0.1:{mport}/metrics", context=common.https_context()).read().decode())
        preads = sum(float(v) for v in re.findall(r'^trenchcoat_store_preads_total\{[^}]*\} (\S+)', text, re.MULTILINE))
        misses = sum(float(v) for v in re.findall(r'^trenchcoat_store_nowait_misses_total\{[^}]*\} (\S+)', text, re.MULTILINE))
        found = re.search(r'^trenchcoat_store_operations_total\{op="read",outcome="ok"\} (\S+)', text, re.MULTILINE)
        assert found is not None, "the store exports its read count"
        reads = float(found[1])
        out["preads_per_read"] = preads / reads
        out["page_cache_misses_per_read"] = misses / reads
    finally:
        store.stop()
    return out


def syscalls_per_read(tmp: Path) -> tuple[float, float] | None:
    """strace-counted syscalls of one needle read vs one file-per-photo read."""
    if shutil.which("strace") is None:
        return None
    script = tmp / "one_read.py"
    script.write_text(
        "import os, sys\n"
        "mode, path, off, size = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])\n"
        "fd = os.open(path, os.O_RDONLY) if mode == 'haystack' else None\n"
        "os.write(2, b'MARK')\n"
        "for _ in range(100):\n"
        "    if mode == 'haystack':\n"
        "        os.pread(fd, size, off)\n"
        "    else:\n"
        "        with open(path, 'rb') as f: f.read()\n"
        "os.write(2, b'MARK')\n"
    )
    photo_dir = tmp / "photos" / "ab" / "cd"
    photo_dir.mkdir(parents=True)
    (photo_dir / "0123456789abcdef.jpg").write_bytes(os.urandom(4096))
    vol = tmp / "vol.dat"
    vol.write_bytes(os.urandom(8192))

    def count(mode: str, path: Path) -> float:
        trace = tmp / f"trace-{mode}"
        subprocess.run(["strace", "-f", "-o", str(trace), sys.executable, str(script), mode, str(path), "64", "4096"],
                       check=True, capture_output=True)
        lines = trace.read_text().splitlines()
        marks = [i for i, line in enumerate(lines) if "write(2, \"MARK\"" in line]
        return (marks[1] - marks[0] - 1) / 100

    return count("haystack", vol), count("files", photo_dir / "0123456789abcdef.jpg")


async def main() -> int:
    args = common.arguments(__doc__)
    n = 1_000_000 if args.quick else 10_000_000
    seconds = 2.0 if args.quick else 8.0
    figures: dict[str, float] = {"needles_indexed": n}
    tmp = Path(tempfile.mkdtemp(prefix="bench-store-"))
    try:
        figures["index_bytes_per_needle"], figures["dict_bytes_per_needle"] = index_bytes(n)
        figures["index_load_needles_per_s"], figures["tail_scan_needles_per_s"] = load_rates(n, tmp)
        grouped, naive = await group_commit(tmp, 1600 if args.quick else 8000)
        figures["durable_writes_per_s_group"], figures["durable_writes_per_s_naive"] = grouped, naive
        figures["group_commit_vs_naive"] = grouped / naive
        figures.update(await rpc_figures(tmp, seconds))
        counted = syscalls_per_read(tmp)
        if counted:
            figures["syscalls_per_read"], figures["syscalls_per_file_read"] = counted
            figures["syscalls_per_read_vs_files"] = counted[0] / counted[1]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    common.report(figures, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
