"""Plain values of f4's wire contract, shared by its clients and its nodes."""

from __future__ import annotations

from dataclasses import dataclass


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
