"""Plain values of f4's wire contract, shared by its clients and its nodes, and the shape of
a stripe (``f4/codec.py`` codes it; the k8s generator sizes a cell's disruption budget by
it)."""

from __future__ import annotations

from dataclasses import dataclass

DATA_BLOCKS = 10
"""Data blocks in a stripe (Reed-Solomon's k)."""
PARITY_BLOCKS = 4
"""Parity blocks in a stripe (m): any 4 of the 14 may be lost."""
STRIPE_BLOCKS = DATA_BLOCKS + PARITY_BLOCKS


@dataclass(frozen=True, slots=True, order=True)
class BlockId:
    """One block of one stripe: ``index`` 0-9 are data blocks, 10-13 parity."""

    volume: int
    stripe: int
    index: int

    def __str__(self) -> str:
        return f"block {self.index} of stripe {self.stripe} of volume {self.volume}"


@dataclass(frozen=True, slots=True)
class BlockInfo:
    """A block as a storage node reports it."""

    block: BlockId
    node: str
    domain: str
    healthy: bool
    size: int


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """What a storage node says of itself: its cell, the failure domains it serves, the blocks it holds."""

    cell: str
    domains: tuple[str, ...]
    blocks: list[BlockInfo]
