"""trenchcoat/transforms.py: a photo URL's transform query and the allow-list."""

from __future__ import annotations

import pytest

from trenchcoat.transforms import (
    BadTransform,
    TransformSpec,
    check_allowed,
    parse_box,
    parse_query,
)

ALLOWED = ("150x150:cover", "320x0", "640x0")


def test_a_query_without_transform_parameters_asks_for_none():
    assert parse_query({}) is None
    assert parse_query({"utm_source": "x"}) is None


def test_a_transform_query_is_parsed_with_its_defaults():
    assert parse_query({"w": "320"}) == TransformSpec(320, 0, False, "image/jpeg")
    spec = parse_query({"w": "150", "h": "150", "fit": "cover", "fmt": "webp"})
    assert spec == TransformSpec(150, 150, True, "image/webp")
    assert (spec.box, str(spec)) == ("150x150:cover", "150x150:cover.webp")


@pytest.mark.parametrize(("query", "message"), [
    ({"w": "abc"}, "w must be a whole number"),
    ({"w": "-3"}, "w must be a whole number"),
    ({"w": "99999"}, r"in 0\.\.8192"),
    ({"h": "0"}, "needs w or h"),
    ({"w": "10", "fit": "stretch"}, "fit must be one of contain, cover"),
    ({"w": "10", "fmt": "gif"}, "fmt must be one of jpeg, webp"),
    ({"w": "10", "fit": "cover"}, "cover needs both w and h"),
    ({"w": "10", "q": "100"}, r"unknown photo URL parameters \['q'\]"),
])
def test_malformed_transforms_are_refused_saying_why(query, message):
    with pytest.raises(BadTransform, match=message):
        parse_query(query)


def test_only_allowed_boxes_pass_and_a_refusal_names_them():
    check_allowed(TransformSpec(150, 150, True, "image/webp"), ALLOWED)
    with pytest.raises(BadTransform, match=r"150x150 is not a size served on read; allowed: 150x150:cover, 320x0"):
        check_allowed(TransformSpec(150, 150, False, "image/jpeg"), ALLOWED)
    with pytest.raises(BadTransform, match=r"transformer\.on_read_sizes is empty"):
        check_allowed(TransformSpec(320, 0, False, "image/jpeg"), ())


@pytest.mark.parametrize("bad", ["320", "0x0", "320x0:cover", "axb", "320x200:stretch", "9000x10"])
def test_allow_list_entries_are_checked(bad):
    with pytest.raises(ValueError):
        parse_box(bad)
    assert parse_box("320x200:cover") == (320, 200, True)
