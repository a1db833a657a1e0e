"""fdatasync for the group commit, without a thread hop when the kernel allows it.

A durable write ends in one fdatasync shared by the writers of a batch (``GroupCommit``
in ``store/volume_commit.py``). It must not run on the event loop (it waits for the disk), and
a trip to a thread and back costs the store more CPU than the rest of a small write
together: the worker's wake-up, the GIL taken back and forth, the loop woken through its
self-pipe (bench/README.md, bench.upload). So where Linux offers it, the sync is
submitted as asynchronous I/O instead: ``io_submit`` of an ``IOCB_CMD_FDSYNC`` (Linux
4.18+) returns at once, the kernel runs the very same ``vfs_fsync(file, datasync=1)`` in
its own worker, and signals completion through an eventfd the event loop watches. No
Python thread, no GIL hand-off; an error is the fdatasync's error (its errno).

``ThreadDatasync`` does the same through the store's I/O threads; it is used where
kernel AIO is missing or refused (another OS or architecture, a seccomp profile that
blocks ``io_setup``, a kernel older than 4.18: the first refused submission switches for
good) and when the AIO context is full.

The AIO ABI used here (``<linux/aio_abi.h>``):

| struct ``iocb`` (64 bytes) | offset | size |
|---|---|---|
| aio_data (ours: the request number) | 0 | 8 |
| aio_key, aio_rw_flags (little-endian order) | 8 | 4 + 4 |
| aio_lio_opcode (3 = FDSYNC), aio_reqprio | 16 | 2 + 2 |
| aio_fildes | 20 | 4 |
| aio_buf, aio_nbytes, aio_offset, aio_reserved2 | 24 | 4 x 8 |
| aio_flags (1 = IOCB_FLAG_RESFD), aio_resfd (the eventfd) | 56 | 4 + 4 |

| struct ``io_event`` (32 bytes): data, obj, res (0 or -errno), res2 | 0, 8, 16, 24 | 8 each |
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import logging
import os
import platform
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

log = logging.getLogger(__name__)

IOCB_CMD_FDSYNC = 3
IOCB_FLAG_RESFD = 1
AIO_SLOTS = 256
"""Syncs in flight at once through AIO (one per volume at most, by the group commit);
past that, the thread does them."""
_EVENTS_PER_CALL = 64

# Syscall numbers of the AIO calls: (io_setup, io_destroy, io_submit, io_getevents).
_SYSCALLS = {
    "x86_64": (206, 207, 209, 208),
    "aarch64": (0, 1, 2, 4),  # the generic table (asm-generic/unistd.h)
}


class _Iocb(ctypes.Structure):
    _fields_ = [
        ("aio_data", ctypes.c_uint64),
        ("aio_key", ctypes.c_uint32),
        ("aio_rw_flags", ctypes.c_int32),
        ("aio_lio_opcode", ctypes.c_uint16),
        ("aio_reqprio", ctypes.c_int16),
        ("aio_fildes", ctypes.c_uint32),
        ("aio_buf", ctypes.c_uint64),
        ("aio_nbytes", ctypes.c_uint64),
        ("aio_offset", ctypes.c_int64),
        ("aio_reserved2", ctypes.c_uint64),
        ("aio_flags", ctypes.c_uint32),
        ("aio_resfd", ctypes.c_uint32),
    ]


class _IoEvent(ctypes.Structure):
    _fields_ = [
        ("data", ctypes.c_uint64),
        ("obj", ctypes.c_uint64),
        ("res", ctypes.c_int64),
        ("res2", ctypes.c_int64),
    ]


class Datasync(Protocol):
    """Makes a file's written data durable (fdatasync) without blocking the event loop."""

    async def fdatasync(self, fd: int) -> None: ...

    def close(self) -> None: ...


class ThreadDatasync:
    """fdatasync in one of the store's I/O threads."""

    def __init__(self, executor: ThreadPoolExecutor) -> None:
        self._executor = executor

    async def fdatasync(self, fd: int) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, os.fdatasync, fd)

    def close(self) -> None:
        pass


