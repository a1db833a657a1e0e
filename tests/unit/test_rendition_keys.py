"""trenchcoat/rendition_keys.py: the alternate keys of renditions."""

from __future__ import annotations

from trenchcoat import rendition_keys as keys


def test_alternate_keys_of_segments_playlists_and_masters_never_meet():
    seen = {keys.segment_key(r, n) for r in range(1, 5) for n in (0, 1, keys.MAX_SEGMENTS - 1)}
    seen |= {keys.playlist_key(r) for r in range(1, 5)} | {keys.master_key(n) for n in range(1, 5)}
    seen.add(keys.VIDEO_POSTER)
    assert len(seen) == 4 * 3 + 4 + 4 + 1 and min(seen) > 255  # and clear of image sizes' 1..255


def test_each_key_is_described_for_people():
    assert [keys.describe(k) for k in (0, 3, keys.VIDEO_POSTER, keys.master_key(2), keys.playlist_key(1),
                                       keys.segment_key(2, 7), 0x0900_0000)] == [
        "original", "size 3", "poster", "master (2 rungs)", "rung 1 playlist", "rung 2 segment 7", "key 0x9000000"]
    assert keys.is_master(keys.master_key(4)) and not keys.is_master(keys.playlist_key(4))


def test_stat_lists_sizes_the_poster_and_the_newest_master_only():
    ladder = {keys.VIDEO_POSTER, keys.master_key(1), keys.master_key(2), keys.playlist_key(1), keys.playlist_key(2),
              *(keys.segment_key(r, n) for r in (1, 2) for n in range(300))}
    assert keys.listed(ladder) == {keys.VIDEO_POSTER, keys.master_key(2)}
    assert keys.listed({1, 2, 3, 4}) == {1, 2, 3, 4}
    assert keys.listed({keys.playlist_key(1), keys.segment_key(1, 0)}) == set()
    assert keys.listed(()) == set()
