"""The one name of a needle: (logical volume, key, alternate key, cookie).

A photo URL carries it (``trenchcoat.urls``), the cache the URL names asks a store for
it; a store reads, writes and deletes by it. It is built by keyword only, so the
two 32-bit fields (alternate key, cookie) can never be swapped by position.

The physical volume on every replica carries the logical volume's id (the Directory
creates them so), so the same reference addresses any replica.
"""

from __future__ import annotations

from dataclasses import dataclass

from trenchcoat.errors import NeedleRefOutOfRange

MAX_U32 = (1 << 32) - 1
MAX_U64 = (1 << 64) - 1

__all__ = ["MAX_U32", "MAX_U64", "NeedleRef", "NeedleRefOutOfRange", "check_u"]

@dataclass(frozen=True, slots=True, kw_only=True)
class NeedleRef:
    """One needle, wherever it is stored."""

    logical_volume: int
    """Logical volume holding the needle (also its physical id on every replica)."""
    key: int
    """Needle key: the media_id (64 bits)."""
    alternate_key: int = 0
    """Rendition: 0 is the original upload (Haystack's "type")."""
    cookie: int
    """Random 32 bits chosen at upload; a read or delete must present it, so URLs cannot be guessed."""

    def __post_init__(self) -> None:
        check_u("logical_volume", self.logical_volume, MAX_U32)
        check_u("key", self.key, MAX_U64)
        check_u("alternate_key", self.alternate_key, MAX_U32)
        check_u("cookie", self.cookie, MAX_U32)

    def __str__(self) -> str:
        return f"needle {self.key:#x}/{self.alternate_key} in volume {self.logical_volume}"


def check_u(name: str, value: object, maximum: int) -> None:
    """Raises NeedleRefOutOfRange unless ``value`` is an integer in [0, maximum]."""
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= maximum:
        raise NeedleRefOutOfRange(f"{name} must be an integer in [0, {maximum}], got {value!r}")
