"""Photo URLs: the read path written as a path.

::

    http://<cdn>/<cache_id>/<machine_id>/<logical_volume>,<photo>[.<extension>]

    <photo> = <key: 16 lowercase hex><cookie: 8 lowercase hex>[_<alternate key: decimal>]

    e.g.  /3/17/42,0a1b2c3d4e5f60718badf00d_3.jpg
          cache 3, store machine 17, logical volume 42, needle key 0x0a1b2c3d4e5f6071,
          cookie 0x8badf00d, alternate key 3 (a rendition; omitted for the original), a JPEG

Each layer strips its own component and forwards the rest: the CDN forwards the whole
path to the Cache, the Cache strips ``<cache_id>`` and on a miss asks the store named by
``<machine_id>`` for ``<logical_volume>,<photo>``. Every id is written in exactly one way
(no leading zeros, fixed-width hex), and the extension is the one of the type stored with
the needle (``trenchcoat.media_types``; none for untyped bytes), so one photo has one URL
and one CDN cache entry: the Cache answers 404 for a URL whose extension is not the
photo's.

Anything malformed raises ``MalformedURL`` (an ``InvalidArgument``: HTTP 400, gRPC
INVALID_ARGUMENT) and nothing else.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from trenchcoat.errors import InvalidArgument
from trenchcoat.needle_ref import MAX_U32, NeedleRef, NeedleRefOutOfRange, check_u

KEY_HEX_DIGITS = 16
COOKIE_HEX_DIGITS = 8
ALTERNATE_SEPARATOR = "_"
VOLUME_SEPARATOR = ","

_DECIMAL = re.compile(r"0|[1-9][0-9]{0,9}")
_PHOTO = re.compile(
    rf"(?P<key>[0-9a-f]{{{KEY_HEX_DIGITS}}})(?P<cookie>[0-9a-f]{{{COOKIE_HEX_DIGITS}}})"
    rf"(?:{ALTERNATE_SEPARATOR}(?P<alt>[1-9][0-9]{{0,9}}))?"
)
_EXTENSION = re.compile(r"[a-z0-9]{1,8}")


class MalformedURL(InvalidArgument):
    """Raised when a photo URL or one of its components does not parse."""


def component(needle: NeedleRef) -> str:
    """The ``<logical_volume>,<photo>`` path component naming ``needle``."""
    alt = f"{ALTERNATE_SEPARATOR}{needle.alternate_key}" if needle.alternate_key else ""
    return (
        f"{needle.logical_volume}{VOLUME_SEPARATOR}"
        f"{needle.key:0{KEY_HEX_DIGITS}x}{needle.cookie:0{COOKIE_HEX_DIGITS}x}{alt}"
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class PhotoPath:
    """A whole photo path: ``/<cache_id>/<machine_id>/<logical_volume>,<photo>``."""

    cache_id: int
    """Cache machine that should serve the photo."""
    machine_id: int
    """Store machine the Cache reads from on a miss."""
    needle: NeedleRef
    """The needle."""
    extension: str = ""
    """The stored type's URL extension, without the dot ("" for none)."""

    def __post_init__(self) -> None:
        try:
            check_u("cache_id", self.cache_id, MAX_U32)
            check_u("machine_id", self.machine_id, MAX_U32)
        except NeedleRefOutOfRange as exc:
            raise MalformedURL(str(exc)) from None
        if self.extension and not _EXTENSION.fullmatch(self.extension):
            raise MalformedURL(f"extension must be 1 to 8 lowercase letters or digits, got {_show(self.extension)}")

    def path(self) -> str:
        ext = f".{self.extension}" if self.extension else ""
        return f"/{self.cache_id}/{self.machine_id}/{component(self.needle)}{ext}"

    def url(self, cdn_base: str) -> str:
        """The full URL below a CDN base such as ``http://cdn.example:8080``."""
        return cdn_base.rstrip("/") + self.path()


def parse_path(path: str) -> PhotoPath:
    """Parses ``/<cache_id>/<machine_id>/<logical_volume>,<photo>[.<extension>]``."""
    cache_id, rest = strip_cache(path)
    machine_id, tail = _strip_head(rest, "machine_id")
    photo, extension = _split_extension(tail.removeprefix("/"))
    return PhotoPath(cache_id=cache_id, machine_id=machine_id, needle=parse_photo(photo), extension=extension)


def strip_cache(path: str) -> tuple[int, str]:
    """The Cache's step: returns (cache_id, the rest to forward)."""
    return _strip_head(path, "cache_id")


def strip_machine(rest: str) -> tuple[int, NeedleRef]:
    """The step after the Cache: returns (machine_id, the needle to read from it); the
    store reads by needle alone, so an extension is dropped here."""
    machine_id, tail = _strip_head(rest, "machine_id")
    return machine_id, parse_photo(_split_extension(tail.removeprefix("/"))[0])


def parse_component(text: str) -> NeedleRef:
    """Parses ``<logical_volume>,<photo>[.<extension>]`` (what a store is asked for over
    HTTP); the extension is checked for form and dropped."""
    return parse_photo(_split_extension(text)[0])


def _split_extension(text: str) -> tuple[str, str]:
    photo, dot, extension = text.partition(".")
    if dot and not _EXTENSION.fullmatch(extension):
        raise MalformedURL(f"extension must be 1 to 8 lowercase letters or digits, got {_show(extension)}")
    return photo, extension


def parse_photo(text: str) -> NeedleRef:
    """Parses ``<logical_volume>,<photo>``."""
    _check_str(text)
    volume, sep, photo = text.partition(VOLUME_SEPARATOR)
    if not sep:
        raise MalformedURL(
            f"expected '<logical_volume>,<photo>', got {_show(text)}: no ','"
        )
    logical_volume = _parse_decimal(volume, "logical_volume")
    match = _PHOTO.fullmatch(photo)
    if match is None:
        raise MalformedURL(
            f"photo {_show(photo)} is not <16 lowercase hex key><8 lowercase hex cookie>"
            f"[_<alternate key>]"
        )
    alt = int(match["alt"]) if match["alt"] else 0
    if alt > MAX_U32:
        raise MalformedURL(f"alternate key {alt} exceeds {MAX_U32}")
    return NeedleRef(logical_volume=logical_volume, key=int(match["key"], 16), alternate_key=alt,
                     cookie=int(match["cookie"], 16))


def _strip_head(path: str, name: str) -> tuple[int, str]:
    _check_str(path)
    if not path.startswith("/"):
        raise MalformedURL(f"photo path must start with '/', got {_show(path)}")
    head, sep, rest = path[1:].partition("/")
    if not sep:
        raise MalformedURL(f"photo path {_show(path)} ends after {name}; more components expected")
    return _parse_decimal(head, name), "/" + rest


def _parse_decimal(text: str, name: str) -> int:
    if not _DECIMAL.fullmatch(text):
        raise MalformedURL(f"{name} must be a decimal number without leading zeros, got {_show(text)}")
    value = int(text)
    if value > MAX_U32:
        raise MalformedURL(f"{name} {value} exceeds {MAX_U32}")
    return value


def _check_str(value: object) -> None:
    if not isinstance(value, str):
        raise MalformedURL(f"photo path must be text, got {type(value).__name__}")


def _show(text: str, limit: int = 80) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")
