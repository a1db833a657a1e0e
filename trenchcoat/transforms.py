"""Resize and crop on read: the spec a photo URL carries in its query, and the allow-list
that keeps URLs from being used to burn CPU.

``GET /<cache_id>/<machine_id>/<lv>,<photo>.<ext>?w=320&h=320&fit=cover&fmt=webp`` asks
for the photo fitted into a 320x320 box (``w`` or ``h`` 0 or absent: that side is free),
``fit=contain`` (the default: the whole photo inside the box) or ``cover`` (the box filled,
the overflow center-cropped; both sides needed), encoded as ``fmt`` ``jpeg`` (the default)
or ``webp``. Only boxes in ``transformer.on_read_sizes`` are served (``WxH`` for contain,
``WxH:cover``); anything else is 400 naming them. The CDN caches each URL, query and all,
like any photo.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from trenchcoat.errors import InvalidArgument

FORMATS = {"jpeg": "image/jpeg", "webp": "image/webp"}
FITS = ("contain", "cover")
PARAMS = ("w", "h", "fit", "fmt")
MAX_SIDE = 8192


class BadTransform(InvalidArgument):
    """Raised when a photo URL's transform is malformed or not in the allow-list."""


@dataclass(frozen=True, slots=True)
class TransformSpec:
    width: int
    """Box width in px (0: free)."""
    height: int
    """Box height in px (0: free)."""
    cover: bool
    """Fill the box and crop (True), or fit inside it (False)."""
    content_type: str
    """Output type: image/jpeg or image/webp."""

    @property
    def box(self) -> str:
        """How the allow-list names it: ``WxH`` or ``WxH:cover``."""
        return f"{self.width}x{self.height}" + (":cover" if self.cover else "")

    def __str__(self) -> str:
        fmt = next(k for k, v in FORMATS.items() if v == self.content_type)
        return f"{self.box}.{fmt}"


def parse_query(query: Mapping[str, str]) -> TransformSpec | None:
    """The transform a URL's query asks for; None when it asks for none."""
    if not any(k in query for k in PARAMS):
        return None
    unknown = sorted(set(query) - set(PARAMS))
    if unknown:
        raise BadTransform(f"unknown photo URL parameters {unknown}; a transform takes {', '.join(PARAMS)}")
    width, height = _side(query, "w"), _side(query, "h")
    fit = query.get("fit", "contain")
    if fit not in FITS:
        raise BadTransform(f"fit must be one of {', '.join(FITS)}, got {fit[:20]!r}")
    fmt = query.get("fmt", "jpeg")
    if fmt not in FORMATS:
        raise BadTransform(f"fmt must be one of {', '.join(FORMATS)}, got {fmt[:20]!r}")
    if not width and not height:
        raise BadTransform("a transform needs w or h (or both)")
    if fit == "cover" and not (width and height):
        raise BadTransform("fit=cover needs both w and h")
    return TransformSpec(width, height, fit == "cover", FORMATS[fmt])


def _side(query: Mapping[str, str], key: str) -> int:
    text = query.get(key, "0")
    if not text.isdigit() or len(text) > 5 or int(text) > MAX_SIDE:
        raise BadTransform(f"{key} must be a whole number of px in 0..{MAX_SIDE}, got {text[:20]!r}")
    return int(text)


def check_allowed(spec: TransformSpec, allowed: Iterable[str]) -> None:
    """Raises BadTransform unless the spec's box is in the allow-list."""
    allowed = tuple(allowed)
    if spec.box not in allowed:
        raise BadTransform(f"{spec.box} is not a size served on read; allowed: "
                           f"{', '.join(allowed) or 'none (transformer.on_read_sizes is empty)'}")


def parse_box(text: str) -> tuple[int, int, bool]:
    """(width, height, cover) of an allow-list entry ``WxH[:cover]``; ValueError if malformed."""
    box, _, mode = text.partition(":")
    w, _, h = box.partition("x")
    if mode not in ("", "cover") or not w.isdigit() or not h.isdigit():
        raise ValueError(f"{text!r} is not WxH or WxH:cover")
    width, height = int(w), int(h)
    if not (width or height) or width > MAX_SIDE or height > MAX_SIDE or (mode and not (width and height)):
        raise ValueError(f"{text!r}: sides in 0..{MAX_SIDE}, not both 0; cover needs both")
    return width, height, mode == "cover"
