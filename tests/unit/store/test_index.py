"""store/index.py against a plain-dict model, plus its edges."""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from store.index import Entry, NeedleIndex

keys = st.integers(0, (1 << 64) - 1)
small_keys = st.integers(0, 50)
alts = st.integers(0, 5)
offsets = st.integers(0, 1000).map(lambda u: u * 8)
sizes = st.integers(1, 1 << 20)

ops = st.lists(
    st.one_of(
        st.tuples(st.just("put"), st.one_of(keys, small_keys), alts, offsets, sizes),
        st.tuples(st.just("del"), st.one_of(keys, small_keys), alts),
        st.tuples(st.just("merge")),
    ),
    max_size=300,
)


@given(ops)
def test_matches_a_dict_model(operations):
    index = NeedleIndex()
    model: dict[tuple[int, int], Entry] = {}
    for op in operations:
        if op[0] == "put":
            _, k, a, o, s = op
            old = index.put(k, a, o, s)
            assert old == model.get((k, a))
            model[(k, a)] = Entry(o, s, False)
        elif op[0] == "del":
            _, k, a = op
            assert index.mark_deleted(k, a) == model.get((k, a))
            if (k, a) in model:
                model[(k, a)] = Entry(model[(k, a)].offset, model[(k, a)].size, True)
        else:
            index.arrays()
        assert len(index) == len(model)
    for (k, a), entry in model.items():
        assert index.get(k, a) == entry
    karr, aarr, _, _ = index.arrays()
    pairs = list(zip(karr.tolist(), aarr.tolist(), strict=True))
    assert pairs == sorted(model)


def test_many_inserts_cross_many_merges_and_stay_findable():
    rng = random.Random(7)
    index, model = NeedleIndex(), {}
    for i in range(60_000):
        k, a = rng.getrandbits(64), rng.choice([0, 0, 0, 1, 3])
        index.put(k, a, i * 8, 100 + i % 50)
        model[(k, a)] = (i * 8, 100 + i % 50)
    for (k, a), (o, s) in rng.sample(sorted(model.items()), 2000):
        assert index.get(k, a) == Entry(o, s, False)
    assert index.get(12345, 9) is None
    assert len(index) == len(model)


def test_top_bit_keys_and_max_alternate_key():
    index = NeedleIndex()
    index.put((1 << 64) - 1, (1 << 32) - 1, 8, 40)
    index.arrays()
    assert index.get((1 << 64) - 1, (1 << 32) - 1) == Entry(8, 40, False)
    assert index.get((1 << 64) - 1, 0) is None


def test_from_arrays_serves_lookups_without_rebuilding():
    k = np.array([1, 2, 2, 9], dtype=np.uint64)
    a = np.array([0, 0, 4, 0], dtype=np.uint32)
    index = NeedleIndex.from_arrays(k, a, np.array([1, 2, 3, 4], np.uint32), np.array([8, 16, 24, 32], np.uint32))
    assert index.get(2, 4) == Entry(24, 24, False)
    assert index.get(9, 0) == Entry(32, 32, False)


@pytest.mark.parametrize("offset,size", [(3, 10), (-8, 10), (8, 0), (1 << 36, 10), (8, 1 << 31)])
def test_out_of_range_entries_are_refused(offset, size):
    with pytest.raises(ValueError):
        NeedleIndex().put(1, 0, offset, size)
