"""store/volume_delete.py: a delete flags the needle on disk, so it holds across a restart
without a checkpoint; a wrong cookie deletes nothing."""

from __future__ import annotations

import pytest

from store.errors import NeedleNotFound
from store.volume_load import create_volume
from tests.unit.store.volume_helpers import LIMITS, n, reopen


async def test_delete_reads_as_not_found_and_survives_restart_without_checkpoint(tmp_path, executor):
    v = create_volume(tmp_path, 1, LIMITS, executor)
    await v.write(n(1, 0, 1), b"keep")
    await v.write(n(2, 0, 2), b"gone")
    await v.close()  # checkpoint now covers both
    v, _ = reopen(tmp_path, executor)
    assert await v.delete(n(2, 0, 2)) is True
    assert await v.delete(n(2, 0, 2)) is False
    with pytest.raises(NeedleNotFound):
        await v.read(n(2, 0, 2))
    # Crash: no checkpoint after the delete. The flag in the needle still rules.
    v2, _ = reopen(tmp_path, executor)
    with pytest.raises(NeedleNotFound):
        await v2.read(n(2, 0, 2))
    assert (await v2.read(n(1, 0, 1))).data == b"keep"


async def test_delete_with_a_wrong_cookie_is_refused(tmp_path, executor):
    v = create_volume(tmp_path, 1, LIMITS, executor)
    await v.write(n(1, 0, 1), b"mine")
    with pytest.raises(NeedleNotFound):
        await v.delete(n(1, 0, 2))
    assert (await v.read(n(1, 0, 1))).data == b"mine"
