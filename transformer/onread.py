"""Resize and crop on read, the transformer's side (``Transform``): a source image fitted
into one of the allowed boxes (``transformer.on_read_sizes``; anything else is refused,
so no caller can make it burn CPU on sizes nobody configured), decoded once with a draft
at the scale the box needs, oriented, encoded as JPEG or WebP, in a thread of its own pool
so jobs and reads do not queue behind each other's CPU."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from transformer import images, metrics
from transformer.errors import UnrenderableSource
from trenchcoat.transforms import TransformSpec, check_allowed


class OnRead:
    def __init__(self, allowed: tuple[str, ...], *, max_pixels: int, max_source_bytes: int, quality: int,
                 threads: int) -> None:
        self.allowed = allowed
        self._max_pixels = max_pixels
        self._max_source_bytes = max_source_bytes
        self._quality = quality
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="transform")

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def transform(self, data: bytes, spec: TransformSpec) -> images.Rendered:
        check_allowed(spec, self.allowed)
        if not data:
            raise UnrenderableSource("no source bytes to transform")
        if len(data) > self._max_source_bytes:
            raise UnrenderableSource(f"the source is {len(data)} bytes, over the {self._max_source_bytes} a "
                                     f"transform reads (transformer.max_source_bytes)")
        loop = asyncio.get_running_loop()
        with metrics.RENDER_SECONDS.labels("on_read").time():
            return await loop.run_in_executor(self._pool, lambda: images.transform(
                data, spec.width, spec.height, cover=spec.cover, content_type=spec.content_type,
                max_pixels=self._max_pixels, quality=self._quality))
