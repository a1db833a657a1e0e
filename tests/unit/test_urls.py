"""trenchcoat.urls: photo URLs build, parse, strip layer by layer, and reject junk."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trenchcoat import media_types, urls
from trenchcoat.errors import InvalidArgument
from trenchcoat.needle_ref import MAX_U32, MAX_U64, NeedleRef, NeedleRefOutOfRange

u32 = st.integers(0, MAX_U32)
u64 = st.integers(0, MAX_U64)
needles = st.builds(NeedleRef, logical_volume=u32, key=u64, alternate_key=u32, cookie=u32)
extensions = st.sampled_from([t.extension for t in media_types.TYPES])
paths = st.builds(urls.PhotoPath, cache_id=u32, machine_id=u32, needle=needles, extension=extensions)


def test_documented_example_parses():
    path = urls.parse_path("/3/17/42,0a1b2c3d4e5f60718badf00d_3")
    assert path == urls.PhotoPath(cache_id=3, machine_id=17, needle=NeedleRef(
        logical_volume=42, key=0x0A1B2C3D4E5F6071, alternate_key=3, cookie=0x8BADF00D))


def test_original_has_no_alternate_suffix():
    needle = NeedleRef(logical_volume=1, key=0xFF, cookie=0xABCDEF01)
    assert urls.component(needle) == "1,00000000000000ffabcdef01"


def test_a_needle_reference_is_built_by_keyword_only() -> None:
    with pytest.raises(TypeError):
        NeedleRef(1, 0xFF, 0, 0xABCDEF01)  # type: ignore[call-arg]  # deliberately positional: refused


@given(paths)
def test_round_trip(path):
    assert urls.parse_path(path.path()) == path


@given(paths)
def test_each_layer_strips_its_own_component(path):
    cache_id, rest = urls.strip_cache(path.path())
    assert cache_id == path.cache_id
    ext = f".{path.extension}" if path.extension else ""
    assert rest == f"/{path.machine_id}/{urls.component(path.needle)}{ext}"
    machine_id, needle = urls.strip_machine(rest)
    assert (machine_id, needle) == (path.machine_id, path.needle)
    assert urls.parse_photo(urls.component(needle)) == path.needle


def test_the_extension_follows_the_photo_and_the_store_step_drops_it():
    path = urls.parse_path("/3/17/42,0a1b2c3d4e5f60718badf00d_3.jpg")
    assert path.extension == "jpg" and path.needle.alternate_key == 3
    assert path.path() == "/3/17/42,0a1b2c3d4e5f60718badf00d_3.jpg"
    assert urls.strip_machine("/17/42,0a1b2c3d4e5f60718badf00d.mp4") == (17, NeedleRef(
        logical_volume=42, key=0x0A1B2C3D4E5F6071, cookie=0x8BADF00D))
    for bad in (".JPG", ".", ".j-g", ".jpg.png", ".toolongext"):
        with pytest.raises(urls.MalformedURL, match="extension"):
            urls.parse_path("/3/17/42,0a1b2c3d4e5f60718badf00d" + bad)


def test_url_joins_cdn_base():
    path = urls.PhotoPath(cache_id=1, machine_id=2, needle=NeedleRef(logical_volume=3, key=4, cookie=5))
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
    "kwargs", [{"logical_volume": -1}, {"key": 1 << 64}, {"cookie": 1 << 32}, {"alternate_key": -2}]
)
def test_out_of_range_components_are_refused_when_building(kwargs):
    fields = {"logical_volume": 1, "key": 1, "cookie": 1, "alternate_key": 0} | kwargs
    with pytest.raises(NeedleRefOutOfRange) as info:
        NeedleRef(**fields)
    assert info.value.status == "INVALID_ARGUMENT"


@pytest.mark.parametrize("kwargs", [{"cache_id": -1}, {"machine_id": 1 << 32}])
def test_out_of_range_path_ids_are_malformed(kwargs):
    fields = {"cache_id": 1, "machine_id": 1} | kwargs
    with pytest.raises(urls.MalformedURL):
        urls.PhotoPath(needle=NeedleRef(logical_volume=1, key=1, cookie=1), **fields)


@given(st.text(max_size=80))
def test_fuzz_arbitrary_text_raises_nothing_but_malformed_url(text):
    for parse in (urls.parse_path, urls.parse_photo, urls.strip_cache):
        with contextlib.suppress(urls.MalformedURL):
            parse(text)


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
