"""Generated media for the demo, the tests and the benchmarks: made here, so nothing is
downloaded and every run sees the same bytes."""

from __future__ import annotations

import io
from fractions import Fraction

import av
import numpy as np


def video(width: int = 854, height: int = 480, seconds: float = 4.0, fps: int = 24, *, audio: bool = True,
          rotation: int = 0) -> bytes:
    """An H.264/AAC MP4: a moving bar over a colour that shifts each frame (every frame
    differs, as in film), a white square in the top left corner (which way is up), a 440 Hz
    tone. ``rotation``: its display matrix's (degrees counterclockwise; a phone's portrait
    video is stored landscape with -90)."""
    out = io.BytesIO()
    with av.open(out, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast"}
        if rotation:
            stream.set_display_rotation(rotation)
        sound = container.add_stream("aac", rate=48_000) if audio else None  # every stream before the first packet
        if sound is not None:
            sound.layout = "stereo"
        frames = round(seconds * fps)
        for i in range(frames):
            image = np.zeros((height, width, 3), np.uint8)
            image[:, :, 0] = (i * 5) % 256
            image[:, :, 2] = (i * 3) % 256
            x = (i * width // max(frames, 1)) % width
            image[height // 3: 2 * height // 3, x: x + max(2, width // 16), 1] = 255
            image[: height // 8, : height // 8] = 255
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
        if sound is not None:
            samples = round(seconds * 48_000)
            tone = (0.2 * np.sin(2 * np.pi * 440 * np.arange(samples) / 48_000)).astype(np.float32)
            for start in range(0, samples - 1023, 1024):
                chunk = av.AudioFrame.from_ndarray(np.stack([tone[start:start + 1024]] * 2), format="fltp",
                                                   layout="stereo")
                chunk.sample_rate, chunk.pts = 48_000, start
                container.mux(sound.encode(chunk))
            container.mux(sound.encode(None))
    return out.getvalue()
