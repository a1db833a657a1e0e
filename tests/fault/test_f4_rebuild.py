"""Whole-block rebuilds on real processes: a block with a flipped byte is rebuilt in place
and reads stop needing reconstruction; the block of a killed node is rebuilt onto a spare
failure domain, the manifest records the move (a new version every node agrees on), and
reads go there."""

from __future__ import annotations

import pytest

from f4 import codec
from f4.cell import Cell, Node
from f4.layout import Geometry
from f4.rebuild import Journal, Rebuilder, target
from tests.cluster import fresh_database
from tests.fault.test_f4_cell import aiter_of, blobs
from tests.integration.test_f4_keystore import start_keystore
from tests.integration.test_f4_storage import start_node
from trenchcoat import rpc
from trenchcoat.clients.f4 import F4StorageClient, KeyStoreClient
from trenchcoat.ops import ports

pytestmark = pytest.mark.integration

TIMEOUT_S = 10.0


async def test_damaged_and_lost_blocks_are_rebuilt_and_reads_go_back_to_plain_range_reads(service, postgres,
                                                                                         tmp_path):
    procs_by_domain, nodes = {}, []
    for i in range(codec.N + 1):  # one spare failure domain
        proc = start_node(service, tmp_path / "data", node_id=i + 1, domains=(f"d{i:02}",))
        procs_by_domain[f"d{i:02}"] = proc
        nodes.append(Node(proc.address, (f"d{i:02}",)))
    keystore = start_keystore(service, await fresh_database(postgres.endpoint), ports.free_port(), ports.free_port())
    written = blobs(20)
    async with rpc.ChannelPool() as pool:
        storage = F4StorageClient(pool, timeout_s=TIMEOUT_S)
        cell = Cell(storage, KeyStoreClient(pool, keystore.address, timeout_s=TIMEOUT_S), nodes[:codec.N],
                    Geometry(cell_bytes=8 * 1024, rows=8))
        manifest = await cell.encode(9, aiter_of(written))
        cell.nodes = nodes  # the spare joins the cell
        rebuilder = Rebuilder(storage, 50e6, Journal(tmp_path / "journal"), step_bytes=16 * 1024)

        def in_block(index):
            out = []
            for b in written:
                blob = manifest.blobs[b.key, b.alternate_key]
                extents = cell.geometry.extents(manifest.stripes[blob.stripe].data_bytes, blob.offset,
                                                blob.sealed_length)
                if blob.stripe == 0 and any(e.block == index for e in extents):
                    out.append(b)
            return out

        # A flipped byte in block 2: reads rebuild around it until the block is rebuilt in place.
        [path] = (tmp_path / "data").rglob("v9/s0/b2.blk")
        raw = bytearray(path.read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        path.write_bytes(bytes(raw))
        victims = in_block(2)
        assert victims
        assert any([(await cell.read(manifest, b.key, b.alternate_key, b.cookie)).reconstructed for b in victims])
        onto = target(manifest.stripes[0], 2, cell.domains(), node_answers=True)
        done = await rebuilder.rebuild(manifest, 0, 2, onto, reason="damaged")
        assert done.finished and done.done_bytes == done.total_bytes
        for b in victims:
            got = await cell.read(manifest, b.key, b.alternate_key, b.cookie)
            assert got.data == b.data and not got.reconstructed

        # Block 5's node killed: rebuilt onto the spare domain, recorded in the manifest.
        domain5 = manifest.stripes[0].blocks[5][1]
        procs_by_domain[domain5].kill()
        cell.nodes = [n for n in nodes if n.domains != (domain5,)]
        onto = target(manifest.stripes[0], 5, cell.domains(), node_answers=False)
        assert onto == (procs_by_domain["d14"].address, "d14")
        await rebuilder.rebuild(manifest, 0, 5, onto, reason="lost")
        assert manifest.stripes[0].blocks[5] == (procs_by_domain["d14"].address, "d14")
        loaded = await cell.load_manifest(9)
        assert loaded.version == manifest.version == 2 and loaded.stripes[0].blocks[5][1] == "d14"
        for b in in_block(5):
            got = await cell.read(loaded, b.key, b.alternate_key, b.cookie)
            assert got.data == b.data and not got.reconstructed
        assert len({d for _, d in loaded.stripes[0].blocks}) == codec.N  # still one block per domain
