"""The media types trenchcoat stores, each with a one-byte code and a URL extension.

A needle carries its type's code in its header (``trenchcoat.needle``), so a read learns the
Content-Type from the Store together with the bytes, and the photo URL ends in the type's
extension (``/1/3/3,<photo>.jpg``: CDNs and browsers like to see one). Nothing on the read
path looks the type up anywhere else.

Codes are part of the on-disk format: never renumber one, only add. Code 0 is what a
needle written before types existed holds, and what ``application/octet-stream`` (bytes
of no declared type) is stored as; its URLs have no extension.
"""

from __future__ import annotations

from dataclasses import dataclass

from trenchcoat.errors import InvalidArgument


@dataclass(frozen=True, slots=True)
class MediaType:
    code: int
    """The byte stored in the needle header."""
    mime: str
    """The Content-Type served."""
    extension: str
    """Ending of the photo URL, without the dot ("" for none)."""


OCTET_STREAM = MediaType(0, "application/octet-stream", "")

TYPES: tuple[MediaType, ...] = (
    OCTET_STREAM,
    MediaType(1, "image/jpeg", "jpg"),
    MediaType(2, "image/png", "png"),
    MediaType(3, "image/gif", "gif"),
    MediaType(4, "image/webp", "webp"),
    MediaType(5, "image/avif", "avif"),
    MediaType(6, "image/heic", "heic"),
    MediaType(7, "image/heif", "heif"),
    MediaType(8, "video/mp4", "mp4"),
    MediaType(9, "video/quicktime", "mov"),
    MediaType(10, "video/webm", "webm"),
    MediaType(11, "video/mp2t", "ts"),
    MediaType(12, "application/vnd.apple.mpegurl", "m3u8"),
    MediaType(13, "audio/mp4", "m4a"),
)

BY_CODE = {t.code: t for t in TYPES}
BY_MIME = {t.mime: t for t in TYPES}
BY_EXTENSION = {t.extension: t for t in TYPES}
#: Names clients send for a type listed above.
ALIASES = {"image/jpg": "image/jpeg", "image/pjpeg": "image/jpeg", "audio/x-m4a": "audio/mp4",
           "application/x-mpegurl": "application/vnd.apple.mpegurl"}

assert len(BY_CODE) == len(BY_MIME) == len(BY_EXTENSION) == len(TYPES)
assert all(0 <= t.code <= 255 for t in TYPES)


class UnsupportedMediaType(InvalidArgument):
    """A content type trenchcoat does not store."""


def of_mime(content_type: str) -> MediaType:
    """The type a Content-Type names (parameters and case ignored); raises
    UnsupportedMediaType naming the accepted types otherwise."""
    mime = content_type.split(";", 1)[0].strip().lower()
    found = BY_MIME.get(ALIASES.get(mime, mime))
    if found is None:
        raise UnsupportedMediaType(
            f"content_type {content_type[:80]!r} is not a type trenchcoat stores; "
            f"use one of {', '.join(t.mime for t in TYPES)}")
    return found


def of_code(code: int) -> MediaType:
    """The type of a stored code; a code this version does not know reads as bytes."""
    return BY_CODE.get(code, OCTET_STREAM)
