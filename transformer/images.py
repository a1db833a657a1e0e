"""Image renditions (Pillow): one decode, every size made from it.

``render`` opens the source, refuses it for good (``UnrenderableSource``) when it is not
an image Pillow decodes, or has more than ``max_pixels`` pixels (checked from the header,
before any pixel is decoded: a decompression bomb never gets its buffer). It then asks a
JPEG for a ``draft``: the decoder scales by 1/2, 1/4 or 1/8 while decoding (DCT scaling),
to the smallest size still at least as large as the largest rendition needs, so a 12 MP
photo made into a 1080 px width decodes a quarter of its pixels. The EXIF orientation
(all eight) is applied to the pixels and dropped from the outputs, alpha is flattened on
white, and each rendition is resized (Lanczos) from that one decoded image. Sizes are
never upscaled: a width larger than the source's is not made, and a square thumbnail of a
smaller source is the source's short side.

The outputs are a function of the source bytes and the recipe alone (no timestamps, no
randomness), so a job that runs twice makes the same bytes twice.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

from transformer.errors import UnrenderableSource

ORIENTATION_TAG = 0x0112
"""EXIF tag holding the orientation (1..8)."""
TRANSPOSED = (5, 6, 7, 8)
"""Orientations that swap width and height."""
OUTPUT_TYPE = "image/jpeg"


@dataclass(frozen=True, slots=True)
class ImageSpec:
    """One image rendition of a recipe."""

    alternate_key: int
    px: int
    """The width (or, square, the side) in pixels."""
    square: bool = False


@dataclass(frozen=True, slots=True)
class Rendered:
    alternate_key: int
    content_type: str
    width: int
    height: int
    data: bytes


@dataclass(frozen=True, slots=True)
class SourceInfo:
    """What a source image is, as displayed (orientation applied)."""

    width: int
    height: int
    format: str
    orientation: int


def _open(data: bytes, max_pixels: int) -> Image.Image:
    try:
        image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise UnrenderableSource("the source is not an image Pillow can decode (unknown or damaged header)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise UnrenderableSource(f"the source image cannot be opened: {exc}") from None
    width, height = image.size
    if width * height > max_pixels:
        raise UnrenderableSource(f"the source image is {width}x{height} = {width * height} pixels, over the "
                                 f"{max_pixels} a job decodes (transformer.max_pixels)")
    return image


def inspect(data: bytes, *, max_pixels: int) -> SourceInfo:
    """The source's displayed size, format and orientation, from its header alone."""
    image = _open(data, max_pixels)
    orientation = _orientation(image)
    width, height = image.size
    if orientation in TRANSPOSED:
        width, height = height, width
    return SourceInfo(width, height, image.format or "", orientation)


def _orientation(image: Image.Image) -> int:
    try:
        value = image.getexif().get(ORIENTATION_TAG, 1)
    except (OSError, ValueError, SyntaxError):  # damaged EXIF: shown as stored
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def target_size(width: int, height: int, spec: ImageSpec) -> tuple[int, int] | None:
    """The (width, height) ``spec`` makes of a displayed ``width`` x ``height`` image;
    None when it would be an upscale (a width spec wider than the source)."""
    if spec.square:
        side = min(spec.px, width, height)
        return side, side
    if spec.px >= width:
        return None
    return spec.px, max(1, round(height * spec.px / width))


def _needed(width: int, height: int, targets: list[tuple[ImageSpec, tuple[int, int]]]) -> tuple[int, int]:
    """The smallest displayed size every target can be made from without upscaling."""
    need_w = need_h = 1
    for spec, (w, h) in targets:
        if spec.square:  # cover the square: the short side scales to its side
            scale = w / min(width, height)
            w, h = round(width * scale), round(height * scale)
        need_w, need_h = max(need_w, w), max(need_h, h)
    return need_w, need_h


