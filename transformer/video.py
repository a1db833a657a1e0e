"""Video renditions (PyAV: FFmpeg with libx264, AAC and the HLS muxer): an H.264/AAC HLS
ladder and a poster frame.

The ladder is the configured rung heights (default 240, 480, 720, 1080) no taller than
the source (a source shorter than the lowest rung gets one rung at its own height), each
the source's aspect ratio with even sides. Each rung is encoded on its own, lowest first
(so the lower rungs are published while the higher ones encode): H.264 at the rung's
bitrate with a keyframe every ``segment_s`` seconds exactly (fixed GOP, no scene-cut
keyframes: every rung's segments start at the same instants, so a player can switch
between them at any boundary), AAC stereo, cut by FFmpeg's HLS muxer into MPEG-TS
segments of ``segment_s`` seconds. The outputs are a function of the source and the recipe
(x264 and the muxers are deterministic), so a job that runs again makes the same bytes.

Each segment, playlist and the poster is a needle of the media_id under the alternate
keys ``trenchcoat.rendition_keys`` lays out.
"""

from __future__ import annotations

import io
import os
import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
from PIL import Image

from transformer.errors import UnrenderableSource
from trenchcoat.rendition_keys import MAX_SEGMENTS

SEGMENT_TYPE = "video/mp2t"
PLAYLIST_TYPE = "application/vnd.apple.mpegurl"
POSTER_TYPE = "image/jpeg"
AUDIO_RATE = 48_000
BITRATES = {240: (400_000, 64_000), 360: (700_000, 96_000), 480: (1_000_000, 96_000), 720: (2_500_000, 128_000),
            1080: (5_000_000, 128_000)}
"""Rung height -> (video, audio) bits a second; other heights are interpolated."""
CODECS = '"avc1.64001f,mp4a.40.2"'
"""What the master playlist tells players the rungs need (H.264 High, AAC-LC)."""


@dataclass(frozen=True, slots=True)
class Probe:
    width: int
    """As displayed: a phone's portrait video stored landscape with a rotation is portrait here."""
    height: int
    duration_s: float
    fps: Fraction
    audio: bool
    turn: int = 0
    """Degrees clockwise its frames are turned to show upright (0, 90, 180, 270): what its
    display matrix asks of a player. Renditions are stored turned, with no matrix."""


TURNS = {90: (("transpose", "clock"),), 180: (("hflip", ""), ("vflip", "")), 270: (("transpose", "cclock"),)}
"""FFmpeg filters that turn a frame clockwise by so many degrees."""


def turn_of(frame: av.VideoFrame) -> int:
    """Degrees clockwise ``frame`` is shown turned (from its display matrix, which says
    counterclockwise), to the nearest quarter turn."""
    return (-round(frame.rotation / 90) * 90) % 360


class _Upright:
    """Turns decoded frames as their display matrix says (a filter graph, built at the first
    frame)."""

    def __init__(self, stream: av.video.stream.VideoStream, turn: int) -> None:
        self._stream, self._turn = stream, turn
        self._graph: av.filter.Graph | None = None

    def __call__(self, frame: av.VideoFrame) -> av.VideoFrame:
        if not self._turn:
            return frame
        if self._graph is None:
            graph = av.filter.Graph()
            last = graph.add_buffer(template=self._stream)
            for name, args in TURNS[self._turn]:
                node = graph.add(name, args) if args else graph.add(name)
                last.link_to(node)
                last = node
            last.link_to(graph.add("buffersink"))
            graph.configure()
            self._graph = graph
        self._graph.push(frame)
        turned = self._graph.pull()
        assert isinstance(turned, av.VideoFrame)
        return turned


@dataclass(frozen=True, slots=True)
class Rung:
    index: int
    """1 for the lowest."""
    width: int
    height: int
    video_bps: int
    audio_bps: int


@dataclass(frozen=True, slots=True)
class Segment:
    n: int
    duration_s: float
    data: bytes


@dataclass(frozen=True, slots=True)
class EncodedRung:
    rung: Rung
    segments: list[Segment]
    encode_s: float
    """Wall seconds the encode took (for the realtime factor)."""

    @property
    def bandwidth(self) -> int:
        """Peak bits a second over its segments (what HLS's BANDWIDTH means)."""
        return max(round(len(s.data) * 8 / max(s.duration_s, 0.001)) for s in self.segments)

    @property
    def average_bandwidth(self) -> int:
        total = sum(s.duration_s for s in self.segments)
        return round(sum(len(s.data) for s in self.segments) * 8 / max(total, 0.001))


