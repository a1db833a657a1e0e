"""f4/codec.py: RS(10,4) rows on pyeclib's ISA-L backend; every 4-of-14 loss pattern
rebuilds, and so does any byte range of a lost block from the same range of 10 others."""

from __future__ import annotations

import itertools
import os
import random

import pytest

from f4 import codec
from trenchcoat.errors import InvalidArgument, Unavailable


def row(cell: int, seed: int = 1) -> list[bytes]:
    rnd = random.Random(seed)
    return [rnd.randbytes(cell) for _ in range(codec.K)]


def test_parity_is_four_cells_of_the_row_length():
    parity = codec.encode_row(row(4096))
    assert len(parity) == codec.M and {len(p) for p in parity} == {4096}


@pytest.mark.parametrize("cell", [1, 17, 4096])
def test_every_4_of_14_loss_pattern_rebuilds_the_lost_blocks(cell):
    data = row(cell, seed=cell)
    blocks = data + codec.encode_row(data)
    patterns = 0
    for lost in itertools.combinations(range(codec.N), 4):
        left = {i: b for i, b in enumerate(blocks) if i not in lost}
        assert codec.rebuild(left, lost) == {i: blocks[i] for i in lost}, lost
        patterns += 1
    assert patterns == 1001


def test_a_byte_range_rebuilds_from_the_same_range_of_ten_others():
    cell = 64 * 1024
    data = row(cell, seed=7)
    blocks = data + codec.encode_row(data)
    rnd = random.Random(3)
    for _ in range(200):
        start = rnd.randrange(cell)
        end = rnd.randrange(start + 1, cell + 1)
        lost = rnd.sample(range(codec.N), 4)
        survivors = rnd.sample([i for i in range(codec.N) if i not in lost], codec.K)
        got = codec.rebuild({i: blocks[i][start:end] for i in survivors}, lost)
        assert got == {i: blocks[i][start:end] for i in lost}


def test_a_fifth_loss_is_unavailable_not_wrong_bytes():
    data = row(64)
    blocks = data + codec.encode_row(data)
    with pytest.raises(codec.TooFewBlocks, match="9 of 14 blocks at hand; rebuilding needs 10") as info:
        codec.rebuild({i: blocks[i] for i in range(9)}, [9])
    assert isinstance(info.value, Unavailable)


def test_what_is_asked_for_and_at_hand_is_returned_as_it_is():
    data = row(32)
    blocks = data + codec.encode_row(data)
    left = {i: blocks[i] for i in range(1, 11)}
    assert codec.rebuild(left, [3, 0, 3]) == {3: blocks[3], 0: blocks[0]}


@pytest.mark.parametrize("cells,message", [
    ([b"a"] * 9, "a row has 10 data cells"),
    ([b"a"] * 9 + [b"bb"], "of one length"),
    ([b""] * 10, "non-empty"),
])
def test_a_malformed_row_is_invalid_argument(cells, message):
    with pytest.raises(InvalidArgument, match=message):
        codec.encode_row(cells)


def test_ranges_of_different_lengths_or_bad_indexes_are_refused():
    ranges = {i: os.urandom(8) for i in range(10)}
    with pytest.raises(InvalidArgument, match="one length"):
        codec.rebuild({**ranges, 10: b"x"}, [11])
    with pytest.raises(InvalidArgument, match="0-13"):
        codec.rebuild(ranges, [14])
