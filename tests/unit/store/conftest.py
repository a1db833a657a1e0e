"""Fixtures of the store's unit tests."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    """The I/O threads a volume is given (the store's ``store-io`` pool)."""
    with ThreadPoolExecutor(4, thread_name_prefix="test-io") as pool:
        yield pool
