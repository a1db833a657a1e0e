"""f4/layout.py: rows of cells across the data blocks; one block per failure domain."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from f4 import codec
from f4.layout import Extent, Geometry, place
from trenchcoat.errors import FailedPrecondition, InvalidArgument


@st.composite
def stripes(draw):
    geometry = Geometry(cell_bytes=draw(st.integers(1, 64)), rows=draw(st.integers(1, 4)))
    size = draw(st.integers(1, geometry.stripe_capacity))
    stream = draw(st.binary(min_size=size, max_size=size))
    offset = draw(st.integers(0, size - 1))
    length = draw(st.integers(1, size - offset))
    return geometry, stream, offset, length


@settings(max_examples=300, deadline=None)
@given(stripes())
def test_the_extents_of_a_range_read_back_the_stream_and_every_block_is_one_size(case):
    geometry, stream, offset, length = case
    blocks = geometry.encode(stream)
    assert {len(b) for b in blocks} == {geometry.block_size(len(stream))}
    assert geometry.block_size(len(stream)) * codec.K - len(stream) < codec.K  # padding < K bytes
    extents = geometry.extents(len(stream), offset, length)
    assert sum(e.length for e in extents) == length
    got = b"".join(bytes(blocks[e.block][e.offset:e.offset + e.length]) for e in extents)
    assert got == stream[offset:offset + length]


@settings(max_examples=100, deadline=None)
@given(stripes(), st.lists(st.integers(0, codec.N - 1), min_size=1, max_size=4, unique=True))
def test_a_blob_in_a_lost_block_rebuilds_from_the_same_offsets_of_ten_others(case, lost):
    geometry, stream, offset, length = case
    blocks = geometry.encode(stream)
    for e in geometry.extents(len(stream), offset, length):
        if e.block not in lost:
            continue
        survivors = {i: bytes(b[e.offset:e.offset + e.length]) for i, b in enumerate(blocks) if i not in lost}
        assert codec.rebuild(survivors, [e.block])[e.block] == bytes(blocks[e.block][e.offset:e.offset + e.length])


def test_a_blob_no_larger_than_a_cell_in_a_full_row_is_one_or_two_extents():
    g = Geometry(cell_bytes=1 << 20, rows=8)
    size = g.stripe_capacity
    assert g.extents(size, 5, 100_000) == [Extent(0, 5, 100_000)]
    assert g.extents(size, (1 << 20) - 10, 100) == [Extent(0, (1 << 20) - 10, 10), Extent(1, 0, 90)]
    assert g.extents(size, 10 << 20, 7) == [Extent(0, 1 << 20, 7)]  # row 1 starts again at block 0


def test_out_of_range_reads_and_oversize_stripes_are_invalid_argument():
    g = Geometry(cell_bytes=16, rows=2)
    with pytest.raises(InvalidArgument, match="holds 1 to 320 bytes"):
        g.block_size(321)
    with pytest.raises(InvalidArgument, match=r"\[300, 330\) are not within a stripe of 320"):
        g.extents(320, 300, 30)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text("abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=3),
                       st.lists(st.sampled_from(["n1", "n2", "n3"]), min_size=1, max_size=3, unique=True),
                       min_size=14, max_size=30),
       st.integers(0, 4))
def test_no_stripe_puts_two_blocks_in_one_failure_domain(domains, already):
    taken = sorted(domains)[:already]
    placed = place(domains, taken=taken)
    assert len(placed) == codec.N - already
    chosen = [d for d, _ in placed]
    assert len(set(chosen)) == len(chosen) and not set(chosen) & set(taken)
    assert all(node in domains[d] for d, node in placed)


def test_too_few_failure_domains_is_refused_naming_them():
    domains = {f"rack-{i}": ["n1"] for i in range(13)}
    with pytest.raises(FailedPrecondition, match=r"needs 14 more failure domains .* 13 are free"):
        place(domains)
    # a node serving several domains is fine (one block directory each), a domain twice is not
    domains["rack-13"] = ["n1"]
    assert len({d for d, _ in place(domains)}) == 14
