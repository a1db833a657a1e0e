"""router/photos.py RowCache: rows trusted for a TTL, dropped on delete, bounded."""

from __future__ import annotations

import time

from router.photos import RowCache


def test_rows_are_trusted_for_the_ttl_then_read_again():
    cache = RowCache(ttl_s=0.05)
    cache.put(1, None)
    assert cache.get(1) == (True, None)  # a known absence counts too
    time.sleep(0.06)
    assert cache.get(1) == (False, None)


def test_drop_forgets_a_row_at_once_and_size_is_bounded():
    cache = RowCache(ttl_s=10, max_rows=2)
    for i in range(3):
        cache.put(i, None)
    assert cache.get(0) == (False, None) and cache.get(2) == (True, None)
    cache.drop(2)
    assert cache.get(2) == (False, None)


def test_a_zero_ttl_keeps_nothing():
    cache = RowCache(ttl_s=0)
    cache.put(1, None)
    assert cache.get(1) == (False, None)
