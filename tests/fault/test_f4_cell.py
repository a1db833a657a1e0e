"""A whole f4 cell on real processes: 14 storage nodes (one failure domain each), the key
store on PostgreSQL, and a Cell encoding a volume's blobs and reading them back. Four
nodes killed with -9: every blob byte-exact. A fifth: UNAVAILABLE naming the stripe,
never wrong bytes. A flipped byte in a block: rebuilt. No plaintext in any block file,
before or after a delete; a deleted blob is NOT_FOUND at once."""

from __future__ import annotations

import random

import pytest

from f4 import codec
from f4.cell import Cell, Node, PlainBlob
from f4.layout import Geometry
from tests.cluster import fresh_database
from tests.integration.test_f4_keystore import start_keystore
from tests.integration.test_f4_storage import start_node
from trenchcoat import rpc
from trenchcoat.clients.f4 import F4StorageClient, KeyStoreClient
from trenchcoat.errors import NeedleNotFound, StripeUnavailable
from trenchcoat.ops import ports

pytestmark = pytest.mark.integration

TIMEOUT_S = 10.0
MARKER = b"PLAINTEXT-MARKER-"


def blobs(n: int) -> list[PlainBlob]:
    rnd = random.Random(5)
    out = []
    for i in range(n):
        body = MARKER + rnd.randbytes(rnd.randrange(100, 12_000))
        out.append(PlainBlob(key=1000 + i // 2, alternate_key=i % 2, cookie=rnd.getrandbits(32), media_type=1,
                             data=body))
    return out


async def aiter_of(items):
    for item in items:
        yield item


def block_files(root):
    return list(root.rglob("*.blk"))


async def test_a_cell_serves_every_blob_through_four_lost_nodes_and_never_wrong_bytes(service, postgres, tmp_path):
    nodes = []
    for i in range(codec.N):
        proc = start_node(service, tmp_path / "data", node_id=i + 1, domains=(f"d{i}",))
        nodes.append((proc, Node(proc.address, (f"d{i}",))))
    dsn = await fresh_database(postgres.endpoint)
    keystore = start_keystore(service, dsn, ports.free_port(), ports.free_port())
    written = blobs(60)
    async with rpc.ChannelPool() as pool:
        cell = Cell(F4StorageClient(pool, timeout_s=TIMEOUT_S), KeyStoreClient(pool, keystore.address,
                                                                             timeout_s=TIMEOUT_S),
                    [n for _, n in nodes], Geometry(cell_bytes=4096, rows=4))
        manifest = await cell.encode(77, aiter_of(written))
        assert len(manifest.stripes) > 1 and len(manifest.blobs) == len(written)
        for b in written:
            got = await cell.read(manifest, b.key, b.alternate_key, b.cookie)
            assert got.data == b.data and not got.reconstructed
        assert (await cell.load_manifest(77)).blobs == manifest.blobs
        files = block_files(tmp_path / "data")
        assert len(files) == codec.N * (len(manifest.stripes) + 1)  # + the manifest on every node
        assert not any(MARKER in p.read_bytes() for p in files)
        disk = sum(p.stat().st_size for p in files if "/s4294967295/" not in str(p))
        assert disk / manifest.logical_bytes < 1.45  # 1.4x plus the per-blob seal and a short last row

        with pytest.raises(NeedleNotFound):
            await cell.read(manifest, written[0].key, written[0].alternate_key, written[0].cookie ^ 1)

        # Four nodes down (two data blocks, two parity): every blob still byte-exact.
        for index in (0, 3, 10, 13):
            nodes[index][0].kill()
        rebuilt = 0
        for b in written:
            got = await cell.read(manifest, b.key, b.alternate_key, b.cookie)
            assert got.data == b.data
            rebuilt += got.reconstructed
        assert rebuilt > 0

        # A fifth: what lies in a lost data block is UNAVAILABLE naming its stripe; the rest still reads.
        nodes[5][0].kill()
        unavailable = 0
        for b in written:
            try:
                got = await cell.read(manifest, b.key, b.alternate_key, b.cookie)
            except StripeUnavailable as exc:
                assert "of warm volume 77" in str(exc) and "stripe" in str(exc)
                unavailable += 1
            else:
                assert got.data == b.data
        assert 0 < unavailable < len(written)

        # Delete = discard the key: NOT_FOUND at once; the bytes on disk never held the plaintext.
        victim = written[-1]
        await cell._keys.discard_key(victim.key, None)
        with pytest.raises(NeedleNotFound, match="deleted"):
            await cell.read(manifest, victim.key, victim.alternate_key, victim.cookie)
        assert not any(MARKER in p.read_bytes() for p in block_files(tmp_path / "data"))


async def test_a_flipped_byte_in_a_data_block_is_rebuilt_not_served(service, postgres, tmp_path):
    nodes = []
    for i in range(codec.N):
        proc = start_node(service, tmp_path / "data", node_id=i + 1, domains=(f"d{i}",))
        nodes.append(Node(proc.address, (f"d{i}",)))
    keystore = start_keystore(service, await fresh_database(postgres.endpoint), ports.free_port(), ports.free_port())
    written = blobs(6)
    async with rpc.ChannelPool() as pool:
        cell = Cell(F4StorageClient(pool, timeout_s=TIMEOUT_S),
                    KeyStoreClient(pool, keystore.address, timeout_s=TIMEOUT_S), nodes,
                    Geometry(cell_bytes=64 * 1024, rows=2))
        manifest = await cell.encode(5, aiter_of(written))
        b = written[2]
        blob = manifest.blobs[b.key, b.alternate_key]
        extent = cell.geometry.extents(manifest.stripes[0].data_bytes, blob.offset, blob.sealed_length)[0]
        [path] = (tmp_path / "data").rglob(f"v5/s0/b{extent.block}.blk")
        raw = bytearray(path.read_bytes())
        raw[extent.offset + 50] ^= 0xFF
        path.write_bytes(bytes(raw))
        got = await cell.read(manifest, b.key, b.alternate_key, b.cookie)
        assert got.data == b.data and got.reconstructed
