"""f4/rebuilder/scan.py's policy without processes: ``assess`` (what each block of each
manifest is, from what the nodes said) and ``due`` (which unhealthy blocks have waited out
the grace period, in what order)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from f4.codec import N
from f4.layout import Geometry
from f4.manifest import Manifest, Stripe
from f4.rebuilder.scan import Health, NodeReport, assess, due
from trenchcoat.f4_types import BlockId, BlockInfo

GEOMETRY = Geometry(cell_bytes=16, rows=2)
BIG = "10.0.0.1:7700"
"""Serves d00-d06: blocks 0-6 of every stripe below."""
SMALL = [f"10.0.0.{i}:7700" for i in range(2, 9)]
"""One domain each, d07-d13: blocks 7-13."""


def stripe(number: int) -> Stripe:
    blocks = tuple((BIG, f"d{i:02}") for i in range(7)) + tuple((n, f"d{7 + i:02}") for i, n in enumerate(SMALL))
    return Stripe(number, 100, blocks=blocks)


def manifest(volume: int, stripes: int) -> Manifest:
    return Manifest(volume, GEOMETRY, [stripe(s) for s in range(stripes)])


def held(node: str, *blocks: BlockId, damaged: tuple[BlockId, ...] = ()) -> dict[BlockId, BlockInfo]:
    return {b: BlockInfo(b, node, "", b not in damaged, GEOMETRY.block_size(100)) for b in blocks}


def every_block(manifests: list[Manifest]) -> list[BlockId]:
    return [BlockId(m.volume_id, s.number, i) for m in manifests for s in m.stripes for i in range(N)]


def answering(manifests: list[Manifest]) -> dict[str, NodeReport]:
    """Every node answers, holding every block the manifests put on it, intact."""
    mine: dict[str, list[BlockId]] = {}
    for m in manifests:
        for s in m.stripes:
            for i, (node, _) in enumerate(s.blocks):
                mine.setdefault(node, []).append(BlockId(m.volume_id, s.number, i))
    return {node: NodeReport(node, (), held(node, *blocks)) for node, blocks in mine.items()}


def test_every_block_of_every_stripe_is_healthy_when_every_node_holds_its_blocks_intact():
    manifests = [manifest(3, 2), manifest(9, 1)]
    health = assess(manifests, answering(manifests))
    assert sorted(health, key=lambda b: (b.volume, b.stripe, b.index)) == every_block(manifests)
    assert set(health.values()) == {Health.HEALTHY}


def test_a_bad_checksum_is_damaged_a_block_gone_from_an_answering_node_is_missing():
    manifests = [manifest(3, 2)]
    reports = answering(manifests)
    flipped, gone = BlockId(3, 0, 8), BlockId(3, 1, 8)
    reports[SMALL[1]] = NodeReport(SMALL[1], ("d08",), held(SMALL[1], flipped, damaged=(flipped,)))
    health = assess(manifests, reports)
    assert health[flipped] is Health.DAMAGED
    assert health[gone] is Health.MISSING  # the node answers without it: a disk replaced
    assert [b for b, h in health.items() if h is not Health.HEALTHY] == [flipped, gone]


def test_every_block_of_a_silent_node_is_lost_whether_it_answered_nothing_or_was_never_asked():
    manifests = [manifest(3, 2)]
    reports = answering(manifests)
    reports[BIG] = NodeReport(BIG, (), None)  # asked, did not answer
    del reports[SMALL[0]]  # not among the endpoints the scan asked
    health = assess(manifests, reports)
    lost = {b for b, h in health.items() if h is Health.LOST}
    assert lost == {BlockId(3, s, i) for s in (0, 1) for i in range(8)}  # BIG serves blocks 0-6, SMALL[0] block 7
    assert all(h is Health.HEALTHY for b, h in health.items() if b not in lost)


def test_a_block_is_judged_by_the_node_its_manifest_names_not_by_a_copy_elsewhere():
    manifests = [manifest(3, 1)]
    reports = answering(manifests)
    block = BlockId(3, 0, 9)
    reports[SMALL[2]] = NodeReport(SMALL[2], (), {})
    reports["10.0.0.99:7700"] = NodeReport("10.0.0.99:7700", ("d14",), held("10.0.0.99:7700", block))
    health = assess(manifests, reports)
    assert health[block] is Health.MISSING  # until the manifest says it moved, the copy elsewhere does not count
    assert BlockId(3, 0, 13) in health and len(health) == N  # blocks no manifest names are not judged


def test_no_manifests_no_blocks():
    assert assess([], answering([manifest(3, 1)])) == {}


def test_a_block_is_due_once_unhealthy_for_the_grace_period_the_longest_unhealthy_first():
    a, b, c = BlockId(1, 0, 0), BlockId(1, 0, 1), BlockId(2, 5, 13)
    since = {a: 100.0, b: 40.0, c: 70.0}
    assert due(since, now=130.0, grace_s=60.0) == [b, c]  # a is 30 s in: not yet
    assert due(since, now=160.0, grace_s=60.0) == [b, c, a]  # exactly the grace period: due
    assert due(since, now=100.0, grace_s=0.0) == [b, c, a]  # no grace: at once
    assert due(since, now=100.0, grace_s=900.0) == []
    assert due({}, now=1e9, grace_s=0.0) == []


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.builds(BlockId, st.integers(1, 5), st.integers(0, 3), st.integers(0, N - 1)),
                       st.floats(0, 1000, allow_nan=False), max_size=30),
       st.floats(0, 2000, allow_nan=False), st.floats(0, 1000, allow_nan=False))
def test_due_is_every_block_past_grace_and_no_other_oldest_first(since, now, grace_s):
    got = due(since, now, grace_s)
    assert set(got) == {b for b, t in since.items() if now - t >= grace_s}
    assert [since[b] for b in got] == sorted(since[b] for b in got)


# --- orphans -----------------------------------------------------------------------------


def test_a_copy_left_behind_by_a_move_is_an_orphan_once_the_block_it_names_is_healthy():
    from f4.rebuilder.scan import orphans

    m = manifest(3, 1)
    spare = "10.0.0.99:7700"
    moved = BlockId(3, 0, 9)
    blocks = list(m.stripes[0].blocks)
    old_node = blocks[9][0]
    blocks[9] = (spare, "d14")
    m.stripes[0] = Stripe(0, 100, blocks=tuple(blocks))
    reports = answering([m])
    reports[old_node] = NodeReport(old_node, (), held(old_node, moved))  # back, with its old copy
    health = assess([m], reports)
    assert health[moved] is Health.HEALTHY
    assert orphans([m], reports, health) == [(old_node, moved)]
    # The block the manifest names lost: the old copy is kept (it may be the last good one).
    del reports[spare]
    assert orphans([m], reports, assess([m], reports)) == []
    # Blocks of volumes without a manifest (an encode under way) are never orphans.
    reports[old_node] = NodeReport(old_node, (), held(old_node, BlockId(4, 0, 9)))
    assert orphans([m], reports, assess([m], reports)) == []
