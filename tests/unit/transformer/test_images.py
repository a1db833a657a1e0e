"""transformer/images.py: sizes, orientation, draft decoding, and sources that never render."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from transformer import images
from transformer.errors import UnrenderableSource
from transformer.images import ImageSpec

SPECS = (ImageSpec(1, 150, square=True), ImageSpec(2, 320), ImageSpec(3, 640), ImageSpec(4, 1080))
LIMITS = {"max_pixels": 50_000_000, "quality": 85}


def jpeg(width: int, height: int, *, orientation: int = 1, color=(200, 30, 30)) -> bytes:
    """A JPEG whose left half is red and right half blue (as stored), with an EXIF orientation."""
    image = Image.new("RGB", (width, height), color)
    image.paste((30, 30, 200), (width // 2, 0, width, height))
    exif = Image.Exif()
    if orientation != 1:
        exif[images.ORIENTATION_TAG] = orientation
    out = io.BytesIO()
    image.save(out, "JPEG", quality=95, exif=exif.tobytes())
    return out.getvalue()


def decoded(r: images.Rendered) -> Image.Image:
    image = Image.open(io.BytesIO(r.data))
    image.load()
    return image


def rgb(image: Image.Image, xy: tuple[int, int]) -> tuple[int, ...]:
    """The (red, green, blue) of one pixel of an RGB image."""
    pixel = image.getpixel(xy)
    assert isinstance(pixel, tuple), (image.mode, pixel)
    return pixel


def test_every_size_is_made_from_a_large_source_with_its_aspect_ratio():
    out = images.render(jpeg(2000, 1500), SPECS, **LIMITS)
    assert [(r.alternate_key, r.width, r.height) for r in out] == [(1, 150, 150), (2, 320, 240), (3, 640, 480),
                                                                  (4, 1080, 810)]
    for r in out:
        image = decoded(r)
        assert (image.format, image.size, r.content_type) == ("JPEG", (r.width, r.height), "image/jpeg")
        assert images.ORIENTATION_TAG not in image.getexif()


def test_sizes_are_never_upscaled():
    out = images.render(jpeg(500, 100), SPECS, **LIMITS)
    assert [(r.alternate_key, r.width, r.height) for r in out] == [(1, 100, 100), (2, 320, 64)]
    assert images.render(jpeg(320, 200), (ImageSpec(2, 320),), **LIMITS) == []


# Where the red (stored left) half of a 400x200 image ends up once each orientation is
# applied, as (the displayed size, a point that must be red, a point that must be blue).
ORIENTED = {
    1: ((400, 200), (50, 100), (350, 100)),    # as stored
    2: ((400, 200), (350, 100), (50, 100)),    # mirrored left-right
    3: ((400, 200), (350, 100), (50, 100)),    # rotated 180
    4: ((400, 200), (50, 100), (350, 100)),    # mirrored top-bottom
    5: ((200, 400), (100, 50), (100, 350)),    # transposed
    6: ((200, 400), (100, 50), (100, 350)),    # rotated 90 clockwise to display
    7: ((200, 400), (100, 350), (100, 50)),    # transversed
    8: ((200, 400), (100, 350), (100, 50)),    # rotated 90 counter-clockwise to display
}


@pytest.mark.parametrize("orientation", sorted(ORIENTED))
def test_each_of_the_eight_exif_orientations_is_applied(orientation):
    size, red_at, blue_at = ORIENTED[orientation]
    source = jpeg(400, 200, orientation=orientation)
    info = images.inspect(source, max_pixels=10**6)
    assert ((info.width, info.height), info.orientation) == (size, orientation)
    # A width spec at the displayed width's half: the output keeps the displayed aspect ratio.
    [r] = images.render(source, (ImageSpec(2, size[0] // 2),), **LIMITS)
    image = decoded(r)
    assert image.size == (size[0] // 2, size[1] // 2)
    red = rgb(image, (red_at[0] // 2, red_at[1] // 2))
    blue = rgb(image, (blue_at[0] // 2, blue_at[1] // 2))
    assert red[0] > 150 and red[2] < 100, (orientation, red)
    assert blue[2] > 150 and blue[0] < 100, (orientation, blue)


def test_a_jpeg_is_decoded_at_the_smallest_dct_scale_the_largest_size_needs(monkeypatch):
    seen = []
    real = images._flatten

    def spy(image):
        seen.append(image.size)
        return real(image)

    monkeypatch.setattr(images, "_flatten", spy)
    images.render(jpeg(4000, 3000), (ImageSpec(2, 320), ImageSpec(3, 640)), **LIMITS)
    assert seen == [(1000, 750)]  # 1/4 scale: 640 needs no more, 1/8 (500) would be too small
    seen.clear()
    images.render(jpeg(3000, 4000, orientation=6), (ImageSpec(3, 640),), **LIMITS)
    assert seen == [(1000, 750)]  # stored 3000x4000, displayed 4000x3000: drafted at 1/4 all the same


def test_the_same_source_renders_the_same_bytes_every_time():
    source = jpeg(1200, 900, orientation=8)
    first = images.render(source, SPECS, **LIMITS)
    assert first == images.render(source, SPECS, **LIMITS)


def test_png_with_alpha_is_flattened_on_white():
    image = Image.new("RGBA", (400, 400), (0, 0, 0, 0))
    out = io.BytesIO()
    image.save(out, "PNG")
    [r] = images.render(out.getvalue(), (ImageSpec(2, 200),), **LIMITS)
    assert decoded(r).getpixel((100, 100)) == pytest.approx((255, 255, 255), abs=2)


@pytest.mark.parametrize(("source", "reason"), [
    (b"not an image at all", "not an image Pillow can decode"),
    (jpeg(800, 600)[:2000], "cannot be decoded"),  # truncated: the header parses, the pixels do not
])
def test_sources_that_can_never_render_are_unrenderable_with_the_decoders_reason(source, reason):
    with pytest.raises(UnrenderableSource, match=reason):
        images.render(source, SPECS, **LIMITS)


def test_a_decompression_bomb_is_refused_from_its_header_before_decoding(monkeypatch):
    source = jpeg(4000, 3000)
    decoded_any = []

    def load(self):
        decoded_any.append(self)

    monkeypatch.setattr(Image.Image, "load", load)
    with pytest.raises(UnrenderableSource, match=r"4000x3000 = 12000000 pixels, over the 10000000"):
        images.render(source, SPECS, max_pixels=10_000_000, quality=85)
    assert decoded_any == []


@pytest.mark.parametrize(("box", "cover", "want"), [
    ((320, 0), False, (320, 240)),     # width given, height free
    ((0, 300), False, (400, 300)),     # height given, width free
    ((320, 320), False, (320, 240)),   # inside the box
    ((320, 320), True, (320, 320)),    # fills it, cropped
    ((4000, 0), False, (2000, 1500)),  # never upscaled
    ((3000, 3000), True, (1500, 1500)),  # a cover larger than the source: the box shrunk to the source
])
def test_a_transform_fits_or_covers_its_box_and_never_upscales(box, cover, want):
    out = images.transform(jpeg(2000, 1500), *box, cover=cover, content_type="image/jpeg", **LIMITS)
    assert (out.width, out.height) == want and decoded(out).size == want


def test_a_transform_encodes_webp_and_applies_the_orientation():
    out = images.transform(jpeg(400, 200, orientation=6), 100, 0, cover=False, content_type="image/webp", **LIMITS)
    image = decoded(out)
    assert (out.content_type, image.format, image.size) == ("image/webp", "WEBP", (100, 200))
