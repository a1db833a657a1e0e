"""Photo URLs: the read path written as a path.

::

    http://<cdn>/<cache_id>/<machine_id>/<logical_volume>,<photo>

    <photo> = <key: 16 lowercase hex><cookie: 8 lowercase hex>[_<alternate key: decimal>]

    e.g.  /3/17/42,0a1b2c3d4e5f60718badf00d_3
          cache 3, store machine 17, logical volume 42, needle key 0x0a1b2c3d4e5f6071,
          cookie 0x8badf00d, alternate key 3 (a rendition; omitted for the original)

Each layer strips its own component and forwards the rest: the CDN forwards the whole
path to the Cache, the Cache strips ``<cache_id>`` and on a miss asks the store named by
``<machine_id>`` for ``<logical_volume>,<photo>``. Every id is written in exactly one way
(no leading zeros, fixed-width hex), so one photo has one URL and one CDN cache entry.

Anything malformed raises ``MalformedURL`` (an ``InvalidArgument``: HTTP 400, gRPC
INVALID_ARGUMENT) and nothing else.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from trenchcoat.errors import InvalidArgument

KEY_HEX_DIGITS = 16
COOKIE_HEX_DIGITS = 8
MAX_U32 = (1 << 32) - 1
MAX_U64 = (1 << 64) - 1
ALTERNATE_SEPARATOR = "_"
VOLUME_SEPARATOR = ","

_DECIMAL = re.compile(r"0|[1-9][0-9]{0,9}")
_PHOTO = re.compile(
    rf"(?P<key>[0-9a-f]{{{KEY_HEX_DIGITS}}})(?P<cookie>[0-9a-f]{{{COOKIE_HEX_DIGITS}}})"
    rf"(?:{ALTERNATE_SEPARATOR}(?P<alt>[1-9][0-9]{{0,9}}))?"
)


class MalformedURL(InvalidArgument):
    """Raised when a photo URL or one of its components does not parse."""


@dataclass(frozen=True, slots=True)
class Photo:
    """One needle named by a URL: ``<logical_volume>,<photo>``."""

    logical_volume: int
    """Logical volume holding the needle."""
    key: int
    """Needle key: the media_id."""
    cookie: int
    """Random 32 bits chosen at upload; must match the stored cookie."""
    alternate_key: int = 0
    """Rendition; 0 is the original upload."""

    def __post_init__(self) -> None:
        _check_u("logical_volume", self.logical_volume, MAX_U32)
        _check_u("key", self.key, MAX_U64)
        _check_u("cookie", self.cookie, MAX_U32)
        _check_u("alternate_key", self.alternate_key, MAX_U32)

    def component(self) -> str:
        """The ``<logical_volume>,<photo>`` path component."""
        alt = f"{ALTERNATE_SEPARATOR}{self.alternate_key}" if self.alternate_key else ""
        return (
            f"{self.logical_volume}{VOLUME_SEPARATOR}"
            f"{self.key:0{KEY_HEX_DIGITS}x}{self.cookie:0{COOKIE_HEX_DIGITS}x}{alt}"
        )


@dataclass(frozen=True, slots=True)
class PhotoPath:
    """A whole photo path: ``/<cache_id>/<machine_id>/<logical_volume>,<photo>``."""

    cache_id: int
    """Cache machine that should serve the photo."""
    machine_id: int
    """Store machine the Cache reads from on a miss."""
    photo: Photo
    """The needle."""

    def __post_init__(self) -> None:
        _check_u("cache_id", self.cache_id, MAX_U32)
        _check_u("machine_id", self.machine_id, MAX_U32)

    def path(self) -> str:
        return f"/{self.cache_id}/{self.machine_id}/{self.photo.component()}"

    def url(self, cdn_base: str) -> str:
        """The full URL below a CDN base such as ``http://cdn.example:8080``."""
        return cdn_base.rstrip("/") + self.path()


def parse_path(path: str) -> PhotoPath:
    """Parses ``/<cache_id>/<machine_id>/<logical_volume>,<photo>``."""
    cache_id, rest = strip_cache(path)
    machine_id, photo = strip_machine(rest)
    return PhotoPath(cache_id, machine_id, photo)


def strip_cache(path: str) -> tuple[int, str]:
    """The Cache's step: returns (cache_id, the rest to forward)."""
    return _strip_head(path, "cache_id")


def strip_machine(rest: str) -> tuple[int, Photo]:
    """The step after the Cache: returns (machine_id, the needle to read from it)."""
    machine_id, component = _strip_head(rest, "machine_id")
    return machine_id, parse_photo(component.removeprefix("/"))


def parse_photo(component: str) -> Photo:
    """Parses ``<logical_volume>,<photo>``."""
    _check_str(component)
    volume, sep, photo = component.partition(VOLUME_SEPARATOR)
    if not sep:
        raise MalformedURL(
            f"expected '<logical_volume>,<photo>', got {_show(component)}: no ','"
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
    return Photo(logical_volume, int(match["key"], 16), int(match["cookie"], 16), alt)


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


def _check_u(name: str, value: int, maximum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= maximum:
        raise MalformedURL(f"{name} must be an integer in [0, {maximum}], got {value!r}")


def _show(text: str, limit: int = 80) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")
