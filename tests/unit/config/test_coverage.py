"""Every key of every section is held to something on purpose: a number, string or list
declares its bounds (trenchcoat.config.setting) or says why it is free; the bounds fit the
key's type; a section redefining a key of its base (for its own doc and default) keeps the
base's bounds; every port key is a port."""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

import pytest

from trenchcoat import config
from trenchcoat.config.service import MAX_PORT
from trenchcoat.config.setting import FREE, Bounds, bounds_of
from trenchcoat.config.whole import section_types

SECTIONS = section_types()
KEYS = [(name, f) for name, cls in SECTIONS.items() for f in dataclasses.fields(cls)]
NUMBER_BOUNDS = {"ge", "gt", "le"}
STRING_BOUNDS = {"nonempty", "or_empty", "choices", "prefixes", "host_port"}
LIST_BOUNDS = {"nonempty", "distinct", "each"}
#: Keys bounded tighter than their base's, each saying why.
NARROWED = {("F4KeyStoreConfig", "count"), ("F4RebuilderConfig", "count")}


def declared(bounds: Bounds) -> set[str]:
    """The names of the bounds set (``why`` is not a bound)."""
    return {f.name for f in dataclasses.fields(bounds)
            if f.name != "why" and getattr(bounds, f.name) not in (None, False, ())}


def key_id(key: tuple[str, dataclasses.Field[Any]]) -> str:
    return f"{key[0]}.{key[1].name}"


@pytest.mark.parametrize("key", KEYS, ids=key_id)
def test_every_number_string_and_list_declares_bounds_or_why_it_is_free(key):
    name, f = key
    hint = typing.get_type_hints(SECTIONS[name])[f.name]
    if hint is bool:
        assert bounds_of(f) is None and FREE not in f.metadata, "a true/false key needs no bounds"
        return
    bounds = bounds_of(f)
    free = f.metadata.get(FREE, "")
    assert (bounds is not None and declared(bounds)) != bool(free.strip()), (
        f"{name}.{f.name} declares no bounds and does not say why it is free (setting(..., free='why'))"
    )


@pytest.mark.parametrize("key", [k for k in KEYS if bounds_of(k[1])], ids=key_id)
def test_declared_bounds_fit_the_type_of_the_key(key):
    name, f = key
    hint = typing.get_type_hints(SECTIONS[name])[f.name]
    bounds = bounds_of(f)
    assert bounds is not None
    if typing.get_origin(hint) is tuple:
        assert declared(bounds) <= LIST_BOUNDS
        item = typing.get_args(hint)[0]
        if bounds.each is not None:
            assert declared(bounds.each) <= (NUMBER_BOUNDS if item is int else STRING_BOUNDS)
    else:
        assert declared(bounds) <= (NUMBER_BOUNDS if hint in (int, float) else STRING_BOUNDS)


def test_a_redefined_key_keeps_its_bases_bounds():
    for cls in SECTIONS.values():
        for base in cls.__mro__[1:]:
            if not dataclasses.is_dataclass(base):
                continue
            base_fields = {f.name: f for f in dataclasses.fields(base)}
            for f in dataclasses.fields(cls):
                if f.name not in base_fields or (cls.__name__, f.name) in NARROWED:
                    continue
                assert bounds_of(f) == bounds_of(base_fields[f.name]), (
                    f"{cls.__name__}.{f.name} bounds differ from {base.__name__}'s"
                )


def test_a_narrowed_key_says_why_and_stays_within_its_bases_bounds():
    for cls_name, key in NARROWED:
        cls = getattr(config, cls_name)
        bounds, base = bounds_of(cls.__dataclass_fields__[key]), bounds_of(config.ServiceConfig.__dataclass_fields__[key])
        assert bounds is not None and base is not None
        assert bounds.why and bounds.ge == base.ge and bounds.le is not None


def test_every_port_key_is_a_port():
    for name, service in config.Config().services().items():
        fields = {f.name: f for f in dataclasses.fields(service)}
        for key in service.port_keys():
            bounds = bounds_of(fields[key])
            assert bounds is not None and bounds.ge in (0, 1) and bounds.le == MAX_PORT, f"{name}.{key}"