def _open(data: bytes) -> av.container.InputContainer:
    try:
        return av.open(io.BytesIO(data), "r")
    except (av.error.FFmpegError, ValueError) as exc:
        raise UnrenderableSource(f"the source is not a video FFmpeg can read: {exc}") from None


def probe(data: bytes, *, max_s: float, max_pixels: int) -> Probe:
    """What the source is; UnrenderableSource when it has no video, is longer than
    ``max_s`` or larger than ``max_pixels`` a frame."""
    with _open(data) as container:
        if not container.streams.video:
            raise UnrenderableSource("the source has no video stream")
        stream = container.streams.video[0]
        width, height = stream.codec_context.width, stream.codec_context.height
        if not width or not height:
            raise UnrenderableSource("the source's video stream has no frame size")
        if width * height > max_pixels:
            raise UnrenderableSource(f"the source's frames are {width}x{height}, over the {max_pixels} pixels a "
                                     f"job decodes (transformer.max_pixels)")
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / av.time_base
        else:
            duration = 0.0
        if duration > max_s:
            raise UnrenderableSource(f"the source runs {duration:.1f} s, over the {max_s:.0f} s a job transcodes "
                                     f"(transformer.max_video_s)")
        rate = stream.average_rate or stream.guessed_rate or Fraction(30)
        turn = 0
        try:
            first = next(container.decode(stream), None)
        except av.error.FFmpegError as exc:
            raise UnrenderableSource(f"the source's first frame cannot be decoded: {exc}") from None
        if first is not None:
            turn = turn_of(first)
        if turn in (90, 270):
            width, height = height, width
        return Probe(width, height, duration, Fraction(rate), bool(container.streams.audio), turn)


def ladder(source: Probe, heights: tuple[int, ...]) -> list[Rung]:
    """The rungs made of ``source``: each configured height not above it, lowest first."""
    chosen = sorted(h for h in heights if h <= source.height) or [source.height - source.height % 2]
    rungs = []
    for i, height in enumerate(chosen, 1):
        width = round(source.width * height / source.height / 2) * 2
        video_bps, audio_bps = _bitrates(height)
        rungs.append(Rung(i, max(2, width), max(2, height), video_bps, audio_bps))
    return rungs


def _bitrates(height: int) -> tuple[int, int]:
    if height in BITRATES:
        return BITRATES[height]
    below = max((h for h in BITRATES if h < height), default=min(BITRATES))
    video, audio = BITRATES[below]
    return round(video * height / below), audio


