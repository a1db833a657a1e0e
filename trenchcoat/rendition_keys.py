"""Alternate keys of renditions: part of the contract (``proto/trenchcoat/v1/media.proto``).

| what | alternate key |
|---|---|
| the original | 0 |
| an image size (``transformer.image_renditions``) | 1..255 |
| segment n of a video's rung r (r from 1, the lowest) | ``VIDEO_SEGMENTS | r << 16 | n`` |
| rung r's media playlist | ``VIDEO_SEGMENTS | r << 16 | 0xFFFF`` |
| the master playlist of the lowest n rungs | ``VIDEO_MASTERS | n`` (the highest n: the whole ladder) |
| a video's poster frame (JPEG) | ``VIDEO_POSTER`` |
"""

from __future__ import annotations

from collections.abc import Iterable

VIDEO_SEGMENTS = 0x0100_0000
VIDEO_MASTERS = 0x0200_0000
VIDEO_POSTER = 0x0300_0000
PLAYLIST = 0xFFFF
MAX_SEGMENTS = 0xFFFE
"""Segments one rung may have (so a segment's key never reaches the playlist's)."""


def segment_key(rung: int, n: int) -> int:
    return VIDEO_SEGMENTS | rung << 16 | n


def playlist_key(rung: int) -> int:
    return VIDEO_SEGMENTS | rung << 16 | PLAYLIST


def master_key(rungs: int) -> int:
    return VIDEO_MASTERS | rungs


def is_master(key: int) -> bool:
    return key & ~0xFFFF == VIDEO_MASTERS


def listed(keys: Iterable[int]) -> set[int]:
    """The renditions a client picks from (what Stat lists): image sizes, a video's poster
    and its newest master playlist (the whole ladder so far), not the rungs' playlists and
    segments, which a master leads to (a long video has hundreds)."""
    keys = set(keys)
    masters = [k for k in keys if is_master(k)]
    return {k for k in keys if k <= 0xFF or k == VIDEO_POSTER} | ({max(masters)} if masters else set())


def describe(key: int) -> str:
    """What a rendition's alternate key names, for people."""
    if key == 0:
        return "original"
    if key <= 0xFF:
        return f"size {key}"
    if key == VIDEO_POSTER:
        return "poster"
    if is_master(key):
        return f"master ({key & 0xFFFF} rungs)"
    if key & ~0xFFFFFF == VIDEO_SEGMENTS:
        rung, n = (key >> 16) & 0xFF, key & 0xFFFF
        return f"rung {rung} playlist" if n == PLAYLIST else f"rung {rung} segment {n}"
    return f"key {key:#x}"