def render(data: bytes, specs: tuple[ImageSpec, ...], *, max_pixels: int, quality: int) -> list[Rendered]:
    """Every rendition ``specs`` make of the source image ``data`` (CPU-bound: run it in a
    thread). Raises UnrenderableSource when the source can never be rendered."""
    targets: list[tuple[ImageSpec, tuple[int, int]]] = []

    def needed(width: int, height: int) -> tuple[int, int] | None:
        targets.extend((spec, size) for spec in specs if (size := target_size(width, height, spec)) is not None)
        return _needed(width, height, targets) if targets else None

    image = _decoded(data, max_pixels, needed)
    if image is None:
        return []
    return [_encode(spec.alternate_key, _resize(image, spec.square, size), OUTPUT_TYPE, quality)
            for spec, size in targets]


def transform(data: bytes, width: int, height: int, *, cover: bool, content_type: str, max_pixels: int,
              quality: int) -> Rendered:
    """The source fitted into a ``width`` x ``height`` box (0: that side is free), never
    upscaled: ``cover`` fills the box and center-crops what overflows (both sides needed),
    otherwise the whole image fits inside it. Encoded as ``content_type`` (JPEG or WebP)."""
    if content_type not in ENCODERS:
        raise ValueError(f"cannot encode {content_type!r}; one of {', '.join(ENCODERS)}")
    box: list[tuple[int, int]] = []

    def needed(w: int, h: int) -> tuple[int, int]:
        size = cover_size(w, h, width, height) if cover else contain_size(w, h, width, height)
        box.append(size)
        if not cover:
            return size
        scale = max(size[0] / w, size[1] / h)  # the cover before its crop
        return max(size[0], round(w * scale)), max(size[1], round(h * scale))

    image = _decoded(data, max_pixels, needed)
    assert image is not None
    return _encode(0, _resize(image, cover, box[0]), content_type, quality)


def contain_size(w: int, h: int, width: int, height: int) -> tuple[int, int]:
    """``w`` x ``h`` scaled to fit inside the box (0: free), never up."""
    scale = min(width / w if width else 1.0, height / h if height else 1.0, 1.0)
    return max(1, round(w * scale)), max(1, round(h * scale))


def cover_size(w: int, h: int, width: int, height: int) -> tuple[int, int]:
    """The box a cover of ``w`` x ``h`` fills: the box itself, or, for a source smaller than
    it, the box shrunk (its aspect kept) until the source covers it."""
    factor = min(1.0, w / width, h / height)
    return max(1, round(width * factor)), max(1, round(height * factor))


def _decoded(data: bytes, max_pixels: int,
             needed: Callable[[int, int], tuple[int, int] | None]) -> Image.Image | None:
    """The source decoded once, oriented and flattened to RGB, at no less than the size
    ``needed(displayed width, displayed height)`` says (None: nothing is needed)."""
    image = _open(data, max_pixels)
    orientation = _orientation(image)
    width, height = image.size
    if orientation in TRANSPOSED:
        width, height = height, width
    need = needed(width, height)
    if need is None:
        return None
    need_w, need_h = need
    if image.format == "JPEG":
        # draft() takes the size in stored orientation; it picks the largest DCT scale
        # (1/2, 1/4, 1/8) keeping the image at least that large.
        image.draft("RGB", (need_h, need_w) if orientation in TRANSPOSED else (need_w, need_h))
    try:
        image.load()
        image = ImageOps.exif_transpose(image)
        return _flatten(image)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise UnrenderableSource(f"the source image cannot be decoded: {exc}") from None


def _flatten(image: Image.Image) -> Image.Image:
    """RGB: alpha composited on white, palettes and grey expanded."""
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB") if image.mode != "RGB" else image


def _resize(image: Image.Image, square: bool, size: tuple[int, int]) -> Image.Image:
    """``image`` at ``size``: center-cropped to its aspect first (``square``: a cover),
    or scaled as it is."""
    if square:
        return ImageOps.fit(image, size, Image.Resampling.LANCZOS, centering=(0.5, 0.5))
    if image.size == size:
        return image
    return image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)


ENCODERS = {"image/jpeg": "JPEG", "image/webp": "WEBP"}


def _encode(alternate_key: int, image: Image.Image, content_type: str, quality: int) -> Rendered:
    out = io.BytesIO()
    if content_type == "image/webp":
        image.save(out, "WEBP", quality=quality, method=4)
    else:
        image.save(out, "JPEG", quality=quality, optimize=True)
    return Rendered(alternate_key, content_type, image.width, image.height, out.getvalue())
