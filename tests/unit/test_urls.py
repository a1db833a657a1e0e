"""trenchcoat.urls: photo URLs build, parse, strip layer by layer, and reject junk."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trenchcoat import urls
from trenchcoat.errors import InvalidArgument

u32 = st.integers(0, urls.MAX_U32)
u64 = st.integers(0, urls.MAX_U64)
photos = st.builds(urls.Photo, u32, u64, u32, u32)
paths = st.builds(urls.PhotoPath, u32, u32, photos)


def test_documented_example_parses():
    path = urls.parse_path("/3/17/42,0a1b2c3d4e5f60718badf00d_3")
    assert path == urls.PhotoPath(3, 17, urls.Photo(42, 0x0A1B2C3D4E5F6071, 0x8BADF00D, 3))


def test_original_has_no_alternate_suffix():
    photo = urls.Photo(1, 0xFF, 0xABCDEF01)
    assert photo.component() == "1,00000000000000ffabcdef01"


@given(paths)
def test_round_trip(path):
    assert urls.parse_path(path.path()) == path


@given(paths)
def test_each_layer_strips_its_own_component(path):
    cache_id, rest = urls.strip_cache(path.path())
    assert cache_id == path.cache_id
    assert rest == f"/{path.machine_id}/{path.photo.component()}"
    machine_id, photo = urls.strip_machine(rest)
    assert (machine_id, photo) == (path.machine_id, path.photo)
    assert urls.parse_photo(photo.component()) == path.photo


def test_url_joins_cdn_base():
    path = urls.PhotoPath(1, 2, urls.Photo(3, 4, 5))
    assert path.url("http://cdn.local:8080/") == "http://cdn.local:8080/1/2/3,000000000000000400000005"


@pytest.mark.parametrize(
    "bad",
    [
        "", "/", "//", "1/2/3,000000000000000400000005",  # no leading slash
        "/1/2", "/1/2/", "/1/2/3", "/x/2/3,000000000000000400000005",
        "/01/2/3,000000000000000400000005",  # leading zero: one photo, one URL
        "/1/2/3,000000000000000400000005_0",  # alternate key 0 is written by omission
        "/1/2/3,000000000000000400000005_01",
        "/1/2/3,000000000000000400000005_4294967296",
        "/1/2/3,00000000000000040000000",  # short cookie
        "/1/2/3,0000000000000004000000050",  # long
        "/1/2/3,000000000000000400000005F",
        "/1/2/3,00000000000000040000000A",  # uppercase hex
        "/4294967296/2/3,000000000000000400000005",
        "/1/2/3,000000000000000400000005/extra",
        "/1/2/3,000000000000000400000005?x=1",
        "/1/2/-3,000000000000000400000005",
        "/1/2/٣,000000000000000400000005",  # a non-ASCII digit
        "/1/2/3 ,000000000000000400000005",
    ],
)
def test_malformed_paths_raise_malformed_url(bad):
    with pytest.raises(urls.MalformedURL):
        urls.parse_path(bad)


def test_malformed_url_is_invalid_argument_with_a_useful_message():
    with pytest.raises(InvalidArgument, match="cookie"):
        urls.parse_photo("3,0000")
    assert urls.MalformedURL.status == "INVALID_ARGUMENT"
    assert urls.MalformedURL.http_status == 400


@pytest.mark.parametrize("bad", [None, b"/1/2/3,0", 42])
def test_non_text_is_malformed(bad):
    with pytest.raises(urls.MalformedURL):
        urls.parse_path(bad)


@pytest.mark.parametrize(
    "kwargs", [dict(logical_volume=-1), dict(key=1 << 64), dict(cookie=1 << 32), dict(alternate_key=-2)]
)
def test_out_of_range_components_are_refused_when_building(kwargs):
    fields = dict(logical_volume=1, key=1, cookie=1, alternate_key=0) | kwargs
    with pytest.raises(urls.MalformedURL):
        urls.Photo(**fields)


@given(st.text(max_size=80))
def test_fuzz_arbitrary_text_raises_nothing_but_malformed_url(text):
    for parse in (urls.parse_path, urls.parse_photo, urls.strip_cache):
        try:
            parse(text)
        except urls.MalformedURL:
            pass


@given(paths, st.integers(0, 60), st.characters())
def test_fuzz_mutated_valid_paths(path, position, char):
    text = path.path()
    position = min(position, len(text))
    mutated = text[:position] + char + text[position + 1:]
    try:
        parsed = urls.parse_path(mutated)
    except urls.MalformedURL:
        return
    # Anything accepted is canonical: it prints back exactly as given.
    assert parsed.path() == mutated
