"""feedsvc/home.py's pure parts: the k-way merge and how far merged windows are exact."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from feedsvc.home import merge, settled
from feedsvc.model import Entry
from feedsvc.timelines import Window, entry_of, member


@given(st.lists(st.lists(st.integers(1, 500), max_size=30), max_size=6))
def test_merge_is_newest_first_and_each_id_once(sources):
    lists = [sorted({Entry(i, i % 7) for i in s}, reverse=True) for s in sources]
    merged = merge(lists)
    assert [e.media_id for e in merged] == sorted({e.media_id for lst in lists for e in lst}, reverse=True)


def test_a_full_window_settles_the_merge_down_to_its_last_entry_only():
    full = Window([Entry(9, 1), Entry(7, 1), Entry(5, 1)], floor=0)  # asked for 3: more may lie below
    short = Window([Entry(8, 2), Entry(2, 2)], floor=0)  # asked for 3, got 2: exhausted
    assert settled([full, short], want=3) == 5
    assert settled([short], want=3) == 0


@given(st.integers(0, (1 << 64) - 1), st.integers(0, (1 << 64) - 1))
def test_members_sort_like_ids_and_decode_back(a, b):
    ea, eb = Entry(a, 3), Entry(b, 4)
    assert entry_of(member(ea)) == ea
    if a != b:
        assert (member(ea) < member(eb)) == (a < b)