class AioDatasync:
    """fdatasync submitted as Linux AIO, completed through an eventfd on the event loop.
    Made on (and used from) one event loop."""

    def __init__(self, fallback: ThreadDatasync) -> None:
        setup, self._destroy, self._submit, self._getevents = _SYSCALLS[platform.machine()]
        self._libc = ctypes.CDLL(None, use_errno=True)
        self._syscall = self._libc.syscall
        self._fallback = fallback
        self._context = ctypes.c_ulong(0)
        if self._syscall(setup, AIO_SLOTS, ctypes.byref(self._context)) != 0:
            code = ctypes.get_errno()
            raise OSError(code, f"io_setup: {os.strerror(code)}")
        self._eventfd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._eventfd, self._completed)
        self._waiting: dict[int, tuple[asyncio.Future[None], _Iocb]] = {}
        self._next = 0
        self._events = (_IoEvent * _EVENTS_PER_CALL)()
        self._no_wait = (ctypes.c_long * 2)(0, 0)
        self._usable = True
        self._closed = False

    async def fdatasync(self, fd: int) -> None:
        if not self._usable or len(self._waiting) >= AIO_SLOTS:
            await self._fallback.fdatasync(fd)
            return
        self._next += 1
        number = self._next
        iocb = _Iocb(aio_data=number, aio_lio_opcode=IOCB_CMD_FDSYNC, aio_fildes=fd,
                     aio_flags=IOCB_FLAG_RESFD, aio_resfd=self._eventfd)
        pointers = (ctypes.POINTER(_Iocb) * 1)(ctypes.pointer(iocb))
        if self._syscall(self._submit, self._context, 1, pointers) != 1:
            code = ctypes.get_errno()
            if code in (errno.EINVAL, errno.ENOSYS, errno.EPERM, errno.EOPNOTSUPP):
                # This kernel cannot do it (FDSYNC came in 4.18): the thread, from now on.
                log.warning("kernel AIO fdatasync refused (%s); syncing in a thread instead", os.strerror(code))
                self._usable = False
            await self._fallback.fdatasync(fd)
            return
        done: asyncio.Future[None] = self._loop.create_future()
        # The iocb stays referenced until its completion is read.
        self._waiting[number] = (done, iocb)
        # Not cancellable once submitted: the kernel finishes it, and the writer who
        # asked must learn its outcome (the group commit shields it).
        await done

    def _completed(self) -> None:
        try:
            os.eventfd_read(self._eventfd)
        except BlockingIOError:
            return
        while self._waiting:
            got = self._syscall(self._getevents, self._context, 0, _EVENTS_PER_CALL, self._events, self._no_wait)
            if got < 0:
                code = ctypes.get_errno()
                if code == errno.EINTR:
                    continue
                log.error("io_getevents failed: %s", os.strerror(code))
                break
            self._deliver(got)
            if got < _EVENTS_PER_CALL:
                break

    def _deliver(self, got: int) -> None:
        """Hands the first ``got`` completions read into ``_events`` to their waiters."""
        for event in self._events[:got]:
            waiter = self._waiting.pop(event.data, None)
            if waiter is None or waiter[0].done():
                continue  # its writer gave up waiting (cancelled)
            if event.res < 0:
                waiter[0].set_exception(OSError(-event.res, os.strerror(-event.res)))
            else:
                waiter[0].set_result(None)

    def close(self) -> None:
        """Waits out the syncs in flight (io_destroy does), then releases the context."""
        if self._closed:
            return
        self._closed = True
        self._loop.remove_reader(self._eventfd)
        self._syscall(self._destroy, self._context)
        os.close(self._eventfd)
        for done, _ in self._waiting.values():
            if not done.done():
                done.set_exception(OSError(errno.ECANCELED, "the store is closing"))
        self._waiting.clear()


def datasync_for(executor: ThreadPoolExecutor) -> Datasync:
    """Kernel AIO where it works here, else the I/O threads. Call on the event loop."""
    fallback = ThreadDatasync(executor)
    if sys.platform != "linux" or platform.machine() not in _SYSCALLS:
        return fallback
    try:
        return AioDatasync(fallback)
    except OSError as exc:
        log.warning("kernel AIO unavailable (%s); fdatasync runs in a thread", exc)
        return fallback
