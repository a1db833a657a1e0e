"""XOR geo-replication on real processes: three cells (two storage nodes each, standing for
14 failure domains), one key store. Two volumes encoded one after the other go to the two
data cells and are paired: the XOR cell holds the XOR of their blocks. The bytes on disk
over the logical bytes are measured (aim <= 2.2). With a whole data cell killed -9, every
blob of its volume is served byte-exact from the buddy and the XOR, also by a front that
starts afresh; with the buddy's cell gone too, reads are UNAVAILABLE, never wrong bytes."""

from __future__ import annotations

import random
from typing import cast

import pytest
from prometheus_client import REGISTRY

from f4 import codec
from f4.cell import PlainBlob
from f4.front import Front
from f4.geo import Region
from f4.layout import Geometry
from f4.manifest import xor_volume_id
from tests.cluster import fresh_database
from tests.fault.test_f4_cell import aiter_of
from tests.integration.test_f4_keystore import start_keystore
from tests.integration.test_f4_storage import start_node
from trenchcoat import rpc
from trenchcoat.clients.directory import DirectoryClient
from trenchcoat.clients.f4 import F4StorageClient, KeyStoreClient
from trenchcoat.clients.store import StoreClient
from trenchcoat.errors import Unavailable
from trenchcoat.needle_ref import NeedleRef
from trenchcoat.ops import ports

pytestmark = pytest.mark.integration

TIMEOUT_S = 10.0
CELLS = ("east", "west", "xor")
GEOMETRY = Geometry(cell_bytes=16 * 1024, rows=4)
MARKER = b"XOR-PLAINTEXT-"


def volume_blobs(seed: int, n: int) -> list[PlainBlob]:
    rnd = random.Random(seed)
    return [PlainBlob(key=seed * 1000 + i, alternate_key=0, cookie=rnd.getrandbits(32), media_type=1,
                      data=MARKER + rnd.randbytes(20_000)) for i in range(n)]


def front_of(pool, nodes, keystore):
    storage = F4StorageClient(pool, timeout_s=TIMEOUT_S)
    keys = KeyStoreClient(pool, keystore.address, timeout_s=TIMEOUT_S)
    region = Region(storage, keys, GEOMETRY, CELLS, hedge_s=2.0)
    # No hot tier here: the directory and stores a front migrates volumes from are never called.
    return Front(region, storage, keys, [p.address for p, _ in nodes], cast(DirectoryClient, None),
                 cast(StoreClient, None), call_timeout_s=TIMEOUT_S)


def unconnected_region(names: tuple[str, ...]) -> Region:
    """A region for its choice of cells alone: no storage node or key store is called."""
    return Region(cast(F4StorageClient, None), cast(KeyStoreClient, None), GEOMETRY, names)


def xor_reads() -> float:
    return REGISTRY.get_sample_value("trenchcoat_f4_xor_reads_total") or 0.0


async def test_a_whole_cell_lost_is_read_from_the_buddy_and_the_xor(service, postgres, tmp_path):
    nodes = []
    for c, cell in enumerate(CELLS):
        for half in range(2):
            domains = tuple(f"{cell}-{i:02}" for i in range(codec.N))[half::2]
            proc = start_node(service, tmp_path / "data", node_id=10 * c + half + 1, domains=domains,
                              TRENCHCOAT_F4_STORAGE__CELL=cell)
            nodes.append((proc, cell))
    keystore = start_keystore(service, await fresh_database(postgres.endpoint), ports.free_port(), ports.free_port())
    first, second = volume_blobs(31, 60), volume_blobs(32, 60)
    async with rpc.ChannelPool() as pool:
        front = front_of(pool, nodes, keystore)
        await front.refresh_nodes()
        await front.encode_from(31, [("test", lambda: aiter_of(first))])
        await front.encode_from(32, [("test", lambda: aiter_of(second))])
        a, b = await front.manifest(31, fresh=True), await front.manifest(32, fresh=True)
        assert (a.cell, b.cell) == ("east", "west")
        assert (a.buddy, b.buddy) == (32, 31) and a.xor == b.xor == xor_volume_id(32)
        x = await front.manifest(a.xor, fresh=True)
        assert x.cell == "xor" and x.xor_of == (31, 32) and not x.blobs

        # Effective replication, measured: every block file of every cell over the logical bytes.
        files = [p for p in (tmp_path / "data").rglob("*.blk") if "/s4294967295/" not in str(p)]
        logical = a.logical_bytes + b.logical_bytes
        on_disk = sum(p.stat().st_size for p in files)
        assert on_disk / logical <= 2.2, f"{on_disk} bytes on disk for {logical} logical: {on_disk / logical:.3f}x"
        assert not any(MARKER in p.read_bytes() for p in (tmp_path / "data").rglob("*.blk"))

        # The whole east cell killed -9: volume 31 is read from volume 32 and the XOR.
        for proc, cell in nodes:
            if cell == "east":
                proc.kill()
        before = xor_reads()
        for blob in first:
            got = await front.read(NeedleRef(logical_volume=31, key=blob.key, cookie=blob.cookie))
            assert got.data == blob.data and got.reconstructed
        assert xor_reads() > before
        for blob in second[:5]:
            got = await front.read(NeedleRef(logical_volume=32, key=blob.key, cookie=blob.cookie))
            assert got.data == blob.data and not got.reconstructed

        # A front started afresh (nothing in RAM) finds volume 31's manifest in the XOR cell.
        fresh = front_of(pool, nodes, keystore)
        for blob in first[:10]:
            assert (await fresh.read(NeedleRef(logical_volume=31, key=blob.key, cookie=blob.cookie))).data == blob.data

        # The buddy's cell gone too: UNAVAILABLE, never wrong bytes.
        for proc, cell in nodes:
            if cell == "west":
                proc.kill()
        with pytest.raises(Unavailable):
            await front.read(NeedleRef(logical_volume=31, key=first[0].key, cookie=first[0].cookie))


def test_volumes_pair_across_the_two_data_cells_and_a_single_cell_never_pairs():
    from f4.manifest import Manifest

    region = unconnected_region(CELLS)
    m1 = Manifest(1, GEOMETRY, cell="east")
    assert region.choose([], 1) == ("east", None)
    assert region.choose([m1], 2) == ("west", m1)
    m2 = Manifest(2, GEOMETRY, cell="west", buddy=1, xor=xor_volume_id(2))
    m1.buddy, m1.xor = 2, xor_volume_id(2)
    x = Manifest(xor_volume_id(2), GEOMETRY, cell="xor", xor_of=(1, 2))
    assert region.choose([m1, m2, x], 3) == ("east", None)  # everyone is paired: a new pair starts
    m3 = Manifest(3, GEOMETRY, cell="east")
    m4 = Manifest(4, GEOMETRY, cell="east")
    assert region.choose([m1, m2, x, m3, m4], 5) == ("west", m3)  # the oldest waiting one first
    assert region.choose([m3], 3) == ("east", None)  # itself (an encode run again) is no partner
    single = unconnected_region(())
    assert single.choose([m3, m4], 5) == ("", None)
