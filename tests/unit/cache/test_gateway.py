"""cache/gateway.py without a cluster: the byte-range parsing (RFC 9110's single ranges)
and the HTTP answers the gateway gives for what the photo cache returns or raises, over a
real aiohttp server and a stand-in for the cache behind it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import given
from hypothesis import strategies as st

from cache.gateway import CACHE_HEADER, IMMUTABLE, VIA_CDN_HEADER, Gateway, _parse_range
from cache.photos import Served
from trenchcoat.errors import (
    ChecksumMismatch,
    NeedleNotFound,
    TrenchcoatError,
    Unavailable,
)
from trenchcoat.needle_ref import NeedleRef
from trenchcoat.store_types import Blob
from trenchcoat.transforms import TransformSpec, check_allowed
from trenchcoat.urls import PhotoPath, component

# --- ranges ---------------------------------------------------------------------------------


@pytest.mark.parametrize("header, size, span", [
    ("bytes=0-9", 100, (0, 10)),
    ("bytes=90-", 100, (90, 100)),
    ("bytes=90-200", 100, (90, 100)),  # a last byte past the end is cut to the end
    ("bytes=-10", 100, (90, 100)),  # the last ten
    ("bytes=-500", 100, (0, 100)),  # a suffix longer than the body: all of it
    (" bytes=5-5 ", 100, (5, 6)),  # one byte; surrounding spaces ignored
    ("bytes=0-0,5-9", 100, None),  # several ranges: the whole body is a valid answer
    ("items=0-9", 100, None),  # a unit other than bytes: ignored
    ("bytes=-", 100, None),
    ("bytes=x-y", 100, None),
])
def test_satisfiable_and_ignored_ranges(header, size, span):
    assert _parse_range(header, size) == span


@pytest.mark.parametrize("header, size", [
    ("bytes=100-", 100),  # starts at the end
    ("bytes=150-160", 100),
    ("bytes=9-5", 100),  # last before first
    ("bytes=-0", 100),  # an empty suffix
    ("bytes=0-", 0),  # nothing to give of an empty body
])
def test_unsatisfiable_ranges_raise(header, size):
    with pytest.raises(ValueError):
        _parse_range(header, size)


@given(st.integers(0, 10_000), st.integers(0, 10_000), st.integers(1, 10_000))
def test_a_satisfiable_range_lies_within_the_body_and_holds_its_first_byte(first, last, size):
    header = f"bytes={first}-{last}"
    try:
        span = _parse_range(header, size)
    except ValueError:
        assert first >= size or last < first
        return
    assert span is not None
    start, end = span
    assert start == first and 0 <= start < end <= size and end == min(size, last + 1)


# --- answers --------------------------------------------------------------------------------


@dataclass
class FakeCache:
    """The photo cache: ``photos`` by needle, else ``error`` (or NeedleNotFound)."""

    photos: dict[NeedleRef, Blob] = field(default_factory=dict)
    error: TrenchcoatError | None = None
    reads: list[tuple[int, NeedleRef, bool]] = field(default_factory=list)

    async def read(self, machine_id: int, needle: NeedleRef, *, via_cdn: bool) -> Served:
        self.reads.append((machine_id, needle, via_cdn))
        if self.error is not None:
            raise self.error
        if needle not in self.photos:
            raise NeedleNotFound(f"needle {needle.key:#x} not found")
        return Served(self.photos[needle], hit=False, admitted=not via_cdn)


@dataclass
class FakeResizer:
    allowed: tuple[str, ...] = ("64x64",)
    made: list[str] = field(default_factory=list)

    def check(self, spec: TransformSpec) -> None:
        check_allowed(spec, self.allowed)

    async def transform(self, photo: str, data: bytes, spec: TransformSpec):
        self.made.append(f"{photo}-{spec}")

        @dataclass
        class Out:
            data: bytes

        return Out(b"small " + data[:4])


NEEDLE = NeedleRef(logical_volume=7, key=0x1234, cookie=0xABCD)
PHOTO = PhotoPath(cache_id=1, machine_id=3, needle=NEEDLE, extension="jpg").path()
BODY = b"\xff\xd8" + bytes(range(98))


@pytest.fixture
async def gateway() -> AsyncIterator[tuple[TestClient, FakeCache, FakeResizer]]:
    cache, resizer = FakeCache({NEEDLE: Blob(BODY, "image/jpeg")}), FakeResizer()
    async with TestClient(TestServer(Gateway(cache, resizer).app())) as client:  # type: ignore[arg-type]
        yield client, cache, resizer


async def test_a_photo_is_served_whole_with_its_immutable_headers(gateway):
    client, cache, _ = gateway
    r = await client.get(PHOTO)
    assert r.status == 200 and await r.read() == BODY
    assert r.headers["Content-Type"] == "image/jpeg" and r.headers["Cache-Control"] == IMMUTABLE
    assert r.headers["ETag"] == f'"{component(NEEDLE)}"' and r.headers[CACHE_HEADER] == "admitted"
    assert cache.reads == [(3, NEEDLE, False)]
    head = await client.head(PHOTO)
    assert head.status == 200 and head.headers["Content-Length"] == str(len(BODY)) and await head.read() == b""


async def test_reads_through_the_cdn_are_marked_so_the_cache_does_not_keep_them(gateway):
    client, cache, _ = gateway
    r = await client.get(PHOTO, headers={VIA_CDN_HEADER: "1"})
    assert r.status == 200 and r.headers[CACHE_HEADER] == "miss" and cache.reads[-1][2] is True


async def test_conditional_and_range_requests(gateway):
    client, _, _ = gateway
    etag = f'"{component(NEEDLE)}"'
    assert (await client.get(PHOTO, headers={"If-None-Match": etag})).status == 304
    assert (await client.get(PHOTO, headers={"If-None-Match": "*"})).status == 304
    part = await client.get(PHOTO, headers={"Range": "bytes=10-19"})
    assert part.status == 206 and await part.read() == BODY[10:20]
    assert part.headers["Content-Range"] == f"bytes 10-19/{len(BODY)}"
    tail = await client.get(PHOTO, headers={"Range": "bytes=-5"})
    assert tail.status == 206 and await tail.read() == BODY[-5:]
    past = await client.get(PHOTO, headers={"Range": "bytes=500-"})
    assert past.status == 416 and past.headers["Content-Range"] == f"bytes */{len(BODY)}"
    stale = await client.get(PHOTO, headers={"Range": "bytes=0-1", "If-Range": '"another"'})
    assert stale.status == 200 and await stale.read() == BODY  # a range of other bytes: all of these


@pytest.mark.parametrize("path", ["/", "/1/3", "/x/3/7,00000000000012340000abcd.jpg", "/1/3/7,zz.jpg",
                                  "/1/3/7,00000000000012340000abcd.JPG"])
async def test_a_malformed_path_is_400_saying_why_and_reads_nothing(gateway, path):
    client, cache, _ = gateway
    r = await client.get(path)
    assert r.status == 400 and (await r.text()).strip()
    assert cache.reads == []


async def test_unknown_photos_and_wrong_extensions_are_404(gateway):
    client, _, _ = gateway
    other = PhotoPath(cache_id=1, machine_id=3, needle=NeedleRef(logical_volume=7, key=9, cookie=1), extension="jpg")
    assert (await client.get(other.path())).status == 404
    assert (await client.get(PHOTO.replace(".jpg", ".png"))).status == 404  # never issued for these bytes


@pytest.mark.parametrize("error, status", [(ChecksumMismatch("every copy failed verification"), 502),
                                           (Unavailable("store 3 did not answer"), 503)])
async def test_failures_behind_the_gateway_are_5xx_never_wrong_bytes(gateway, error, status):
    client, cache, _ = gateway
    cache.error = error
    r = await client.get(PHOTO)
    assert r.status == status and BODY not in await r.read()
    if status == 503:
        assert r.headers["Retry-After"] == "1"


async def test_resizes_on_read_only_for_allowed_boxes_and_only_of_images(gateway):
    client, cache, resizer = gateway
    small = await client.get(PHOTO + "?w=64&h=64")
    assert small.status == 200 and await small.read() == b"small " + BODY[:4]
    assert small.headers["Cache-Control"] == IMMUTABLE and resizer.made
    refused = await client.get(PHOTO + "?w=65&h=65")
    assert refused.status == 400 and len(cache.reads) == 1  # refused before any read
    cache.photos[NEEDLE] = Blob(b"\x00\x00\x00\x18ftypmp42", "video/mp4")
    video = PhotoPath(cache_id=1, machine_id=3, needle=NEEDLE, extension="mp4").path()
    assert (await client.get(video + "?w=64&h=64")).status == 400
