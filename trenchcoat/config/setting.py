"""A config key's declaration: its doc, its default and the bounds its value must keep.

``setting()`` makes the dataclass field of one key, with the doc and the ``Bounds`` in the
field's metadata, where the one checker (``checks.check_bounds``) and the docs renderer
read them. A key with nothing to bound says why instead (``free=``), so no key lacks a
check by oversight (tests/unit/config/test_coverage.py holds every section to that).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

#: Field metadata keys.
DOC = "doc"
BOUNDS = "bounds"
FREE = "free"


@dataclass(frozen=True, slots=True, kw_only=True)
class Bounds:
    """What a value must be. Numbers are held to ge/gt/le, strings to nonempty, choices,
    prefixes and host_port; a tuple to nonempty and distinct, and each of its items to
    ``each``."""

    ge: float | None = None
    """Smallest value allowed."""
    gt: float | None = None
    """The value must be greater than this."""
    le: float | None = None
    """Largest value allowed."""
    choices: tuple[str, ...] = ()
    """The only values allowed (empty: any)."""
    nonempty: bool = False
    """An empty string, or a tuple of no items, is refused."""
    or_empty: bool = False
    """An empty string is also allowed, whatever the other bounds say: it means the key is
    unset (derived from other keys, or none)."""
    prefixes: tuple[str, ...] = ()
    """The value must start with one of these (a URL's scheme)."""
    host_port: bool = False
    """The value must be host:port with a port in 1..65535."""
    distinct: bool = False
    """A tuple must not hold an item twice."""
    each: Bounds | None = None
    """Bounds every item of a tuple must keep."""
    why: str = ""
    """Said after the bound when it is broken, for bounds whose reason is not obvious."""

    def __post_init__(self) -> None:
        if self.ge is not None and self.gt is not None:
            raise TypeError("a bound takes ge or gt, not both")


def setting(
    doc: str,
    *,
    default: Any,
    free: str = "",
    **bounds: Any,
) -> Any:
    """The field of one config key: ``doc`` (shown by ``trenchcoat config`` and in the
    example file), its default, and its bounds (the keyword arguments of ``Bounds``) or,
    for a number, string or list with none, ``free``: why it takes any value, or which
    hand-written check relating it to other keys holds it. (A true/false key needs
    neither.)"""
    if bounds and free:
        raise TypeError(f"setting {doc[:40]!r}... declares bounds and says it is free")
    metadata: dict[str, Any] = {DOC: doc}
    if free:
        metadata[FREE] = free
    if bounds:
        metadata[BOUNDS] = Bounds(**bounds)
    return dataclasses.field(default=default, metadata=metadata)


def doc_of(f: dataclasses.Field[Any]) -> str:
    """The doc of a config key's field."""
    text: str = f.metadata[DOC]
    return text


def bounds_of(f: dataclasses.Field[Any]) -> Bounds | None:
    """The bounds a config key declares, or None (a free key, or not a config key)."""
    bounds: Bounds | None = f.metadata.get(BOUNDS)
    return bounds


#: The bounds of every item of a list of addresses (``each=HOST_PORT``).
HOST_PORT = Bounds(host_port=True)
