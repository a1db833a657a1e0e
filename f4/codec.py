"""Reed-Solomon(10,4) over the rows of a stripe, on pyeclib's ISA-L backend (``isa_l_rs_vand``).

A stripe is 10 data blocks and 4 parity blocks. The data blocks hold the stripe's bytes
as they are, row by row (``f4.layout``), so a healthy read never decodes; parity byte
``p`` of a row is computed from byte ``p`` of the same row in the 10 data blocks. The
code is linear and works on each byte position alone (ISA-L's ``ec_encode_data`` is a
GF(2^8) matrix applied position by position), so **any byte range of a lost block is
rebuilt from the same byte range of any 10 surviving blocks**: a backoff node rebuilding
one blob reads about 10x the blob, never whole blocks.

pyeclib works on fragments that carry an 80-byte header (index, sizes, backend, a
checksum of the header itself, none of the payload). Blocks keep payloads only; for a
range of length L the headers of an encode of 10 x L zero bytes are valid for any payload
of that length (the header describes geometry, not content), so they are made once per
length and put in front of the payload ranges read from disk. Checked exhaustively in
``tests/unit/f4/test_codec.py``: every 4-of-14 loss pattern (1,001) decodes.

Do not raise ``m`` past 4 with this backend: ``isa_l_rs_vand`` is not MDS for m >= 5
(some loss patterns would not decode).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence

from pyeclib.ec_iface import ECDriver

from f4.errors import TooFewBlocks
from trenchcoat.errors import InvalidArgument
from trenchcoat.f4_types import DATA_BLOCKS, PARITY_BLOCKS, STRIPE_BLOCKS

K = DATA_BLOCKS
"""Data blocks in a stripe."""
M = PARITY_BLOCKS
"""Parity blocks in a stripe: any 4 of the 14 may be lost."""
N = STRIPE_BLOCKS
BACKEND = "isa_l_rs_vand"




@functools.cache
def _driver() -> ECDriver:
    return ECDriver(k=K, m=M, ec_type=BACKEND)


@functools.lru_cache(maxsize=64)
def _headers(length: int) -> tuple[bytes, ...]:
    """The fragment headers pyeclib gives a row of ``length``-byte cells (any payload)."""
    fragments = _driver().encode(bytes(K * length))
    headers = tuple(f[: len(f) - length] for f in fragments)
    if len(headers) != N or any(len(f) - len(h) != length for f, h in zip(fragments, headers, strict=True)):
        raise AssertionError(f"{BACKEND}: fragments of a {K} x {length}-byte row are not {length}-byte payloads")
    return headers


def encode_row(cells: Sequence[bytes]) -> list[bytes]:
    """The 4 parity cells of one row of 10 equal-length data cells."""
    if len(cells) != K:
        raise InvalidArgument(f"a row has {K} data cells, got {len(cells)}")
    length = len(cells[0])
    if length == 0 or any(len(c) != length for c in cells):
        raise InvalidArgument(f"the data cells of a row must be non-empty and of one length, got {[len(c) for c in cells]}")
    fragments = _driver().encode(b"".join(cells))
    header = len(_headers(length)[0])
    return [bytes(f[header:]) for f in fragments[K:]]


def rebuild(ranges: Mapping[int, bytes], wanted: Sequence[int]) -> dict[int, bytes]:
    """The same byte range of the blocks ``wanted`` (indexes 0-13), from that range of at
    least 10 other blocks (``ranges``: index -> bytes, all of one length). Raises
    TooFewBlocks when fewer than 10 are given."""
    if len(ranges) < K:
        raise TooFewBlocks(f"{len(ranges)} of {N} blocks at hand; rebuilding needs {K}")
    lengths = {len(r) for r in ranges.values()}
    if len(lengths) != 1:
        raise InvalidArgument(f"block ranges must be of one length, got {sorted(lengths)}")
    bad = [i for i in (*ranges, *wanted) if not 0 <= i < N]
    if bad:
        raise InvalidArgument(f"block indexes are 0-{N - 1}, got {bad}")
    length = lengths.pop()
    out = {i: bytes(ranges[i]) for i in wanted if i in ranges}
    missing = [i for i in dict.fromkeys(wanted) if i not in ranges]
    if not missing:
        return out
    if length == 0:
        return out | dict.fromkeys(missing, b"")
    headers = _headers(length)
    fragments = [headers[i] + bytes(ranges[i]) for i in sorted(ranges)[:K]]
    rebuilt = _driver().reconstruct(fragments, missing)
    header = len(headers[0])
    return out | {i: bytes(f[header:]) for i, f in zip(missing, rebuilt, strict=True)}
