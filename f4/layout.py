"""Where a stripe's bytes live: rows of cells across 10 data blocks, and which failure
domain holds each of a stripe's 14 blocks.

A stripe's data is one byte stream (the encrypted blobs of a volume, one after another).
It is cut into rows of ``K`` cells: row ``r`` is stream bytes ``[r*K*C, (r+1)*K*C)``, and
its ``i``-th cell (``C = cell_bytes`` bytes) is bytes ``[r*C, (r+1)*C)`` of data block
``i``. So a blob of up to ``C`` bytes in a full row lies in one cell or two neighbouring
ones (one or two range reads when every block is healthy), and byte ``p`` of a row sits at the same
offset ``p`` in every block of the stripe, parity included: a lost block's range is
rebuilt from the same offsets of any 10 others (``f4.codec``).

The last row of a stripe is as short as its data allows: its cells are
``ceil(rest / K)`` bytes, so a stripe pads at most ``K - 1`` bytes, and every block of a
stripe has the same size (``block_size``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from f4.codec import K, N, encode_row
from trenchcoat.errors import FailedPrecondition, InvalidArgument


@dataclass(frozen=True, slots=True)
class Extent:
    """``length`` bytes at ``offset`` of data block ``block``."""

    block: int
    offset: int
    length: int


@dataclass(frozen=True, slots=True)
class Geometry:
    cell_bytes: int
    """Bytes of one block in one (full) row."""
    rows: int
    """Full rows a stripe may hold; a stripe holds at most ``rows * K * cell_bytes`` bytes."""

    def __post_init__(self) -> None:
        if self.cell_bytes <= 0 or self.rows <= 0:
            raise InvalidArgument(f"cell_bytes and rows must be positive, got {self.cell_bytes} and {self.rows}")

    @property
    def row_bytes(self) -> int:
        return K * self.cell_bytes

    @property
    def stripe_capacity(self) -> int:
        """Most data bytes one stripe holds."""
        return self.rows * self.row_bytes

    def _shape(self, data_bytes: int) -> tuple[int, int]:
        """(full rows, cell bytes of the short last row, 0 if none) of a stripe of ``data_bytes``."""
        if not 0 < data_bytes <= self.stripe_capacity:
            raise InvalidArgument(f"a stripe holds 1 to {self.stripe_capacity} bytes, got {data_bytes}")
        full, rest = divmod(data_bytes, self.row_bytes)
        return full, -(-rest // K)

    def block_size(self, data_bytes: int) -> int:
        """Bytes of each of the 14 blocks of a stripe holding ``data_bytes``."""
        full, last = self._shape(data_bytes)
        return full * self.cell_bytes + last

    def rows_of(self, data_bytes: int) -> list[tuple[int, int]]:
        """(block offset, cell bytes) of each row of a stripe holding ``data_bytes``."""
        full, last = self._shape(data_bytes)
        rows = [(r * self.cell_bytes, self.cell_bytes) for r in range(full)]
        if last:
            rows.append((full * self.cell_bytes, last))
        return rows

    def extents(self, data_bytes: int, offset: int, length: int) -> list[Extent]:
        """The pieces of data blocks holding stream bytes ``[offset, offset + length)`` of a
        stripe holding ``data_bytes``, in stream order."""
        if length <= 0 or offset < 0 or offset + length > data_bytes:
            raise InvalidArgument(f"bytes [{offset}, {offset + length}) are not within a stripe of {data_bytes}")
        full, last = self._shape(data_bytes)
        out: list[Extent] = []
        position, end = offset, offset + length
        while position < end:
            row, within = divmod(position, self.row_bytes)
            cell = self.cell_bytes if row < full else last
            block, at = divmod(within, cell)
            take = min(cell - at, end - position)
            out.append(Extent(block, row * self.cell_bytes + at, take))
            position += take
        return out

    def split_row(self, row_data: bytes, cell: int) -> list[bytes]:
        """The K data cells of one row (the last cells padded with zeros)."""
        padded = row_data.ljust(K * cell, b"\0")
        return [padded[i * cell:(i + 1) * cell] for i in range(K)]

    def encode(self, stream: bytes) -> list[bytes]:
        """The N blocks (10 data, 4 parity) of a stripe holding ``stream``, row by row."""
        blocks = [bytearray() for _ in range(N)]
        position = 0
        for _, cell in self.rows_of(len(stream)):
            cells = self.split_row(stream[position:position + K * cell], cell)
            position += K * cell
            for block, data in zip(blocks, cells + encode_row(cells), strict=True):
                block += data
        return [bytes(b) for b in blocks]


def place(domains: Mapping[str, Sequence[str]], *, taken: Sequence[str] = ()) -> list[tuple[str, str]]:
    """(failure domain, node) for each of a stripe's 14 blocks, each in a domain of its
    own, from ``domains`` (domain -> nodes serving it; a node may serve several
    domains, one block directory each). Domains in ``taken`` (the stripe's other blocks,
    for a rebuild) are not used. Spreads over the domains with the most nodes first
    and, within a domain, the first node. Raises FailedPrecondition when there are not
    enough domains."""
    free = [d for d in sorted(domains, key=lambda d: (-len(domains[d]), d)) if domains[d] and d not in taken]
    want = N - len(taken)
    if len(free) < want:
        raise FailedPrecondition(
            f"a stripe needs {want} more failure domains with a live storage node, "
            f"{len(free)} are free ({', '.join(free) or 'none'}); add storage nodes in other domains")
    return [(d, domains[d][0]) for d in free[:want]]
