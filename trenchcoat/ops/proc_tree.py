"""What /proc says about processes: whose group a process is in (and whether that group
is still one we began), a process's descendants, freezing a whole tree (SIGSTOP), a
process's start time (which tells a pid from the same pid given out again)."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path


def start_time(pid: int) -> str:
    """When ``pid`` started (clock ticks since boot), "" if there is no such process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return ""


def group_members(pgids: set[int]) -> list[tuple[int, str]]:
    """Live (pid, command line) of every process in one of the process groups ``pgids``
    that a ManagedProcess began: each began a session of its own, so its group is also its
    session. A group of the same id in another session is a stranger's: the id is a pid
    the kernel gave out again after our process was gone."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat_text = (entry / "stat").read_text()
            fields = stat_text[stat_text.rindex(")") + 2:].split()
            state, pgrp, session = fields[0], int(fields[2]), int(fields[3])
            if pgrp in pgids and session == pgrp and state != "Z":
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                found.append((int(entry.name), cmd.strip()))
        except (FileNotFoundError, ProcessLookupError, ValueError, IndexError):
            continue
    return found


@contextlib.contextmanager
def frozen(root: int) -> Iterator[None]:
    """Process ``root`` and all its descendants stopped (SIGSTOP) for the block, and
    continued (SIGCONT) after it, whatever happens in it."""
    family = [root]
    try:
        os.kill(root, signal.SIGSTOP)  # first, so it forks no one new meanwhile
        family += descendants(root)
        for pid in family[1:]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
        yield
    finally:
        for pid in family:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


def descendants(root: int) -> list[int]:
    """Every live descendant of process ``root`` (from /proc)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue  # gone meanwhile
    found, frontier = [], [root]
    while frontier:
        children = [pid for pid, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found
