"""store/datasync.py: fdatasync through kernel AIO (completed on the event loop) and
through a thread; both behave the same for the group commit."""

from __future__ import annotations

import asyncio
import errno
import os

import pytest

from store import datasync
from store.datasync import AioDatasync, ThreadDatasync, datasync_for
from store.errors import DiskFailure
from store.volume_load import create_volume
from tests.unit.store.volume_helpers import LIMITS
from trenchcoat.needle_ref import NeedleRef


@pytest.fixture(params=["aio", "thread"])
async def syncer(request, executor):
    if request.param == "thread":
        made: datasync.Datasync = ThreadDatasync(executor)
    else:
        made = datasync_for(executor)
        if not isinstance(made, AioDatasync):
            pytest.skip("kernel AIO is not available here")
    yield made
    made.close()


async def test_syncs_of_many_files_at_once_all_complete(tmp_path, syncer):
    fds = [os.open(tmp_path / f"f{i}", os.O_RDWR | os.O_CREAT, 0o644) for i in range(20)]
    try:
        for fd in fds:
            os.write(fd, b"x" * 4096)
        await asyncio.wait_for(asyncio.gather(*(syncer.fdatasync(fd) for fd in fds for _ in range(3))), 30)
    finally:
        for fd in fds:
            os.close(fd)


async def test_a_failed_sync_raises_its_errno(tmp_path, syncer):
    with pytest.raises(OSError) as info:
        await syncer.fdatasync(1 << 20)  # no such descriptor
    assert info.value.errno == errno.EBADF


async def test_a_completion_with_an_error_reaches_its_waiter_only(tmp_path, executor):
    made = datasync_for(executor)
    if not isinstance(made, AioDatasync):
        pytest.skip("kernel AIO is not available here")
    try:
        loop = asyncio.get_running_loop()
        failed, fine = loop.create_future(), loop.create_future()
        made._waiting[1001] = (failed, datasync._Iocb())
        made._waiting[1002] = (fine, datasync._Iocb())
        events = made._events
        events[0].data, events[0].res = 1001, -errno.EIO
        events[1].data, events[1].res = 1002, 0
        # As if the kernel had posted both: deliver them the way _completed does.
        made._deliver(2)
        error = failed.exception()
        assert isinstance(error, OSError) and error.errno == errno.EIO
        assert fine.result() is None
    finally:
        made.close()


async def test_a_refused_submission_falls_back_to_the_thread_for_good(tmp_path, executor, monkeypatch):
    made = datasync_for(executor)
    if not isinstance(made, AioDatasync):
        pytest.skip("kernel AIO is not available here")
    try:
        calls = []

        def refuse(*args):
            calls.append(args)
            datasync.ctypes.set_errno(errno.EINVAL)
            return -1

        monkeypatch.setattr(made, "_syscall", refuse)
        fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            os.write(fd, b"x")
            await made.fdatasync(fd)  # done by the thread instead
            await made.fdatasync(fd)
        finally:
            os.close(fd)
        assert len(calls) == 1  # the second one did not try AIO again
    finally:
        monkeypatch.undo()
        made.close()


async def test_volume_writes_are_durable_through_either(tmp_path, executor, syncer):
    v = create_volume(tmp_path, 1, LIMITS, executor, syncer)
    refs = [NeedleRef(logical_volume=1, key=i, cookie=i) for i in range(1, 101)]
    await asyncio.gather(*(v.write(r, bytes([r.key]) * 100) for r in refs))
    assert v.io.synced_writes == 100 and v.io.fsyncs <= 100
    for r in refs:
        assert (await v.read(r)).data == bytes([r.key]) * 100
    await v.close()


async def test_a_failed_group_sync_fails_the_writes_and_turns_the_volume_read_only(tmp_path, executor, syncer,
                                                                                  monkeypatch):
    v = create_volume(tmp_path, 1, LIMITS, executor, syncer)

    async def broken(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(syncer, "fdatasync", broken)
    results = await asyncio.gather(*(v.write(NeedleRef(logical_volume=1, key=i, cookie=1), b"x") for i in range(1, 5)),
                                   return_exceptions=True)
    assert all(isinstance(r, DiskFailure) for r in results)
    assert v.read_only
    monkeypatch.undo()
    await v.close()