def encode_rung(data: bytes, source: Probe, rung: Rung, workdir: Path, *, segment_s: float,
                preset: str) -> EncodedRung:
    """The rung's HLS segments (CPU-bound, seconds to minutes: run it in a thread)."""
    import time

    began = time.perf_counter()
    out_dir = workdir / f"rung{rung.index}"
    out_dir.mkdir(parents=True, exist_ok=True)
    playlist = out_dir / "index.m3u8"
    gop = max(1, round(source.fps * Fraction(segment_s)))
    try:
        with _open(data) as src, av.open(str(playlist), "w", format="hls", options={
                "hls_time": f"{segment_s:g}", "hls_playlist_type": "vod", "hls_list_size": "0",
                "hls_segment_filename": str(out_dir / "%05d.ts")}) as out:
            video = out.add_stream("libx264", rate=source.fps)
            video.width, video.height, video.pix_fmt = rung.width, rung.height, "yuv420p"
            video.bit_rate = rung.video_bps
            # A keyframe every segment exactly, and nowhere else: segments of every rung
            # start at the same instants.
            video.options = {"preset": preset, "g": str(gop), "keyint_min": str(gop), "sc_threshold": "0",
                             "profile": "high", "maxrate": str(rung.video_bps * 3 // 2),
                             "bufsize": str(rung.video_bps * 2)}
            audio = None
            resampler = None
            if source.audio:
                audio = out.add_stream("aac", rate=AUDIO_RATE)
                audio.layout = "stereo"
                audio.bit_rate = rung.audio_bps
                resampler = av.AudioResampler(format="fltp", layout="stereo", rate=AUDIO_RATE, frame_size=1024)
            streams = [src.streams.video[0]] + ([src.streams.audio[0]] if audio is not None else [])
            upright = _Upright(src.streams.video[0], source.turn)
            for frame in src.decode(*streams):
                if isinstance(frame, av.VideoFrame):
                    turned = upright(frame)
                    scaled = turned.reformat(width=rung.width, height=rung.height, format="yuv420p")
                    scaled.pts, scaled.time_base = frame.pts, frame.time_base
                    out.mux(video.encode(scaled))
                elif isinstance(frame, av.AudioFrame) and audio is not None and resampler is not None:
                    for chunk in resampler.resample(frame):
                        out.mux(audio.encode(chunk))
            out.mux(video.encode(None))
            if audio is not None and resampler is not None:
                for chunk in resampler.resample(None):
                    out.mux(audio.encode(chunk))
                out.mux(audio.encode(None))
    except av.error.FFmpegError as exc:
        raise UnrenderableSource(f"the source cannot be transcoded: {exc}") from None
    segments = [Segment(n, duration, (out_dir / name).read_bytes())
                for n, (name, duration) in enumerate(_entries(playlist.read_text()))]
    if not segments:
        raise UnrenderableSource("the source has no frames to transcode")
    if len(segments) > MAX_SEGMENTS:
        raise UnrenderableSource(f"the source makes {len(segments)} segments, over the {MAX_SEGMENTS} a rung holds")
    for entry in os.scandir(out_dir):
        os.unlink(entry.path)
    out_dir.rmdir()
    return EncodedRung(rung, segments, time.perf_counter() - began)


_EXTINF = re.compile(r"#EXTINF:([0-9.]+),")


def _entries(playlist: str) -> list[tuple[str, float]]:
    """(segment file name, duration) of each entry of the muxer's playlist."""
    out, duration = [], None
    for line in playlist.splitlines():
        line = line.strip()
        match = _EXTINF.match(line)
        if match:
            duration = float(match.group(1))
        elif line and not line.startswith("#") and duration is not None:
            out.append((os.path.basename(line), duration))
            duration = None
    return out


def rung_playlist(encoded: EncodedRung, urls: list[str], segment_s: float) -> str:
    """The rung's media playlist, its segments named by their photo URLs."""
    target = max(round(max(s.duration_s for s in encoded.segments)), round(segment_s))
    lines = ["#EXTM3U", "#EXT-X-VERSION:3", f"#EXT-X-TARGETDURATION:{target}", "#EXT-X-MEDIA-SEQUENCE:0",
             "#EXT-X-PLAYLIST-TYPE:VOD", "#EXT-X-INDEPENDENT-SEGMENTS"]
    for segment, url in zip(encoded.segments, urls, strict=True):
        lines += [f"#EXTINF:{segment.duration_s:.6f},", url]
    lines.append("#EXT-X-ENDLIST")
    return "\n".join(lines) + "\n"


def master_playlist(rungs: list[tuple[EncodedRung, str]]) -> str:
    """The master playlist of the rungs (each with its playlist's URL), lowest first."""
    lines = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-INDEPENDENT-SEGMENTS"]
    for encoded, url in rungs:
        r = encoded.rung
        info = (f"#EXT-X-STREAM-INF:BANDWIDTH={encoded.bandwidth},AVERAGE-BANDWIDTH={encoded.average_bandwidth},"
                f"RESOLUTION={r.width}x{r.height},CODECS={CODECS}")
        lines += [info, url]
    return "\n".join(lines) + "\n"


def poster(data: bytes, *, max_width: int, quality: int) -> tuple[bytes, int, int]:
    """A JPEG of the first frame at or after one second in (or the first frame of a
    shorter video), upright, no wider than ``max_width``."""
    try:
        with _open(data) as src:
            stream = src.streams.video[0]
            chosen = None
            for frame in src.decode(stream):
                chosen = frame
                if frame.time is not None and frame.time >= 1.0:
                    break
            if chosen is None:
                raise UnrenderableSource("the source has no frames")
            image: Image.Image = chosen.to_image()
            turn = turn_of(chosen)
            if turn:
                image = image.transpose({90: Image.Transpose.ROTATE_270, 180: Image.Transpose.ROTATE_180,
                                         270: Image.Transpose.ROTATE_90}[turn])
    except av.error.FFmpegError as exc:
        raise UnrenderableSource(f"the source cannot be decoded: {exc}") from None
    if image.width > max_width:
        image = image.resize((max_width, max(2, round(image.height * max_width / image.width))),
                             Image.Resampling.LANCZOS)
    out = io.BytesIO()
    image.convert("RGB").save(out, "JPEG", quality=quality, optimize=True)
    return out.getvalue(), image.width, image.height
