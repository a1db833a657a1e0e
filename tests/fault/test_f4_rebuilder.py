"""The rebuilder and backoff nodes as real processes. A byte flipped in a block is found by
the storage node's scrub and, past the grace period, the block is rebuilt in place; a
killed node's block is rebuilt onto the spare failure domain and the manifest records it;
a rebuilder killed -9 mid-block carries on from its journal at the next start; a backoff
node rebuilds what reads could not read, and the front does it itself when no backoff
node answers."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import REGISTRY

from f4 import codec
from f4.cell import Cell, Node
from f4.layout import Geometry
from tests import harness
from tests.cluster import eventually, fresh_database
from tests.fault.test_f4_cell import aiter_of, blobs
from tests.integration.test_f4_keystore import start_keystore
from tests.integration.test_f4_storage import start_node
from trenchcoat import rpc
from trenchcoat.clients.f4 import (
    BackoffClient,
    F4StorageClient,
    KeyStoreClient,
    RebuilderClient,
)
from trenchcoat.f4_types import BlockId
from trenchcoat.ops import ports

pytestmark = pytest.mark.integration

TIMEOUT_S = 10.0
GEOMETRY = Geometry(cell_bytes=16 * 1024, rows=4)  # 64 KiB blocks


def start_rebuilder(service, data_dir, endpoints, *, port=None, **extra):
    port = port or ports.free_port()
    metrics_port = ports.free_port()
    return service("f4-rebuilder", harness.python_module("f4.rebuilder"), port=port, metrics_port=metrics_port,
                   env={
                       "TRENCHCOAT_CLUSTER__DATA_DIR": str(data_dir),
                       "TRENCHCOAT_F4__STORAGE_ENDPOINTS": ",".join(endpoints),
                       "TRENCHCOAT_F4_REBUILDER__PORT": str(port),
                       "TRENCHCOAT_F4_REBUILDER__METRICS_PORT": str(metrics_port),
                       "TRENCHCOAT_F4_REBUILDER__DRAIN_NOTICE_S": "0",
                       **extra,
                   })


def start_backoff(service):
    port, metrics_port = ports.free_port(), ports.free_port()
    return service("f4-backoff", harness.python_module("f4.backoff"), port=port, metrics_port=metrics_port, env={
        "TRENCHCOAT_F4_BACKOFF__PORT": str(port),
        "TRENCHCOAT_F4_BACKOFF__METRICS_PORT": str(metrics_port),
        "TRENCHCOAT_F4_BACKOFF__DRAIN_NOTICE_S": "0",
    })


async def cell_of(service, postgres, tmp_path, pool, **node_env):
    """Five storage nodes: two standing for six failure domains each, then d12, d13 and a
    spare d14 with a node each; the key store; a Cell over them (stripes use d00-d13)."""
    layout = [tuple(f"d{i:02}" for i in range(6)), tuple(f"d{i:02}" for i in range(6, 12)), ("d12",), ("d13",),
              ("d14",)]
    procs_, nodes = [], []
    for n, domains in enumerate(layout):
        proc = start_node(service, tmp_path / "data", node_id=n + 1, domains=domains, **node_env)
        procs_.append(proc)
        nodes.append(Node(proc.address, domains))
    keystore = start_keystore(service, await fresh_database(postgres.endpoint), ports.free_port(), ports.free_port())
    cell = Cell(F4StorageClient(pool, timeout_s=TIMEOUT_S), KeyStoreClient(pool, keystore.address,
                                                                         timeout_s=TIMEOUT_S), nodes, GEOMETRY)
    return cell, procs_


def extents_in(cell, manifest, written, stripe, index):
    out = []
    for b in written:
        blob = manifest.blobs[b.key, b.alternate_key]
        if blob.stripe == stripe and any(e.block == index for e in cell.geometry.extents(
                manifest.stripes[stripe].data_bytes, blob.offset, blob.sealed_length)):
            out.append(b)
    return out


async def finished(rebuilder, block):
    status = await rebuilder.status()
    return next((r for r in status.rebuilds if r.block == block and r.finished), None)


async def test_damage_found_by_the_scrub_and_a_lost_node_are_rebuilt_after_the_grace_period(service, postgres,
                                                                                           tmp_path):
    async with rpc.ChannelPool() as pool:
        cell, nodes = await cell_of(service, postgres, tmp_path, pool, TRENCHCOAT_F4_STORAGE__SCRUB_INTERVAL_S="0.5")
        written = blobs(40)
        manifest = await cell.encode(21, aiter_of(written))
        assert {d for _, d in manifest.stripes[0].blocks} == {f"d{i:02}" for i in range(codec.N)}
        proc = start_rebuilder(service, tmp_path / "rebuilder", [n.address for n in cell.nodes],
                               TRENCHCOAT_F4_REBUILDER__GRACE_S="1", TRENCHCOAT_F4_REBUILDER__SCAN_INTERVAL_S="0.5")
        rebuilder = RebuilderClient(pool, proc.address, timeout_s=TIMEOUT_S)
        await eventually(lambda: _all_healthy(rebuilder, len(manifest.stripes) * codec.N), what="a first scan")

        # A flipped byte in data block 2: the node's scrub finds it, the rebuilder rebuilds it in place.
        [path] = (tmp_path / "data").rglob("v21/s0/b2.blk")
        raw = bytearray(path.read_bytes())
        raw[len(raw) // 3] ^= 0x5A
        path.write_bytes(bytes(raw))
        damaged = BlockId(21, 0, 2)
        done = await eventually(lambda: finished(rebuilder, damaged), timeout=60, what="block 2 rebuilt in place")
        assert done.reason == "damaged" and done.domain == "d02" and done.done_bytes == done.total_bytes
        for b in extents_in(cell, manifest, written, 0, 2):
            got = await cell.read(manifest, b.key, b.alternate_key, b.cookie)
            assert got.data == b.data and not got.reconstructed

        # d13's node killed: its block is rebuilt onto the spare domain d14 and the manifest says so.
        nodes[3].kill()
        lost = BlockId(21, 0, 13)
        done = await eventually(lambda: finished(rebuilder, lost), timeout=60, what="block 13 rebuilt elsewhere")
        assert (done.reason, done.node, done.domain) == ("lost", nodes[4].address, "d14")
        cell.nodes = [n for n in cell.nodes if n.address != nodes[3].address]
        loaded = await cell.load_manifest(21)
        assert loaded.version >= 2 and loaded.stripes[0].blocks[13] == (nodes[4].address, "d14")
        assert len({d for _, d in loaded.stripes[0].blocks}) == codec.N
        # The rebuilt block is the block that was lost, byte for byte (the dead node's file is still on disk).
        [old] = (tmp_path / "data" / "f4-storage-4").rglob("v21/s0/b13.blk")
        old_bytes = old.read_bytes()
        assert await cell._storage.read_range(nodes[4].address, lost, 0, done.total_bytes) == old_bytes
        for b in written:
            assert (await cell.read(loaded, b.key, b.alternate_key, b.cookie)).data == b.data
        await eventually(lambda: _all_healthy(rebuilder, len(manifest.stripes) * codec.N), what="all healthy again")

        # d13's node comes back holding the old copy: the rebuilder deletes it (the block lives on d14 now).
        start_node(service, tmp_path / "data", int(nodes[3].address.rsplit(":", 1)[1]), node_id=4, domains=("d13",))

        async def old_copy_gone():
            return not old.exists() and not old.with_suffix(".crc").exists()

        await eventually(old_copy_gone, timeout=60, what="the copy left behind deleted")
        assert (await cell._storage.read_range(nodes[4].address, lost, 0, 16)) == old_bytes[:16]


async def _all_healthy(rebuilder, count):
    status = await rebuilder.status()
    return status.healthy_blocks == count and not status.damaged_blocks and not status.lost_blocks


async def test_a_rebuilder_killed_mid_block_carries_on_from_its_journal(service, postgres, tmp_path):
    async with rpc.ChannelPool() as pool:
        cell, _ = await cell_of(service, postgres, tmp_path, pool)
        written = blobs(20)
        manifest = await cell.encode(22, aiter_of(written))
        size = cell.geometry.block_size(manifest.stripes[0].data_bytes)
        step = 1024
        assert size >= 8 * step
        port = ports.free_port()
        endpoints = [n.address for n in cell.nodes]
        slow = {"TRENCHCOAT_F4__REBUILD_BYTES_PER_S": str(10 * step // 2),  # two seconds a step
                "TRENCHCOAT_F4_REBUILDER__STEP_BYTES": str(step)}
        proc = start_rebuilder(service, tmp_path / "rebuilder", endpoints, port=port, **slow)
        rebuilder = RebuilderClient(pool, proc.address, timeout_s=TIMEOUT_S)
        block = BlockId(22, 0, 4)
        await rebuilder.rebuild_block(block)

        async def midway():
            status = await rebuilder.status()
            return next((r for r in status.rebuilds if r.block == block and 2 * step <= r.done_bytes < size), None)

        await eventually(midway, timeout=60, what="the rebuild two steps in")
        proc.kill()
        assert list((tmp_path / "rebuilder" / "f4-rebuilder").glob("v22-s0-b4.*"))

        proc = start_rebuilder(service, tmp_path / "rebuilder", endpoints, port=port,
                               TRENCHCOAT_F4_REBUILDER__STEP_BYTES=str(step))
        done = await eventually(lambda: finished(rebuilder, block), timeout=60, what="the rebuild carried on")
        assert done.resumed_bytes >= 2 * step and done.done_bytes == size and done.reason == "requested"
        assert not list((tmp_path / "rebuilder" / "f4-rebuilder").glob("v22-s0-b4.*"))
        for b in extents_in(cell, manifest, written, 0, 4):
            got = await cell.read(manifest, b.key, b.alternate_key, b.cookie)
            assert got.data == b.data and not got.reconstructed


def _local_reconstructions() -> float:
    return REGISTRY.get_sample_value("trenchcoat_f4_reconstructions_total", {"outcome": "rebuilt"}) or 0.0


async def test_a_backoff_node_rebuilds_failed_reads_and_the_front_does_when_none_answers(service, postgres,
                                                                                         tmp_path):
    async with rpc.ChannelPool() as pool:
        cell, nodes = await cell_of(service, postgres, tmp_path, pool)
        written = blobs(30)
        manifest = await cell.encode(23, aiter_of(written))
        backoff = start_backoff(service)
        cell.backoff = BackoffClient(pool, [backoff.address], timeout_s=TIMEOUT_S)
        nodes[2].kill()  # d12: parity
        nodes[3].kill()  # d13: parity
        victims = extents_in(cell, manifest, written, 0, 0) + extents_in(cell, manifest, written, 0, 5)
        # Two data blocks unreadable too (their files gone), four in all.
        for index in (0, 5):
            [path] = (tmp_path / "data").rglob(f"v23/s0/b{index}.blk")
            path.unlink()
        before = _local_reconstructions()
        for b in victims:
            got = await cell.read(manifest, b.key, b.alternate_key, b.cookie)
            assert got.data == b.data and got.reconstructed
        assert _local_reconstructions() == before  # the backoff node did them all
        backoff.kill()
        for b in victims:
            assert (await cell.read(manifest, b.key, b.alternate_key, b.cookie)).data == b.data
        assert _local_reconstructions() > before


async def test_a_slow_node_still_serves_when_its_stripe_cannot_be_rebuilt_without_it(service, postgres, tmp_path):
    async with rpc.ChannelPool() as pool:
        cell, nodes = await cell_of(service, postgres, tmp_path, pool)
        written = blobs(30)
        manifest = await cell.encode(24, aiter_of(written))
        cell.hedge_s = 0.2
        nodes[2].kill()  # d12
        nodes[3].kill()  # d13
        for index in (0, 1):  # and two data blocks' files gone: four of fourteen lost
            [path] = (tmp_path / "data").rglob(f"v24/s0/b{index}.blk")
            path.unlink()
        victims = extents_in(cell, manifest, written, 0, 7)
        assert victims
        # d06-d11's node stalls (SIGSTOP): the read of block 7 is slow, and the stripe cannot be
        # rebuilt without it (nine others answer). The hedged read waits for it instead of failing.
        with nodes[1].frozen():
            reads = [asyncio.ensure_future(cell.read(manifest, b.key, b.alternate_key, b.cookie)) for b in victims]
            await asyncio.sleep(1.0)  # the stall, well past hedge_s
        for b, got in zip(victims, await asyncio.gather(*reads), strict=True):
            assert got.data == b.data
