"""transformer/video.py: the ladder, aligned segments, playlists, the poster, and sources
that can never transcode."""

from __future__ import annotations

import io
from fractions import Fraction

import av
import numpy as np
import pytest
from PIL import Image

from transformer import video
from transformer.errors import UnrenderableSource
from trenchcoat.ops import samples

HEIGHTS = (240, 480, 720, 1080)


@pytest.fixture(scope="module")
def source() -> bytes:
    return samples.video(854, 480, seconds=4.0, fps=24)


def test_the_ladder_never_goes_above_the_source_and_keeps_its_aspect(source):
    probed = video.probe(source, max_s=600, max_pixels=50_000_000)
    assert (probed.width, probed.height, probed.fps, probed.audio) == (854, 480, Fraction(24), True)
    assert probed.duration_s == pytest.approx(4.0, abs=0.1)
    assert [(r.index, r.width, r.height) for r in video.ladder(probed, HEIGHTS)] == [(1, 428, 240), (2, 854, 480)]
    small = video.Probe(320, 180, 2.0, Fraction(30), False)
    assert [(r.width, r.height) for r in video.ladder(small, HEIGHTS)] == [(320, 180)]


def test_a_rung_is_cut_into_aligned_segments_that_decode(source, tmp_path):
    probed = video.probe(source, max_s=600, max_pixels=50_000_000)
    rung = video.ladder(probed, HEIGHTS)[0]
    encoded = video.encode_rung(source, probed, rung, tmp_path, segment_s=2.0, preset="veryfast")
    assert [s.duration_s for s in encoded.segments] == pytest.approx([2.0, 2.0], abs=0.05)
    for segment in encoded.segments:
        with av.open(io.BytesIO(segment.data), mode="r") as container:
            frames = list(container.decode(video=0))
        assert len(frames) == 48 and (frames[0].width, frames[0].height) == (428, 240)
        assert frames[0].key_frame  # each segment starts on a keyframe: rungs switch at any boundary
    assert list(tmp_path.iterdir()) == []  # nothing left behind
    again = video.encode_rung(source, probed, rung, tmp_path, segment_s=2.0, preset="veryfast")
    assert [s.data for s in again.segments] == [s.data for s in encoded.segments]  # deterministic


def test_playlists_name_segments_by_url_and_the_master_lists_rungs_with_bandwidths():
    rung = video.Rung(1, 428, 240, 400_000, 64_000)
    encoded = video.EncodedRung(rung, [video.Segment(0, 2.0, b"x" * 100_000), video.Segment(1, 1.5, b"x" * 50_000)],
                                1.0)
    playlist = video.rung_playlist(encoded, ["http://cdn/1/2/3,a.ts", "http://cdn/1/2/3,b.ts"], 2.0)
    assert playlist.splitlines() == [
        "#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-TARGETDURATION:2", "#EXT-X-MEDIA-SEQUENCE:0",
        "#EXT-X-PLAYLIST-TYPE:VOD", "#EXT-X-INDEPENDENT-SEGMENTS",
        "#EXTINF:2.000000,", "http://cdn/1/2/3,a.ts", "#EXTINF:1.500000,", "http://cdn/1/2/3,b.ts", "#EXT-X-ENDLIST"]
    master = video.master_playlist([(encoded, "http://cdn/1/2/3,p.m3u8")]).splitlines()
    assert master[3] == ('#EXT-X-STREAM-INF:BANDWIDTH=400000,AVERAGE-BANDWIDTH=342857,RESOLUTION=428x240,'
                         'CODECS="avc1.64001f,mp4a.40.2"')
    assert master[4] == "http://cdn/1/2/3,p.m3u8"


def test_the_poster_is_a_frame_a_second_in(source):
    jpeg, width, height = video.poster(source, max_width=640, quality=85)
    image = Image.open(io.BytesIO(jpeg))
    assert (image.format, image.size, (width, height)) == ("JPEG", (640, 360), (640, 360))


@pytest.mark.parametrize(("data", "message"), [
    (b"definitely not a video", "not a video FFmpeg can read"),
])
def test_what_is_not_a_video_is_unrenderable(data, message):
    with pytest.raises(UnrenderableSource, match=message):
        video.probe(data, max_s=600, max_pixels=50_000_000)


def test_a_video_too_long_or_too_large_is_refused_from_its_header(source):
    with pytest.raises(UnrenderableSource, match=r"runs 4.0 s, over the 3 s"):
        video.probe(source, max_s=3, max_pixels=50_000_000)
    with pytest.raises(UnrenderableSource, match="854x480, over the 100000 pixels"):
        video.probe(source, max_s=600, max_pixels=100_000)


def brightest_corner(rgb) -> str:
    h, w = rgb.shape[0], rgb.shape[1]
    d = max(2, min(h, w) // 16)
    corners = {"top left": rgb[:d, :d], "top right": rgb[:d, -d:], "bottom left": rgb[-d:, :d],
               "bottom right": rgb[-d:, -d:]}
    return max(corners, key=lambda name: corners[name].mean())


@pytest.mark.parametrize(("rotation", "corner"), [(0, "top left"), (-90, "top right"), (90, "bottom left"),
                                                  (180, "bottom right")])
def test_a_video_turned_by_its_display_matrix_is_rendered_upright(rotation, corner, tmp_path):
    """A phone stores a portrait video landscape with a display matrix saying how to turn
    it (-90: a quarter turn clockwise); the ladder and the poster are turned as a player
    shows it, and their pixels say so (the white square marks the source's top left)."""
    source = samples.video(320, 240, seconds=2.0, fps=12, audio=False, rotation=rotation)
    probed = video.probe(source, max_s=600, max_pixels=50_000_000)
    portrait = rotation in (90, -90)
    assert (probed.width, probed.height) == ((240, 320) if portrait else (320, 240))
    [rung] = video.ladder(probed, (240,))
    assert (rung.width, rung.height) == ((180, 240) if portrait else (320, 240))
    encoded = video.encode_rung(source, probed, rung, tmp_path, segment_s=2.0, preset="ultrafast")
    with av.open(io.BytesIO(encoded.segments[0].data), mode="r") as container:
        frame = next(container.decode(video=0))
    assert (frame.width, frame.height) == (rung.width, rung.height)
    assert frame.rotation == 0  # stored turned: no matrix for players to apply again
    assert brightest_corner(frame.to_ndarray(format="rgb24")) == corner
    jpeg, width, height = video.poster(source, max_width=640, quality=90)
    image = Image.open(io.BytesIO(jpeg)).convert("RGB")
    assert (width, height) == ((240, 320) if portrait else (320, 240)) == image.size
    assert brightest_corner(np.asarray(image)) == corner
