"""Checking a section: every key against the bounds it declares (one checker for all of
them), then the section's own ``validate`` for what relates several keys.

Every refusal is a ``ConfigError`` that names the key and the value:
``store.port: must be in 1..65535, got 70000``; an item of a list is named by its index:
``etcd.endpoints[1]: 'nohost' is not host:port``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from trenchcoat.config.setting import Bounds, bounds_of
from trenchcoat.errors import ConfigError
from trenchcoat.redact import redact


class Section:
    """A section of the config file (``[name]``): a frozen dataclass whose keys are declared
    with ``setting()``."""

    # No fields of its own, so no dataclass: a plain base with empty slots costs less at
    # import (every process imports the config) and keeps its subclasses' slots.
    __slots__ = ()
    # What a dataclass has, said to the type checker: dataclasses.fields() takes a Section.
    __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]

    def validate(self, section: str) -> None:
        """Checks relating several keys (``section`` is the section's name, for messages).
        Each key's own bounds were checked before (``check_section``)."""


def check_section(section: str, values: Section) -> None:
    """Checks every key of a section against its bounds, then the section's relations."""
    check_bounds(section, values)
    values.validate(section)


def check_bounds(section: str, values: Any) -> None:
    """Refuses the first key of ``values`` (a section dataclass) outside its declared bounds."""
    for f in dataclasses.fields(values):
        bounds = bounds_of(f)
        if bounds is None:
            continue
        key, value = f"{section}.{f.name}", getattr(values, f.name)
        if isinstance(value, tuple):
            _check_items(key, bounds, value)
        else:
            why = _why_not(bounds, value)
            require(why is None, key, why or "")


def require(ok: bool, key: str, why: str) -> None:
    """Refuses ``key`` for ``why`` unless ``ok``: the hand-written checks' one way to fail."""
    if not ok:
        raise ConfigError(f"{key}: {why}")


def is_host_port(value: str) -> bool:
    """Whether ``value`` is host:port with a port in 1..65535 (an IPv6 host needs no brackets:
    the port is after the last colon)."""
    host, sep, port = value.rpartition(":")
    return bool(sep) and bool(host) and port.isdigit() and 1 <= int(port) <= 65535


def _check_items(key: str, bounds: Bounds, items: tuple[Any, ...]) -> None:
    require(not bounds.nonempty or bool(items), key, _broken("must not be empty", bounds, []))
    if bounds.distinct:
        seen: set[Any] = set()
        for item in items:
            require(item not in seen, key, _broken(f"names {item!r} twice", bounds, list(items)))
            seen.add(item)
    if bounds.each is not None:
        for i, item in enumerate(items):
            why = _why_not(bounds.each, item)
            require(why is None, f"{key}[{i}]", why or "")


def _why_not(bounds: Bounds, value: Any) -> str | None:
    """Why ``value`` (a number or a string) breaks ``bounds``, or None."""
    if bounds.or_empty and value == "":
        return None
    if bounds.nonempty and value == "":
        return _broken("must not be empty", bounds, value)
    if bounds.host_port and not is_host_port(value):
        return f"{value!r} is not host:port" + (f" ({bounds.why})" if bounds.why else "")
    if bounds.prefixes and not value.startswith(bounds.prefixes):
        return _broken(f"must start with {' or '.join(bounds.prefixes)}", bounds, value)
    if bounds.choices and value not in bounds.choices:
        return _broken(f"must be one of {', '.join(bounds.choices)}", bounds, value)
    if not _within(bounds, value):
        return _broken(f"must be {_range(bounds)}", bounds, value)
    return None


def _within(bounds: Bounds, value: Any) -> bool:
    # Written as "value >= bound", so NaN (from the environment's "nan") is outside every range.
    return ((bounds.ge is None or value >= bounds.ge) and (bounds.gt is None or value > bounds.gt)
            and (bounds.le is None or value <= bounds.le))


def _range(bounds: Bounds) -> str:
    ge, gt, le = bounds.ge, bounds.gt, bounds.le
    if le is not None:
        if ge is not None:
            return f"in {ge}..{le}"
        return f"in ({gt}, {le}]" if gt is not None else f"at most {le}"
    return f">= {ge}" if ge is not None else f"> {gt}"


def _broken(text: str, bounds: Bounds, value: Any) -> str:
    shown = redact(value) if isinstance(value, str) else value
    return f"{text}{f' ({bounds.why})' if bounds.why else ''}, got {shown!r}"  # a URL's password never shown
