"""A least-recently-used map bounded by the total size of its values."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class ByteLRU(Generic[V]):
    """Keys to values of a stated size; inserting past ``capacity_bytes`` evicts the least
    recently used. A value larger than the whole capacity is not kept."""

    def __init__(self, capacity_bytes: int) -> None:
        if capacity_bytes < 0:
            raise ValueError("capacity must be >= 0")
        self.capacity_bytes = capacity_bytes
        self.bytes = 0
        self.evictions = 0
        self._items: OrderedDict[Hashable, tuple[V, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._items

    def get(self, key: Hashable) -> V | None:
        item = self._items.get(key)
        if item is None:
            return None
        self._items.move_to_end(key)
        return item[0]

    def put(self, key: Hashable, value: V, size: int) -> bool:
        """Keeps ``value`` (counted as ``size`` bytes); False when it cannot fit at all."""
        if size > self.capacity_bytes:
            return False
        self.pop(key)
        self._items[key] = (value, size)
        self.bytes += size
        while self.bytes > self.capacity_bytes:
            _, (_, old) = self._items.popitem(last=False)
            self.bytes -= old
            self.evictions += 1
        return True

    def pop(self, key: Hashable) -> V | None:
        item = self._items.pop(key, None)
        if item is None:
            return None
        self.bytes -= item[1]
        return item[0]

    def keys(self) -> list[Hashable]:
        return list(self._items)
